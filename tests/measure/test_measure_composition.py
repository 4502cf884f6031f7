"""Volume fractions of organelles within cell and cytoplasm masks."""

from __future__ import annotations

import numpy as np
import pytest

from vemkit.errors import ConfigError, InvalidVolumeError
from vemkit.measure import volume_fractions


def test_cell_and_cytoplasm_fractions() -> None:
    shape = (10, 20, 20)
    cell = np.zeros(shape, bool)
    cell[:, 2:18, 2:18] = True  # 10 * 16 * 16 = 2560 voxels
    nucleus = np.zeros(shape, np.uint8)
    nucleus[2:8, 6:14, 6:14] = 1  # 384 voxels
    mitos = np.zeros(shape, np.uint16)
    mitos[0:2, 2:4, 2:10] = 5  # 32 voxels inside the cell
    mitos[5, 15:17, 15:17] = 9  # 4 voxels inside
    mitos[5, 0:2, 0:2] = 11  # outside the cell: ignored
    voxel_size = (40.0, 10.0, 10.0)
    voxel_um3 = 40 * 10 * 10 / 1e9

    whole = volume_fractions(
        {"nucleus": nucleus, "mito": mitos}, region_mask=cell, voxel_size=voxel_size
    )
    assert whole["name"].tolist() == ["nucleus", "mito"]
    assert whole["volume_fraction"].tolist() == pytest.approx([384 / 2560, 36 / 2560])
    assert whole["n_objects"].tolist() == [1, 2]
    assert whole["volume_um3"].tolist() == pytest.approx([384 * voxel_um3, 36 * voxel_um3])
    assert whole["region_volume_um3"].tolist() == pytest.approx([2560 * voxel_um3] * 2)

    cytoplasm = cell & (nucleus == 0)
    cyto = volume_fractions({"mito": mitos}, region_mask=cytoplasm, voxel_size=voxel_size)
    assert cyto["volume_fraction"].iloc[0] == pytest.approx(36 / (2560 - 384))


def test_empty_region_and_bad_input() -> None:
    mask = np.zeros((2, 2, 2), bool)
    table = volume_fractions({"a": np.ones((2, 2, 2), np.uint8)}, region_mask=mask, voxel_size=1)
    assert np.isnan(table["volume_fraction"].iloc[0])
    assert table["n_objects"].iloc[0] == 0
    with pytest.raises(ConfigError):
        volume_fractions({}, region_mask=mask, voxel_size=1)
    with pytest.raises(InvalidVolumeError, match="shape"):
        volume_fractions({"a": np.ones((2, 2, 3))}, region_mask=mask, voxel_size=1)
