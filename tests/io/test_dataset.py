"""Datasets: copy and reference raw, add layers, names, info; the source is never modified."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest

from vemkit.errors import (
    ConfigError,
    InvalidVolumeError,
    LayerNotFoundError,
    OutputExistsError,
    UnknownFormatError,
    VolumeNotFoundError,
    VoxelSizeError,
)
from vemkit.geometry import VoxelSize
from vemkit.io.dataset import Dataset
from vemkit.io.layer import Layer
from vemkit.io.ome_zarr import write_ome_zarr
from vemkit.io.registry import open_layer

VOXEL = VoxelSize(40.0, 8.0, 8.0)
SHAPE = (10, 80, 72)


def _fingerprint(folder: Path) -> dict[str, tuple[str, int]]:
    """Hash and mtime of every file below ``folder``."""
    return {
        str(p.relative_to(folder)): (
            hashlib.sha256(p.read_bytes()).hexdigest(),
            p.stat().st_mtime_ns,
        )
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A raw volume in an OME-Zarr file outside the dataset."""
    values = np.random.default_rng(0).integers(0, 255, size=SHAPE).astype(np.uint8)
    path = tmp_path / "source.zarr"
    write_ome_zarr(path, values, voxel_size=VOXEL, name="source", n_levels=2)
    return path


def test_copy_mode_keeps_source_untouched(tmp_path: Path, source: Path) -> None:
    before = _fingerprint(source)
    raw = open_layer(source)
    ds = Dataset.create(tmp_path / "ds.zarr", raw)
    assert _fingerprint(source) == before
    assert ds.mode == "copy"
    assert ds.layer_names() == ["raw"]
    layer = ds.layer("raw")
    assert layer.voxel_size == VOXEL
    assert layer.metadata["voxel_size_from"] == "file"
    np.testing.assert_array_equal(layer.read(), raw.read())
    assert (tmp_path / "ds.zarr" / "raw" / "0" / ".zarray").is_file()
    assert ds.layer("raw", level=1).voxel_size == VoxelSize(40, 16, 16)
    record = json.loads((tmp_path / "ds.zarr" / ".zattrs").read_text())["vemkit"]
    assert record["raw"]["mode"] == "copy"
    assert record["raw"]["source"] == str(source)


def test_reference_mode_stores_only_the_location(tmp_path: Path, source: Path) -> None:
    before = _fingerprint(source)
    raw = open_layer(source, voxel_size="30,6,6")  # the user's voxel size wins over the file's
    ds = Dataset.create(tmp_path / "ref.zarr", raw, mode="reference")
    assert _fingerprint(source) == before
    assert not (tmp_path / "ref.zarr" / "raw").exists()
    assert Dataset.open(tmp_path / "ref.zarr").mode == "reference"
    layer = ds.layer("raw")
    assert layer.name == "raw"
    assert layer.read_only
    assert layer.voxel_size == VoxelSize(30, 6, 6)
    assert layer.metadata["voxel_size_from"] == "user"
    np.testing.assert_array_equal(layer.read(), raw.read())
    assert ds.layer("raw", level=1).voxel_size == VoxelSize(30, 12, 12)
    assert open_layer(tmp_path / "ref.zarr").metadata["reference"] is True
    assert ds.info()["source"] == str(source)


def test_reference_to_a_moved_source(tmp_path: Path, source: Path) -> None:
    ds = Dataset.create(tmp_path / "ref.zarr", open_layer(source), mode="reference")
    shutil.move(source, tmp_path / "elsewhere.zarr")
    with pytest.raises(VolumeNotFoundError, match="no longer exists"):
        ds.layer("raw")
    info = ds.info()
    assert "no longer exists" in info["layers"][0]["error"]


def test_reference_mode_needs_a_file(tmp_path: Path) -> None:
    raw = Layer(np.zeros(SHAPE, np.uint8), VOXEL)
    with pytest.raises(ConfigError, match="mode='copy'"):
        Dataset.create(tmp_path / "ref.zarr", raw, mode="reference")
    assert not (tmp_path / "ref.zarr").exists()


def test_unknown_voxel_size_is_refused(tmp_path: Path) -> None:
    raw = Layer(np.zeros(SHAPE, np.uint8), VOXEL, metadata={"voxel_size_from": "unknown"})
    with pytest.raises(VoxelSizeError, match="--voxel-size"):
        Dataset.create(tmp_path / "ds.zarr", raw)


