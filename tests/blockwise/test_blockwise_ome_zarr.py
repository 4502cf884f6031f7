"""OME-Zarr outputs filled block by block: create empty, open for writing, build pyramid."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vemkit.errors import InvalidVolumeError, OutputExistsError
from vemkit.geometry import VoxelSize
from vemkit.io import Dataset, Layer
from vemkit.io.formats.ome_zarr import list_layer_names, open_ome_zarr
from vemkit.io.ome_zarr import (
    build_pyramid,
    create_ome_zarr,
    open_ome_zarr_writable,
    write_ome_zarr,
)


def _attrs(path: Path) -> dict:
    return json.loads((path / ".zattrs").read_text())


@pytest.mark.parametrize(
    "case",
    [
        ("image", "zyx", (20, 150, 130), (50.0, 10.0, 10.0), "uint16"),
        ("labels", "zyx", (33, 70, 65), (8.0, 8.0, 8.0), "uint32"),
        ("image", "czyx", (2, 18, 90, 80), (30.0, 12.0, 12.0), "float32"),
    ],
)
def test_filled_blockwise_equals_written_at_once(tmp_path: Path, case: tuple) -> None:
    kind, axes, shape, voxel_size, dtype = case
    rng = np.random.default_rng(0)
    data = (rng.random(shape) * 5).astype(dtype)
    chunks = (1,) * (len(shape) - 3) + (10, 32, 32)
    layer = create_ome_zarr(
        tmp_path / "a.zarr",
        shape=shape,
        dtype=dtype,
        voxel_size=voxel_size,
        kind=kind,
        axes=axes,
        chunks=chunks,
        name="a",
    )
    assert not layer.read_only
    assert layer.chunks == chunks
    assert layer.kind == kind
    assert layer.read().max() == 0  # allocated, not stored
    for z in range(0, shape[-3], 10):  # fill level 0 in slabs, then build the pyramid
        region = (slice(None),) * (len(shape) - 3) + (slice(z, z + 10),)
        layer.data[region] = data[region]
    build_pyramid(tmp_path / "a.zarr")
    write_ome_zarr(
        tmp_path / "b.zarr",
        data,
        voxel_size=voxel_size,
        name="a",
        kind=kind,
        axes=axes,
        chunks=chunks,
    )
    assert _attrs(tmp_path / "a.zarr") == _attrs(tmp_path / "b.zarr")
    n_levels = open_ome_zarr(tmp_path / "b.zarr").metadata["n_levels"]
    assert n_levels > 1
    for level in range(n_levels):
        a = open_ome_zarr(tmp_path / "a.zarr", level=level)
        b = open_ome_zarr(tmp_path / "b.zarr", level=level)
        assert a.voxel_size == b.voxel_size
        assert a.chunks == b.chunks
        np.testing.assert_array_equal(a.read(), b.read())


def test_create_refuses_existing_and_bad_input(tmp_path: Path) -> None:
    create_ome_zarr(tmp_path / "a.zarr", shape=(4, 8, 8), dtype="uint8", voxel_size=1.0)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        create_ome_zarr(tmp_path / "a.zarr", shape=(4, 8, 8), dtype="uint8", voxel_size=1.0)
    again = create_ome_zarr(
        tmp_path / "a.zarr", shape=(5, 8, 8), dtype="uint8", voxel_size=1.0, overwrite=True
    )
    assert again.shape == (5, 8, 8)
    with pytest.raises(InvalidVolumeError):
        create_ome_zarr(tmp_path / "b.zarr", shape=(0, 8, 8), dtype="uint8", voxel_size=1.0)
    with pytest.raises(InvalidVolumeError):
        create_ome_zarr(tmp_path / "c.zarr", shape=(8, 8), dtype="uint8", voxel_size=1.0)
    with pytest.raises(InvalidVolumeError, match="integers"):
        create_ome_zarr(
            tmp_path / "d.zarr", shape=(4, 8, 8), dtype="float32", voxel_size=1.0, kind="labels"
        )


def test_open_writable_inside_a_dataset(tmp_path: Path) -> None:
    raw = Layer(np.zeros((8, 32, 32), np.uint8), VoxelSize(8, 8, 8))
    dataset = Dataset.create(tmp_path / "ds.zarr", raw)
    dataset.add_layer("cells", np.zeros((8, 32, 32), np.uint32), kind="labels")
    layer = open_ome_zarr_writable(tmp_path / "ds.zarr" / "labels" / "cells")
    assert not layer.read_only
    assert layer.kind == "labels"
    layer.data[:, :16] = 7
    assert dataset.layer("cells").read()[:, :16].min() == 7
    assert dataset.layer("cells").read_only  # reading stays read-only
    # the blockwise state folder is a hidden Zarr group: listed quietly, never a layer
    from vemkit.blockwise.engine import run_state

    run_state(layer, None).write("x", b"1")
    assert (tmp_path / "ds.zarr" / "labels" / "cells" / ".vemkit-blockwise" / "0" / "x").exists()
    assert list_layer_names(tmp_path / "ds.zarr") == ["raw", "labels/cells"]
