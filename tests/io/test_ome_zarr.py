"""OME-Zarr writer and reader: round trips, pyramids, Dask input, metadata, errors."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import pytest
import zarr
from zarr.storage import LocalStore

from vemkit.errors import (
    CorruptFileError,
    LayerNotFoundError,
    OutputExistsError,
    ReadOnlyLayerError,
)
from vemkit.geometry import Box, VoxelSize
from vemkit.io.formats.ome_zarr import list_layer_names, list_levels, open_ome_zarr
from vemkit.io.ome_zarr import default_chunks, write_ome_zarr
from vemkit.io.pyramid import downsample_image, downsample_labels
from vemkit.io.registry import open_layer

ANISO = VoxelSize(50.0, 4.6, 4.6)


def _volume(dtype: Any, shape: tuple[int, ...] = (6, 40, 36), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.floating):
        return rng.normal(100.0, 20.0, size=shape).astype(dtype)
    high = min(np.iinfo(dtype).max, 2**40)
    values = rng.integers(0, 6, size=shape).astype(dtype)
    return values if high < 2**16 else values * dtype(high // 8)


class RecordingProgress:
    """A Progress that counts what it is told."""

    def __init__(self) -> None:
        self.started: list[tuple[int, str]] = []
        self.steps = 0
        self.finished = 0

    def start(self, total: int, description: str) -> None:
        self.started.append((total, description))

    def advance(self, steps: int = 1) -> None:
        self.steps += steps

    def finish(self) -> None:
        self.finished += 1


class GuardedArray:
    """An array-like that refuses reads bigger than ``max_voxels`` (and can fail on demand)."""

    def __init__(self, values: np.ndarray, *, max_voxels: int, fail_after: int | None = None):
        self.values = values
        self.shape = values.shape
        self.dtype = values.dtype
        self.ndim = values.ndim
        self.max_voxels = max_voxels
        self.fail_after = fail_after
        self.largest_read = 0
        self.reads = 0
        self._lock = threading.Lock()

    def __getitem__(self, key: Any) -> np.ndarray:
        block = self.values[key]
        with self._lock:
            self.reads += 1
            self.largest_read = max(self.largest_read, block.size)
            if self.fail_after is not None and self.reads > self.fail_after:
                raise RuntimeError("simulated read failure")
        if block.size > self.max_voxels:
            raise MemoryError(f"read of {block.size} voxels: the whole input was requested")
        return block


# --- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "kind"),
    [
        (np.uint8, "image"),
        (np.uint16, "image"),
        (np.float32, "image"),
        (np.uint32, "labels"),
        (np.uint64, "labels"),
    ],
)
def test_round_trip_values_dtype_voxel_size(tmp_path: Path, dtype: Any, kind: str) -> None:
    values = _volume(dtype)
    path = tmp_path / "vol.zarr"
    written = write_ome_zarr(path, values, voxel_size=ANISO, name="vol", kind=kind)  # type: ignore[arg-type]
    layer = open_layer(path)
    for result in (written, layer):
        assert result.dtype == np.dtype(dtype)
        assert result.kind == kind
        assert result.voxel_size == ANISO
        assert result.read_only
        assert result.metadata["format"] == "ome-zarr"
        assert result.metadata["voxel_size_from"] == "file"
        np.testing.assert_array_equal(result.read(), values)
    assert isinstance(layer.data, zarr.Array)  # lazy
    attrs = json.loads((path / ".zattrs").read_text())
    multiscale = attrs["multiscales"][0]
    assert multiscale["version"] == "0.4"
    assert [a["unit"] for a in multiscale["axes"]] == ["nanometer"] * 3
    assert multiscale["datasets"][0]["coordinateTransformations"][0]["scale"] == [50.0, 4.6, 4.6]
    assert ("image-label" in attrs) == (kind == "labels")
    assert json.loads((path / "0" / ".zarray").read_text())["zarr_format"] == 2


def test_pyramid_levels_shapes_voxel_sizes_and_values(tmp_path: Path) -> None:
    values = _volume(np.uint16, shape=(20, 150, 140))
    path = tmp_path / "img.zarr"
    layer = write_ome_zarr(path, values, voxel_size=(20.0, 5.0, 5.0), name="img")
    meta = layer.metadata
    assert meta["n_levels"] == 3
    assert meta["levels_voxel_size"] == [(20.0, 5.0, 5.0), (20.0, 10.0, 10.0), (20.0, 20.0, 20.0)]
    assert meta["levels_shape"] == [(20, 150, 140), (20, 75, 70), (20, 38, 35)]
    levels = list_levels(path)
    assert [lv.shape for lv in levels] == meta["levels_shape"]
    level2 = open_layer(path, level=2)
    assert level2.voxel_size == VoxelSize(20, 20, 20)
    assert level2.metadata["level"] == 2
    expected = downsample_image(downsample_image(values, (1, 2, 2)), (1, 2, 2))
    np.testing.assert_array_equal(level2.read(), expected)
    with pytest.raises(LayerNotFoundError, match="levels 0 to 2"):
        open_ome_zarr(path, level=3)


def test_labels_pyramid_uses_mode(tmp_path: Path) -> None:
    values = _volume(np.uint32, shape=(16, 16, 16), seed=3)
    path = tmp_path / "lab.zarr"
    write_ome_zarr(path, values, voxel_size=8.0, name="lab", kind="labels", n_levels=3)
    level1 = open_ome_zarr(path, level=1)
    assert level1.kind == "labels"
    np.testing.assert_array_equal(level1.read(), downsample_labels(values, (2, 2, 2)))
    attrs = json.loads((path / ".zattrs").read_text())
    assert attrs["multiscales"][0]["type"] == "mode"
    assert attrs["image-label"]["version"] == "0.4"


def test_default_chunks_follow_anisotropy() -> None:
    assert default_chunks((1000, 4000, 4000), ANISO) == (32, 256, 256)
    assert default_chunks((500, 500, 500), (8.0, 8.0, 8.0)) == (128, 128, 128)
    assert default_chunks((10, 20, 30), (8.0, 8.0, 8.0)) == (10, 20, 30)
    assert default_chunks((2, 100, 512, 512), (8.0, 8.0, 8.0), axes="czyx") == (1, 100, 128, 128)


def test_user_chunks_and_reading_a_box(tmp_path: Path) -> None:
    values = _volume(np.uint8, shape=(10, 33, 35))
    layer = write_ome_zarr(
        tmp_path / "c.zarr", values, voxel_size=10.0, name="c", chunks=(4, 16, 16), n_levels=1
    )
    assert layer.chunks == (4, 16, 16)
    assert layer.metadata["n_levels"] == 1
    box = Box((2, 5, 7), (3, 10, 11))
    np.testing.assert_array_equal(layer.read(box), values[box.to_slices()])
    with pytest.raises(ReadOnlyLayerError):
        layer.write(box, values[box.to_slices()])


# --- large / lazy input ----------------------------------------------------------------------


def test_dask_input_is_written_block_by_block(tmp_path: Path) -> None:
    values = _volume(np.uint16, shape=(24, 64, 64), seed=4)
    guarded = GuardedArray(values, max_voxels=8 * 16 * 16)
    lazy = da.from_array(guarded, chunks=(8, 16, 16), asarray=True)  # 48 source blocks
    progress = RecordingProgress()
    layer = write_ome_zarr(
        tmp_path / "d.zarr",
        lazy,
        voxel_size=(10.0, 10.0, 10.0),
        name="d",
        chunks=(8, 32, 32),
        n_levels=2,
        progress=progress,
    )
    np.testing.assert_array_equal(layer.read(), values)
    assert guarded.largest_read <= 8 * 16 * 16
    assert guarded.reads >= 48
    # one step per written chunk over both levels: 3*2*2 chunks at level 0, 2*1*1 at level 1
    assert progress.started == [(12 + 2, "writing d")]
    assert progress.steps == 14
    assert progress.finished == 1


def test_array_like_input_is_read_in_chunks(tmp_path: Path) -> None:
    values = _volume(np.uint8, shape=(12, 40, 40), seed=5)
    guarded = GuardedArray(values, max_voxels=4 * 16 * 16)
    layer = write_ome_zarr(
        tmp_path / "g.zarr", guarded, voxel_size=5.0, name="g", chunks=(4, 16, 16)
    )
    np.testing.assert_array_equal(layer.read(), values)
    assert 0 < guarded.largest_read <= 4 * 16 * 16


def test_zarr_input(tmp_path: Path) -> None:
    values = _volume(np.float32, shape=(8, 20, 20))
    source = zarr.create_array(
        LocalStore(tmp_path / "src.zarr"), shape=values.shape, dtype=values.dtype, chunks=(4, 8, 8)
    )
    source[...] = values
    layer = write_ome_zarr(tmp_path / "z.zarr", source, voxel_size=ANISO, name="z")
    np.testing.assert_array_equal(layer.read(), values)


# --- atomicity and overwrite -----------------------------------------------------------------


def test_failure_mid_write_leaves_nothing(tmp_path: Path) -> None:
    values = _volume(np.uint8, shape=(16, 32, 32))
    failing = GuardedArray(values, max_voxels=values.size, fail_after=3)
    with pytest.raises(RuntimeError, match="simulated"):
        write_ome_zarr(tmp_path / "f.zarr", failing, voxel_size=5.0, name="f", chunks=(4, 8, 8))
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "o.zarr"
    write_ome_zarr(path, np.zeros((4, 8, 8), np.uint8), voxel_size=5.0, name="o")
    with pytest.raises(OutputExistsError, match="overwrite"):
        write_ome_zarr(path, np.ones((4, 8, 8), np.uint8), voxel_size=5.0, name="o")
    assert open_layer(path).read().max() == 0
    layer = write_ome_zarr(
        path, np.ones((4, 8, 8), np.uint8), voxel_size=5.0, name="o", overwrite=True
    )
    assert layer.read().min() == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.zarr"]


# --- reading other writers' files --------------------------------------------------------------


def test_ome_zarr_package_reads_what_we_write(tmp_path: Path) -> None:
    reader_module = pytest.importorskip("ome_zarr.reader")
    from ome_zarr.io import parse_url

    values = _volume(np.uint16, shape=(8, 130, 70))
    path = tmp_path / "ext.zarr"
    write_ome_zarr(path, values, voxel_size=ANISO, name="ext")
    location = parse_url(str(path))
    assert location is not None
    nodes = list(reader_module.Reader(location)())
    assert nodes
    image = nodes[0]
    assert len(image.data) == 3  # 130 -> 65 -> 33 along y
    np.testing.assert_array_equal(np.asarray(image.data[0]), values)
    transforms = image.metadata["coordinateTransformations"]
    assert transforms[1][0]["scale"] == [50.0, 9.2, 9.2]


def _write_ngff(
    path: Path,
    values: np.ndarray,
    *,
    zarr_format: int,
    axes: list[dict[str, str]],
    scale: list[float],
) -> None:
    group = zarr.open_group(LocalStore(path), mode="w", zarr_format=zarr_format)  # type: ignore[arg-type]
    array = group.create_array("s0", shape=values.shape, dtype=values.dtype, chunks=values.shape)
    array[...] = values
    multiscales = [
        {
            "axes": axes,
            "datasets": [
                {"path": "s0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}
            ],
        }
    ]
    if zarr_format == 3:
        group.attrs.update({"ome": {"version": "0.5", "multiscales": multiscales}})
    else:
        multiscales[0]["version"] = "0.4"
        group.attrs.update({"multiscales": multiscales})


def test_reads_ngff_05_on_zarr_v3_with_micrometres(tmp_path: Path) -> None:
    values = _volume(np.uint8, shape=(4, 8, 8))
    axes = [{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"]
    _write_ngff(tmp_path / "v3.zarr", values, zarr_format=3, axes=axes, scale=[0.05, 0.004, 0.004])
    layer = open_layer(tmp_path / "v3.zarr")
    assert layer.metadata["ngff_version"] == "0.5"
    assert layer.voxel_size.as_tuple() == pytest.approx((50.0, 4.0, 4.0))
    assert layer.metadata["voxel_size_from"] == "file"
    np.testing.assert_array_equal(layer.read(), values)


def test_singleton_channel_is_dropped_and_missing_units_are_unknown(tmp_path: Path) -> None:
    values = _volume(np.uint8, shape=(1, 4, 8, 8))
    axes = [{"name": "c", "type": "channel"}] + [{"name": a, "type": "space"} for a in "zyx"]
    _write_ngff(tmp_path / "c.zarr", values, zarr_format=2, axes=axes, scale=[1.0, 3.0, 2.0, 2.0])
    layer = open_layer(tmp_path / "c.zarr")
    assert layer.axes == "zyx"
    assert layer.shape == (4, 8, 8)
    assert layer.metadata["voxel_size_from"] == "unknown"
    np.testing.assert_array_equal(layer.read(Box((1, 2, 2), (2, 3, 3))), values[0, 1:3, 2:5, 2:5])
    np.testing.assert_array_equal(np.asarray(layer.to_dask()), values[0])


def test_plain_array_and_level_array_paths(tmp_path: Path) -> None:
    values = _volume(np.uint16, shape=(4, 8, 8))
    plain = zarr.create_array(
        LocalStore(tmp_path / "plain.zarr"), shape=values.shape, dtype=values.dtype, zarr_format=2
    )
    plain[...] = values
    layer = open_layer(tmp_path / "plain.zarr")
    assert layer.metadata["voxel_size_from"] == "unknown"
    assert layer.metadata["n_levels"] == 1
    np.testing.assert_array_equal(layer.read(), values)

    write_ome_zarr(tmp_path / "ms.zarr", values, voxel_size=4.0, name="ms", n_levels=2)
    level1 = open_layer(f"{tmp_path / 'ms.zarr'}/1")  # an array inside a multiscale group
    assert level1.metadata["level"] == 1
    assert level1.voxel_size == VoxelSize(8, 8, 8)


# --- errors ----------------------------------------------------------------------------------


def test_missing_layer_lists_existing_ones(tmp_path: Path) -> None:
    root = tmp_path / "ds.zarr"
    zarr.open_group(LocalStore(root), mode="w", zarr_format=2)
    values = np.zeros((4, 8, 8), np.uint8)
    write_ome_zarr(root / "raw", values, voxel_size=5.0, name="raw")
    (root / "labels").mkdir()
    zarr.open_group(LocalStore(root / "labels"), mode="w", zarr_format=2).attrs.update(
        {"labels": ["cells"]}
    )
    write_ome_zarr(root / "labels" / "cells", values, voxel_size=5.0, name="c", kind="labels")
    assert list_layer_names(root) == ["raw", "labels/cells"]
    assert open_layer(root).name == "raw"
    assert open_layer(f"{root}/labels/cells").kind == "labels"
    with pytest.raises(LayerNotFoundError, match=r"raw, labels/cells"):
        open_layer(f"{root}/nuclei")
    with pytest.raises(LayerNotFoundError, match="is a group, not an image"):
        open_layer(f"{root}/labels")


def test_damaged_metadata_is_a_corrupt_file_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.zarr"
    write_ome_zarr(path, np.zeros((4, 8, 8), np.uint8), voxel_size=5.0, name="bad")
    attrs = json.loads((path / ".zattrs").read_text())
    del attrs["multiscales"][0]["datasets"]
    (path / ".zattrs").write_text(json.dumps(attrs))
    with pytest.raises(CorruptFileError, match="multiscales"):
        open_layer(path)
    (path / ".zattrs").write_text("{not json")
    with pytest.raises(CorruptFileError, match="damaged"):
        open_layer(path)


def test_synchronous_scheduler_and_2d_images(tmp_path: Path) -> None:
    values = _volume(np.uint8, shape=(70, 90))
    with dask.config.set(scheduler="synchronous"):
        layer = write_ome_zarr(tmp_path / "2d.zarr", values, voxel_size=4.0, name="s", axes="yx")
    assert layer.axes == "yx"
    assert layer.metadata["levels_shape"] == [(70, 90), (35, 45)]
    np.testing.assert_array_equal(layer.read(), values)
    np.testing.assert_array_equal(
        open_ome_zarr(tmp_path / "2d.zarr", level=1).read(), downsample_image(values, (2, 2))
    )