def test_add_layers_names_and_metadata(tmp_path: Path) -> None:
    raw = Layer(np.zeros(SHAPE, np.uint16), VOXEL)
    ds = Dataset.create(tmp_path / "ds.zarr", raw)
    nuclei = np.zeros(SHAPE, np.uint32)
    nuclei[2:6, 10:30, 10:30] = 7
    written = ds.add_layer("nuclei", nuclei, kind="labels")
    assert written.kind == "labels"
    assert written.voxel_size == VOXEL
    np.testing.assert_array_equal(written.read(), nuclei)
    mito = da.from_array(np.ones(SHAPE, np.uint64), chunks=(5, 16, 16))
    ds.add_layer("labels/mito", mito, kind="labels")
    pred = np.random.default_rng(1).random(SHAPE).astype(np.float32)
    ds.add_layer("distance", pred, kind="image")
    assert ds.layer_names() == ["raw", "distance", "labels/nuclei", "labels/mito"]
    labels_attrs = json.loads((tmp_path / "ds.zarr" / "labels" / ".zattrs").read_text())
    assert labels_attrs == {"labels": ["nuclei", "mito"]}
    nuclei_attrs = json.loads((tmp_path / "ds.zarr" / "labels" / "nuclei" / ".zattrs").read_text())
    assert nuclei_attrs["image-label"]["source"] == {"image": "../../raw"}
    assert ds.layer("nuclei").name == "nuclei"  # bare label names resolve too
    np.testing.assert_array_equal(ds.layer("distance").read(), pred)
    assert open_layer(f"{tmp_path / 'ds.zarr'}/labels/nuclei").kind == "labels"
    info = ds.info()
    json.dumps(info)  # serialisable for `vemkit info`
    by_name = {entry["name"]: entry for entry in info["layers"]}
    assert by_name["labels/nuclei"]["dtype"] == "uint32"
    assert by_name["raw"]["voxel_size_nm"] == [40.0, 8.0, 8.0]
    assert by_name["raw"]["levels"][0]["shape"] == list(SHAPE)


def test_add_layer_at_a_coarser_voxel_size(tmp_path: Path) -> None:
    ds = Dataset.create(tmp_path / "ds.zarr", Layer(np.zeros(SHAPE, np.uint8), VOXEL))
    coarse = np.zeros((10, 40, 36), np.uint32)
    layer = ds.add_layer("coarse", coarse, kind="labels", voxel_size=(40.0, 16.0, 16.0))
    assert layer.voxel_size == VoxelSize(40, 16, 16)
    with pytest.raises(InvalidVolumeError, match="spans"):
        ds.add_layer("wrong", coarse, kind="labels")  # raw's voxel size, wrong shape
    assert "labels/wrong" not in ds.layer_names()


def test_add_layer_refusals(tmp_path: Path) -> None:
    ds = Dataset.create(tmp_path / "ds.zarr", Layer(np.zeros(SHAPE, np.uint8), VOXEL))
    labels = np.ones(SHAPE, np.uint32)
    ds.add_layer("cells", labels, kind="labels")
    with pytest.raises(OutputExistsError):
        ds.add_layer("cells", labels * 2, kind="labels")
    ds.add_layer("cells", labels * 2, kind="labels", overwrite=True)
    assert ds.layer("labels/cells").read().max() == 2
    assert ds.layer_names().count("labels/cells") == 1
    with pytest.raises(ConfigError, match="raw"):
        ds.add_layer("raw", labels, kind="image")
    with pytest.raises(ConfigError, match="not allowed"):
        ds.add_layer("../escape", labels, kind="labels")
    with pytest.raises(InvalidVolumeError, match="integers"):
        ds.add_layer("floaty", labels.astype(np.float32), kind="labels")
    hidden = [p.name for p in (tmp_path / "ds.zarr" / "labels").iterdir() if p.name[0] == "."]
    assert sorted(hidden) == [".zattrs", ".zgroup"]  # no temporary leftovers


def test_open_errors_and_missing_layer(tmp_path: Path, source: Path) -> None:
    with pytest.raises(VolumeNotFoundError):
        Dataset.open(tmp_path / "missing.zarr")
    with pytest.raises(UnknownFormatError, match="single OME-Zarr image"):
        Dataset.open(source)
    Dataset.create(tmp_path / "ds.zarr", open_layer(source))
    ds = Dataset.open(tmp_path / "ds.zarr")
    with pytest.raises(LayerNotFoundError, match="it has: raw"):
        ds.layer("nuclei")
    with pytest.raises(OutputExistsError):
        Dataset.create(tmp_path / "ds.zarr", open_layer(source))
    with pytest.raises(ConfigError, match="replace its own raw data"):
        Dataset.create(source, open_layer(source), overwrite=True)


def test_reference_to_a_relative_path_is_stored_absolute(
    tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    ds = Dataset.create("ref.zarr", open_layer("source.zarr"), mode="reference")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert ds.layer("raw").shape == SHAPE
    assert Dataset.open(tmp_path / "ref.zarr").info()["source"] == str(source)


class _FailingArray:
    """Array-like whose reads fail: a crash after the layer's arrays were created."""

    def __init__(self, values: np.ndarray) -> None:
        self.values, self.shape, self.dtype, self.ndim = values, values.shape, values.dtype, 3
        self.reads = 0

    def __getitem__(self, key: object) -> np.ndarray:
        self.reads += 1
        if self.reads > 0:
            raise RuntimeError("simulated crash")
        return self.values[key]  # type: ignore[index]


def test_failed_add_layer_leaves_no_trace(tmp_path: Path) -> None:
    ds = Dataset.create(tmp_path / "ds.zarr", Layer(np.zeros(SHAPE, np.uint8), VOXEL))
    with dask.config.set(scheduler="synchronous"), pytest.raises(RuntimeError, match="simulated"):
        ds.add_layer("broken", _FailingArray(np.ones(SHAPE, np.uint32)), kind="labels")
    assert ds.layer_names() == ["raw"]
    leftovers = [p.name for p in (tmp_path / "ds.zarr" / "labels").iterdir()]
    assert sorted(leftovers) == [".zattrs", ".zgroup"]
    assert json.loads((tmp_path / "ds.zarr" / "labels" / ".zattrs").read_text()) == {"labels": []}
