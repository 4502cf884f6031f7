"""The cell sub-block size is a speed setting only: it must not change a phantom."""

from __future__ import annotations

import numpy as np
import pytest

from vemkit.geometry import VoxelSize
from vemkit.synth import PhantomConfig, make_phantom, scene


def test_subblock_size_does_not_change_the_phantom(monkeypatch: pytest.MonkeyPatch) -> None:
    config = PhantomConfig(
        shape=(16, 48, 48),
        voxel_size=VoxelSize(80, 80, 80),
        cell_size_nm=3000.0,
        nucleus_diameter_nm=(1500.0, 2000.0),
        seed=101,
    )
    fast = make_phantom(config)
    monkeypatch.setattr(scene, "_SUBBLOCK_MIN_VOX", 2)
    fine = make_phantom(config)
    assert int(fast.cells.max()) > 1  # several cells, so membranes are drawn
    for name in ("raw", "cells", "nuclei", "mitochondria"):
        assert np.array_equal(getattr(fast, name), getattr(fine, name)), name
