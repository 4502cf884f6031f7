"""One conformance suite every storage reader must pass.

Each case writes a small volume with the format's own library (never with vemkit, except
the case that checks vemkit's own TIFF writer), opens it with ``open_layer`` and checks
values, dtype, shape, axes, voxel size, box reads, read-only-ness, the voxel-size override
and that the source bytes are untouched.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import mrcfile
import numpy as np
import pytest
import tensorstore as ts
import tifffile
from PIL import Image

from vemkit.errors import ReadOnlyLayerError
from vemkit.geometry import Box, VoxelSize
from vemkit.io.registry import open_layer
from vemkit.io.tiff_writer import write_tiff

SHAPE = (6, 10, 12)
VOXEL = VoxelSize(50.0, 4.6, 4.6)

Writer = Callable[[Path, np.ndarray, VoxelSize], str]


def _tiff_imagej(folder: Path, data: np.ndarray, vs: VoxelSize) -> str:
    path = folder / "stack.tif"
    tifffile.imwrite(
        path,
        data,
        imagej=True,
        compression="zlib",
        resolution=(1000.0 / vs.x, 1000.0 / vs.y),
        metadata={"axes": "ZYX", "spacing": vs.z / 1000.0, "unit": "um"},
    )
    return str(path)


def _tiff_ome(folder: Path, data: np.ndarray, vs: VoxelSize) -> str:
    path = folder / "stack.ome.tif"
    tifffile.imwrite(
        path,
        data,
        photometric="minisblack",
        metadata={
            "axes": "ZYX",
            "PhysicalSizeZ": vs.z,
            "PhysicalSizeZUnit": "nm",
            "PhysicalSizeY": vs.y / 1000.0,
            "PhysicalSizeYUnit": "µm",
            "PhysicalSizeX": vs.x / 1000.0,
        },
    )
    return str(path)


def _tiff_plain_lzw(folder: Path, data: np.ndarray, vs: VoxelSize) -> str:
    path = folder / "plain.tiff"
    with tifffile.TiffWriter(path, shaped=False) as tif:
        for plane in data:
            tif.write(plane, photometric="minisblack", compression="lzw")
    return str(path)


def _tiff_zstd_bigtiff(folder: Path, data: np.ndarray, vs: VoxelSize) -> str:
    path = folder / "big.btf"
    tifffile.imwrite(
        path, data, bigtiff=True, photometric="minisblack", compression="zstd", tile=(16, 16)
    )
    return str(path)


def _png_slices(folder: Path, data: np.ndarray, vs: VoxelSize) -> str:
    out = folder / "slices"
    out.mkdir()
    for z, plane in enumerate(data):
        Image.fromarray(plane).save(out / f"section_{z}.png")
    return str(out)


def _tiff_slices(folder: Path, data: np.ndarray, vs: VoxelSize) -> str:
    out = folder / "tiff_slices"
    out.mkdir()
    for z, plane in enumerate(data):
        tifffile.imwrite(out / f"z{z:03d}.tif", plane, compression="zlib")
    return str(out)


def _zip_png(folder: Path, data: np.ndarray, vs: VoxelSize) -> str:
    path = folder / "upload.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for z, plane in enumerate(data):
            member = folder / f"tmp_{z}.png"
            Image.fromarray(plane).save(member)
            archive.write(member, f"stack/{z}.png")
            member.unlink()
    return str(path)


def _zip_tiff(folder: Path, data: np.ndarray, vs: VoxelSize) -> str:
    path = folder / "upload_tif.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for z, plane in enumerate(data):
            member = folder / f"tmp_{z}.tif"
            tifffile.imwrite(member, plane)
            archive.write(member, f"{z}.tif")
            member.unlink()
    return str(path)


def _hdf5(folder: Path, data: np.ndarray, vs: VoxelSize) -> str:
    path = folder / "volume.h5"
    with h5py.File(path, "w") as file:
        dataset = file.create_dataset(
            "volumes/raw", data=data, chunks=(2, 4, 4), compression="gzip"
        )
        dataset.attrs["resolution"] = list(vs.as_tuple())
        file.create_dataset("volumes/notes", data=np.arange(3))
    return f"{path}:/volumes/raw"


def _n5(folder: Path, data: np.ndarray, vs: VoxelSize) -> str:
    root = folder / "volume.n5"
    dtype = {"uint8": "uint8", "uint16": "uint16", "float32": "float32"}[data.dtype.name]
    store = ts.open(
        {
            "driver": "n5",
            "kvstore": {"driver": "file", "path": str(root / "raw")},
            "metadata": {
                "dimensions": list(reversed(data.shape)),
                "blockSize": [5, 4, 4],
                "dataType": dtype,
                "compression": {"type": "gzip"},
            },
            "create": True,
        }
    ).result()
    store[...] = data.T
    attributes_file = root / "raw" / "attributes.json"
    attributes = json.loads(attributes_file.read_text())
    attributes["resolution"] = [vs.x, vs.y, vs.z]
    attributes_file.write_text(json.dumps(attributes))
    return f"{root}:/raw"


def _mrc(folder: Path, data: np.ndarray, vs: VoxelSize) -> str:
    path = folder / "tomogram.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = (vs.x * 10.0, vs.y * 10.0, vs.z * 10.0)  # Å, x y z
    return str(path)


def _vemkit_tiff(folder: Path, data: np.ndarray, vs: VoxelSize) -> str:
    return str(write_tiff(folder / "written.tif", data, voxel_size=vs))


@dataclass(frozen=True)
class Case:
    name: str
    write: Writer
    dtypes: tuple[str, ...]
    stores_voxel_size: bool


CASES = [
    Case("imagej-tiff", _tiff_imagej, ("uint8", "uint16", "float32"), True),
    Case("ome-tiff", _tiff_ome, ("uint8", "uint16", "float32"), True),
    Case("tiff-lzw-pages", _tiff_plain_lzw, ("uint8", "uint16", "float32"), False),
    Case("bigtiff-zstd-tiled", _tiff_zstd_bigtiff, ("uint8", "uint16", "float32"), False),
    Case("png-slices", _png_slices, ("uint8", "uint16"), False),
    Case("tiff-slices", _tiff_slices, ("uint8", "uint16", "float32"), False),
    Case("zip-png", _zip_png, ("uint8", "uint16"), False),
    Case("zip-tiff", _zip_tiff, ("float32",), False),
    Case("hdf5", _hdf5, ("uint8", "uint16", "float32"), True),
    Case("n5", _n5, ("uint8", "uint16", "float32"), True),
    Case("mrc", _mrc, ("uint16", "float32"), True),  # MRC has no uint8 mode
    Case("vemkit-tiff", _vemkit_tiff, ("uint8", "uint16", "float32", "uint32"), True),
]

PARAMS = [
    pytest.param(case, dtype, id=f"{case.name}-{dtype}") for case in CASES for dtype in case.dtypes
]


def _volume(dtype: str) -> np.ndarray:
    rng = np.random.default_rng(7)
    kind = np.dtype(dtype)
    if kind.kind == "f":
        return rng.normal(100.0, 30.0, SHAPE).astype(kind)
    high = min(np.iinfo(kind).max, 2**31 - 1)
    return rng.integers(0, high, SHAPE, endpoint=True).astype(kind)


def _fingerprint(location: str) -> dict[str, str]:
    """SHA-256 of every file under the source (file or folder), by relative path."""
    path = Path(location.split(":/", maxsplit=1)[0]) if ":/" in location else Path(location)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {
        str(p.relative_to(path.parent)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files
    }


@pytest.mark.parametrize(("case", "dtype"), PARAMS)
def test_reader_conformance(tmp_path: Path, case: Case, dtype: str) -> None:
    expected = _volume(dtype)
    location = case.write(tmp_path, expected, VOXEL)
    before = _fingerprint(location)

    layer = open_layer(location)

    # values, dtype, shape, axes
    assert layer.axes == "zyx"
    assert layer.shape == SHAPE
    assert layer.dtype == np.dtype(dtype)
    values = layer.read()
    assert values.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(values, expected)
    np.testing.assert_array_equal(np.asarray(layer.to_dask().compute()), expected)

    # voxel size
    if case.stores_voxel_size:
        assert layer.metadata["voxel_size_from"] == "file"
        np.testing.assert_allclose(layer.voxel_size.as_tuple(), VOXEL.as_tuple(), rtol=1e-6)
    else:
        assert layer.metadata["voxel_size_from"] == "unknown"
        assert layer.voxel_size == VoxelSize(1, 1, 1)
    assert isinstance(layer.metadata.get("format"), str)

    # box reads equal slicing, including boxes touching the far edges
    for box in (Box((1, 2, 3), (3, 4, 5)), Box((5, 0, 11), (1, 10, 1)), Box((0, 9, 0), (6, 1, 12))):
        np.testing.assert_array_equal(layer.read(box), expected[box.to_slices()])

    # read-only
    assert layer.read_only
    with pytest.raises(ReadOnlyLayerError, match="read-only"):
        layer.write(Box((0, 0, 0), (1, 1, 1)), np.zeros((1, 1, 1), dtype=dtype))

    # the user's voxel size wins
    override = open_layer(location, voxel_size="30,3,3")
    assert override.voxel_size == VoxelSize(30, 3, 3)
    assert override.metadata["voxel_size_from"] == "user"
    np.testing.assert_array_equal(override.read(Box((0, 0, 0), (2, 2, 2))), expected[:2, :2, :2])

    del layer, override
    assert _fingerprint(location) == before
