"""Format-specific behaviour of the non-Zarr readers and of the TIFF writer."""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path

import dask.array as da
import h5py
import mrcfile
import numpy as np
import pytest
import tensorstore as ts
import tifffile
from PIL import Image

from vemkit.errors import CorruptFileError, OutputExistsError
from vemkit.geometry import Box, VoxelSize
from vemkit.io.formats.n5 import N5Array
from vemkit.io.formats.tiff import TiffArray
from vemkit.io.layer import Layer
from vemkit.io.registry import open_layer
from vemkit.io.tiff_writer import write_tiff


def _noise(shape: tuple[int, ...], dtype: type = np.uint8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.normal(0.0, 1.0, shape).astype(dtype)
    return rng.integers(0, min(np.iinfo(dtype).max, 60000), shape, endpoint=True).astype(dtype)


def _close(a: tuple[float, ...], b: tuple[float, ...]) -> None:
    np.testing.assert_allclose(a, b, rtol=1e-6)


# --- TIFF ---------------------------------------------------------------------------------------
def test_tiff_single_page_is_yx(tmp_path: Path) -> None:
    image = _noise((20, 30))
    tifffile.imwrite(tmp_path / "page.tif", image)
    layer = open_layer(tmp_path / "page.tif")
    assert layer.axes == "yx"
    np.testing.assert_array_equal(layer.read(Box((2, 3), (5, 6))), image[2:7, 3:9])


@pytest.mark.parametrize("compression", [None, "zlib", "lzw", "zstd", "packbits"])
def test_tiff_compressions(tmp_path: Path, compression: str | None) -> None:
    volume = _noise((4, 16, 16), np.uint16)
    tifffile.imwrite(tmp_path / "v.tif", volume, photometric="minisblack", compression=compression)
    layer = open_layer(tmp_path / "v.tif")
    assert isinstance(layer.data, TiffArray)
    np.testing.assert_array_equal(layer.read(), volume)


def test_imagej_hyperstack_with_channels_is_czyx(tmp_path: Path) -> None:
    zcyx = _noise((3, 2, 8, 10))
    tifffile.imwrite(
        tmp_path / "hyper.tif",
        zcyx,
        imagej=True,
        resolution=(0.25, 0.25),
        compression="zlib",
        metadata={"axes": "ZCYX", "unit": "nm", "spacing": 30.0},
    )
    layer = open_layer(tmp_path / "hyper.tif")
    assert layer.axes == "czyx"
    assert layer.shape == (2, 3, 8, 10)
    np.testing.assert_array_equal(layer.read(), zcyx.transpose(1, 0, 2, 3))
    np.testing.assert_array_equal(
        layer.read(Box((1, 2, 3), (2, 3, 4))), zcyx[1:3, :, 2:5, 3:7].transpose(1, 0, 2, 3)
    )
    _close(layer.voxel_size.as_tuple(), (30.0, 4.0, 4.0))
    assert layer.chunks == (1, 1, 8, 10)


def test_ome_tiff_channels_and_singleton_time(tmp_path: Path) -> None:
    tczyx = _noise((1, 2, 3, 8, 8))
    tifffile.imwrite(
        tmp_path / "cells.ome.tif",
        tczyx,
        photometric="minisblack",
        metadata={
            "axes": "TCZYX",
            "PhysicalSizeX": 0.01,
            "PhysicalSizeY": 0.01,
            "PhysicalSizeZ": 0.04,
        },
    )
    layer = open_layer(tmp_path / "cells.ome.tif")
    assert layer.axes == "czyx"
    assert layer.name == "cells"
    assert layer.metadata["format"] == "ome-tiff"
    np.testing.assert_array_equal(layer.read(), tczyx[0])
    _close(layer.voxel_size.as_tuple(), (40.0, 10.0, 10.0))  # µm is OME's default unit


def test_rgb_stack_is_czyx(tmp_path: Path) -> None:
    zyxs = _noise((2, 6, 7, 3))
    tifffile.imwrite(tmp_path / "rgb.tif", zyxs, photometric="rgb", compression="zlib")
    layer = open_layer(tmp_path / "rgb.tif")
    assert layer.axes == "czyx"
    np.testing.assert_array_equal(layer.read(), zyxs.transpose(3, 0, 1, 2))


def test_imagej_frames_read_as_z_without_spacing(tmp_path: Path) -> None:
    tyx = _noise((4, 8, 8))
    tifffile.imwrite(
        tmp_path / "frames.tif",
        tyx,
        imagej=True,
        resolution=(250.0, 250.0),
        metadata={"axes": "TYX", "unit": "\\u00B5m"},
    )
    layer = open_layer(tmp_path / "frames.tif")
    assert layer.axes == "zyx"
    np.testing.assert_array_equal(layer.read(), tyx)
    assert layer.metadata["voxel_size_from"] == "unknown"
    _close(layer.metadata["pixel_size_yx_nm"], (4.0, 4.0))


@pytest.mark.parametrize(
    ("unit", "spacing", "expected"),
    [
        ("micron", 0.05, (50.0, 4.0, 4.0)),
        ("\\u00B5m", 0.05, (50.0, 4.0, 4.0)),
        ("um", None, (1000.0, 4.0, 4.0)),  # ImageJ's default depth is 1 unit
        ("nm", 50.0, (50.0, 0.004, 0.004)),
        ("pixel", 2.0, None),
    ],
)
def test_imagej_units(
    tmp_path: Path, unit: str, spacing: float | None, expected: tuple[float, ...] | None
) -> None:
    metadata: dict[str, object] = {"axes": "ZYX", "unit": unit}
    if spacing is not None:
        metadata["spacing"] = spacing
    tifffile.imwrite(
        tmp_path / "ij.tif",
        _noise((3, 8, 8)),
        imagej=True,
        resolution=(250.0, 250.0),
        metadata=metadata,
    )
    layer = open_layer(tmp_path / "ij.tif")
    assert layer.metadata["format"] == "imagej-tiff"
    if expected is None:
        assert layer.metadata["voxel_size_from"] == "unknown"
    else:
        assert layer.metadata["voxel_size_from"] == "file"
        _close(layer.voxel_size.as_tuple(), expected)


def test_plain_tiff_resolution_unit(tmp_path: Path) -> None:
    # 2D: the x/y pixel size is all a 2D image needs
    tifffile.imwrite(
        tmp_path / "cm.tif", _noise((8, 8)), resolution=(2e6, 2e6), resolutionunit="CENTIMETER"
    )
    layer = open_layer(tmp_path / "cm.tif")
    assert layer.metadata["voxel_size_from"] == "file"
    _close(layer.voxel_size.as_tuple(), (5.0, 5.0, 5.0))
    # 3D: no z spacing in a plain TIFF, so the voxel size stays unknown
    tifffile.imwrite(
        tmp_path / "cm3.tif",
        _noise((3, 8, 8)),
        photometric="minisblack",
        resolution=(2e6, 2e6),
        resolutionunit="CENTIMETER",
    )
    layer = open_layer(tmp_path / "cm3.tif")
    assert layer.metadata["voxel_size_from"] == "unknown"
    _close(layer.metadata["pixel_size_yx_nm"], (5.0, 5.0))
    # a screen default of 72 dpi is not a pixel size
    tifffile.imwrite(
        tmp_path / "dpi.tif", _noise((8, 8)), resolution=(72, 72), resolutionunit="INCH"
    )
    assert open_layer(tmp_path / "dpi.tif").metadata["voxel_size_from"] == "unknown"


def test_tiff_written_page_by_page_is_one_stack(tmp_path: Path) -> None:
    volume = _noise((5, 8, 8))
    with tifffile.TiffWriter(tmp_path / "pages.tif") as tif:
        for plane in volume:
            tif.write(plane, contiguous=False, compression="zlib")
    layer = open_layer(tmp_path / "pages.tif")
    assert layer.shape == (5, 8, 8)
    np.testing.assert_array_equal(layer.read(), volume)


def test_pyramidal_ome_tiff_levels(tmp_path: Path) -> None:
    volume = _noise((4, 32, 32))
    path = tmp_path / "pyramid.ome.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(
            volume,
            subifds=1,
            photometric="minisblack",
            compression="zlib",
            metadata={
                "axes": "ZYX",
                "PhysicalSizeX": 0.004,
                "PhysicalSizeY": 0.004,
                "PhysicalSizeZ": 0.05,
            },
        )
        tif.write(volume[:, ::2, ::2], subfiletype=1, photometric="minisblack", compression="zlib")
    level1 = open_layer(path, level=1)
    assert level1.shape == (4, 16, 16)
    np.testing.assert_array_equal(level1.read(), volume[:, ::2, ::2])
    _close(level1.voxel_size.as_tuple(), (50.0, 8.0, 8.0))


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_tiff_array_pickles_and_reopens(tmp_path: Path, compression: str | None) -> None:
    volume = _noise((4, 8, 8), np.uint16)
    tifffile.imwrite(tmp_path / "v.tif", volume, photometric="minisblack", compression=compression)
    layer = open_layer(tmp_path / "v.tif")
    clone = pickle.loads(pickle.dumps(layer.data))
    np.testing.assert_array_equal(clone[1:3, ::2], volume[1:3, ::2])
    np.testing.assert_array_equal(np.asarray(clone), volume)
    layer.data.close()
    np.testing.assert_array_equal(layer.read(), volume)  # reopens on demand
    with pytest.raises(TypeError, match="integer and slice"):
        layer.data[[0, 1]]


def test_big_endian_tiff(tmp_path: Path) -> None:
    volume = _noise((3, 8, 8), np.uint16)
    tifffile.imwrite(tmp_path / "be.tif", volume, byteorder=">", photometric="minisblack")
    values = open_layer(tmp_path / "be.tif").read()
    assert values.dtype == np.dtype("=u2")
    np.testing.assert_array_equal(values, volume)


# --- slices -------------------------------------------------------------------------------------
def test_slices_natural_order_and_ignored_files(tmp_path: Path) -> None:
    folder = tmp_path / "sections"
    folder.mkdir()
    volume = _noise((12, 8, 9))
    for z, plane in enumerate(volume):
        Image.fromarray(plane).save(folder / f"slice_{z + 1}.png")  # slice_2 before slice_10
    (folder / ".slice_0.png").write_bytes(b"hidden")
    (folder / "Thumbs.db").write_bytes(b"junk")
    (folder / "info.txt").write_text("acquisition notes")
    (folder / "sub").mkdir()
    layer = open_layer(folder)
    assert layer.metadata["format"] == "slices"
    assert layer.metadata["first_slice"] == "slice_1.png"
    assert layer.metadata["last_slice"] == "slice_12.png"
    assert layer.chunks == (1, 8, 9)
    np.testing.assert_array_equal(layer.read(), volume)
    np.testing.assert_array_equal(layer.read(Box((9, 1, 2), (3, 4, 5))), volume[9:12, 1:5, 2:7])


def test_slices_tiff_float_and_mixed_extensions(tmp_path: Path) -> None:
    folder = tmp_path / "mixed_ext"
    folder.mkdir()
    volume = _noise((3, 5, 6), np.uint8)
    Image.fromarray(volume[0]).save(folder / "z0.png")
    tifffile.imwrite(folder / "z1.tif", volume[1])
    Image.fromarray(volume[2]).save(folder / "z2.PNG")
    np.testing.assert_array_equal(open_layer(folder).read(), volume)


def test_rgb_and_jpeg_slices(tmp_path: Path) -> None:
    folder = tmp_path / "rgb"
    folder.mkdir()
    volume = _noise((2, 8, 8, 3))
    for z, plane in enumerate(volume):
        Image.fromarray(plane).save(folder / f"{z}.png")
    layer = open_layer(folder)
    assert layer.axes == "czyx"
    np.testing.assert_array_equal(layer.read(), volume.transpose(3, 0, 1, 2))

    jpegs = tmp_path / "jpeg"
    jpegs.mkdir()
    for z in range(3):
        Image.fromarray(np.full((16, 24), 40 * z, np.uint8)).save(jpegs / f"{z}.jpg", quality=95)
    layer = open_layer(jpegs)
    assert (layer.shape, layer.dtype, layer.axes) == ((3, 16, 24), np.uint8, "zyx")
    np.testing.assert_allclose(layer.read()[:, 8, 12], [0, 40, 80], atol=3)


def test_palette_png_slices_give_indices(tmp_path: Path) -> None:
    folder = tmp_path / "labels"
    folder.mkdir()
    labels = np.array([[0, 1], [2, 3]], np.uint8)
    for z in range(2):
        image = Image.fromarray(labels + z, mode="L").convert("P")
        image.putpalette([v for i in range(256) for v in (i, 255 - i, i // 2)])
        image.save(folder / f"{z}.png")
    values = open_layer(folder).read()
    assert values.dtype == np.uint8
    assert values.shape == (2, 2, 2)


def test_slices_layer_pickles(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    folder.mkdir()
    volume = _noise((3, 4, 5))
    for z, plane in enumerate(volume):
        Image.fromarray(plane).save(folder / f"{z}.png")
    layer = pickle.loads(pickle.dumps(open_layer(folder)))
    np.testing.assert_array_equal(layer.read(), volume)


# --- zip ------------------------------------------------------------------------------------------
def test_zip_subfolder_natural_order_and_macos_junk(tmp_path: Path) -> None:
    volume = _noise((11, 6, 7), np.uint16)
    path = tmp_path / "upload.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for z, plane in enumerate(volume):
            member = tmp_path / "member.png"
            Image.fromarray(plane).save(member)
            archive.write(member, f"my stack/img{z}.png")
        archive.writestr("__MACOSX/my stack/._img0.png", b"resource fork")
        archive.writestr("my stack/.DS_Store", b"finder")
        archive.writestr("my stack/README.txt", "notes")
    layer = open_layer(path)
    assert layer.metadata["format"] == "zip"
    assert layer.metadata["last_slice"] == "my stack/img10.png"
    np.testing.assert_array_equal(layer.read(), volume)
    clone = pickle.loads(pickle.dumps(layer))
    np.testing.assert_array_equal(clone.read(Box((9, 0, 0), (2, 3, 3))), volume[9:, :3, :3])


def test_zip_with_damaged_member_fails_on_read(tmp_path: Path) -> None:
    path = tmp_path / "bad.zip"
    plane = _noise((16, 16))
    with zipfile.ZipFile(path, "w") as archive:
        for z in range(2):
            member = tmp_path / "m.png"
            Image.fromarray(plane).save(member)
            data = member.read_bytes()
            archive.writestr(f"{z}.png", data if z == 0 else data[: len(data) // 2])
    layer = open_layer(path)
    with pytest.raises(CorruptFileError, match=r"1\.png"):
        layer.read()


# --- HDF5 -----------------------------------------------------------------------------------------
def test_hdf5_single_volume_found_without_inner_path(tmp_path: Path) -> None:
    volume = _noise((4, 8, 8))
    path = tmp_path / "ilastik.h5"
    with h5py.File(path, "w") as file:
        file["exported_data"] = volume
        file["exported_data"].attrs["element_size_um"] = [0.05, 0.004, 0.004]
        file["meta/table"] = np.arange(10)  # 1D: not an image
    layer = open_layer(path)
    assert isinstance(layer.data, h5py.Dataset)
    assert layer.name == "exported_data"
    _close(layer.voxel_size.as_tuple(), (50.0, 4.0, 4.0))
    np.testing.assert_array_equal(layer.read(Box((1, 2, 3), (2, 3, 4))), volume[1:3, 2:5, 3:7])


def test_hdf5_voxel_size_units_and_parent_group(tmp_path: Path) -> None:
    path = tmp_path / "v.hdf5"
    with h5py.File(path, "w") as file:
        group = file.create_group("volumes")
        group.attrs["voxel_size"] = [0.04, 0.008, 0.008]
        group.attrs["unit"] = "um"
        group["raw"] = _noise((2, 4, 4))
    layer = open_layer(f"{path}:/volumes/raw")
    _close(layer.voxel_size.as_tuple(), (40.0, 8.0, 8.0))
    assert layer.metadata["dataset"] == "/volumes/raw"


def test_hdf5_pyramid_group_and_axes(tmp_path: Path) -> None:
    volume = _noise((4, 16, 16))
    path = tmp_path / "pyr.h5"
    with h5py.File(path, "w") as file:
        file["raw/s0"] = volume
        file["raw/s1"] = volume[:, ::2, ::2]
        file["raw/s1"].attrs["resolution"] = [50.0, 8.0, 8.0]
        file["image2d"] = volume[0]
        file["channels"] = np.stack([volume, volume])
    level1 = open_layer(f"{path}:/raw", level=1)
    assert level1.name == "raw"
    np.testing.assert_array_equal(level1.read(), volume[:, ::2, ::2])
    _close(level1.voxel_size.as_tuple(), (50.0, 8.0, 8.0))
    assert open_layer(f"{path}:image2d").axes == "yx"
    assert open_layer(f"{path}:/channels").axes == "czyx"


# --- N5 -------------------------------------------------------------------------------------------
def _write_n5(folder: Path, zyx: np.ndarray, attributes: dict[str, object]) -> None:
    store = ts.open(
        {
            "driver": "n5",
            "kvstore": {"driver": "file", "path": str(folder)},
            "metadata": {
                "dimensions": list(reversed(zyx.shape)),
                "blockSize": [4, 4, 4][: zyx.ndim],
                "dataType": zyx.dtype.name,
                "compression": {"type": "raw"},
            },
            "create": True,
        }
    ).result()
    store[...] = zyx.T
    attributes_file = folder / "attributes.json"
    merged = {**json.loads(attributes_file.read_text()), **attributes}
    attributes_file.write_text(json.dumps(merged))


def test_n5_xyz_order_becomes_zyx(tmp_path: Path) -> None:
    zyx = _noise((3, 5, 7), np.uint16)
    _write_n5(
        tmp_path / "c.n5" / "em",
        zyx,
        {"pixelResolution": {"dimensions": [0.004, 0.005, 0.05], "unit": "um"}},
    )
    layer = open_layer(tmp_path / "c.n5" / "em")  # the file.n5/path form
    assert isinstance(layer.data, N5Array)
    assert layer.shape == (3, 5, 7)
    np.testing.assert_array_equal(layer.read(), zyx)
    np.testing.assert_array_equal(layer.data[2, 1:4, 6], zyx[2, 1:4, 6])
    _close(layer.voxel_size.as_tuple(), (50.0, 5.0, 4.0))
    assert layer.chunks == (4, 4, 4)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(layer.data))[...], zyx)


def test_n5_multiscale_group_and_cosem_transform(tmp_path: Path) -> None:
    zyx = _noise((4, 8, 8))
    root = tmp_path / "bdv.n5"
    _write_n5(root / "setup0" / "s0", zyx, {"downsamplingFactors": [1, 1, 1]})
    _write_n5(root / "setup0" / "s1", zyx[:, ::2, ::2], {"downsamplingFactors": [2, 2, 1]})
    group_attributes = {"pixelResolution": {"dimensions": [4.0, 4.0, 40.0], "unit": "nm"}}
    (root / "setup0" / "attributes.json").write_text(json.dumps(group_attributes))
    level1 = open_layer(f"{root}:/setup0", level=1)
    assert level1.name == "setup0"
    np.testing.assert_array_equal(level1.read(), zyx[:, ::2, ::2])
    _close(level1.voxel_size.as_tuple(), (40.0, 8.0, 8.0))

    transform = {"axes": ["z", "y", "x"], "scale": [16.0, 8.0, 8.0], "units": ["nm", "nm", "nm"]}
    _write_n5(tmp_path / "cosem.n5" / "em" / "s0", zyx, {"transform": transform})
    layer = open_layer(f"{tmp_path / 'cosem.n5'}:em/s0")
    _close(layer.voxel_size.as_tuple(), (16.0, 8.0, 8.0))


def test_n5_container_lists_several_datasets(tmp_path: Path) -> None:
    root = tmp_path / "two.n5"
    _write_n5(root / "raw", _noise((2, 4, 4)), {})
    _write_n5(root / "labels", _noise((2, 4, 4)), {})
    from vemkit.errors import LayerNotFoundError

    with pytest.raises(LayerNotFoundError, match=r"several.*labels.*raw|several.*raw.*labels"):
        open_layer(root)
    assert open_layer(f"{root}:/labels").metadata["voxel_size_from"] == "unknown"


# --- MRC ------------------------------------------------------------------------------------------
def test_mrc_voxel_size_in_angstrom(tmp_path: Path) -> None:
    volume = _noise((3, 6, 8), np.float32)
    with mrcfile.new(tmp_path / "tomo.rec") as mrc:
        mrc.set_data(volume)
        mrc.voxel_size = (13.6, 13.6, 27.2)
    layer = open_layer(tmp_path / "tomo.rec")
    _close(layer.voxel_size.as_tuple(), (2.72, 1.36, 1.36))
    assert layer.metadata["format"] == "mrc"
    np.testing.assert_array_equal(layer.read(Box((1, 1, 1), (2, 4, 6))), volume[1:3, 1:5, 1:7])


def test_mrc_single_image_and_zero_cell(tmp_path: Path) -> None:
    with mrcfile.new(tmp_path / "img.mrc") as mrc:
        mrc.set_data(_noise((6, 8), np.int16))
    layer = open_layer(tmp_path / "img.mrc")
    assert layer.axes == "yx"
    assert layer.metadata["voxel_size_from"] == "unknown"


def test_mrc_axis_order_is_honoured(tmp_path: Path) -> None:
    zyx = _noise((3, 5, 7), np.int16)
    with mrcfile.new(tmp_path / "swapped.mrc") as mrc:
        mrc.set_data(zyx.transpose(2, 1, 0).copy())  # sections = x, rows = y, columns = z
        mrc.header.mapc, mrc.header.mapr, mrc.header.maps = 3, 2, 1
    layer = open_layer(tmp_path / "swapped.mrc")
    assert layer.shape == (3, 5, 7)
    np.testing.assert_array_equal(layer.read(), zyx)


def test_mrc_imod_unsigned_bytes(tmp_path: Path) -> None:
    values = np.array([[[0, 100, 200, 255]]], np.uint8)
    path = tmp_path / "imod.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(values.view(np.int8))
        extra2 = bytearray(bytes(mrc.header.extra2))
        extra2[40:44] = (1146047817).to_bytes(4, "little")
        extra2[44:48] = (0).to_bytes(4, "little")
        mrc.header.extra2 = bytes(extra2)
    layer = open_layer(path)
    assert layer.dtype == np.uint8
    np.testing.assert_array_equal(layer.read(), values)


# --- writing TIFF ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_write_tiff_is_imagej_readable(tmp_path: Path, dtype: type) -> None:
    volume = _noise((5, 9, 11), dtype)
    out = write_tiff(tmp_path / "out.tif", volume, voxel_size="50,4.6,4.6")
    with tifffile.TiffFile(out) as tif:  # what Fiji sees
        assert tif.is_imagej
        assert tif.imagej_metadata["unit"] == "um"
        assert tif.imagej_metadata["spacing"] == pytest.approx(0.05)
        assert tif.pages[0].resolution[0] == pytest.approx(1000 / 4.6)
        assert tif.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
    layer = open_layer(out)
    np.testing.assert_array_equal(layer.read(), volume)
    _close(layer.voxel_size.as_tuple(), (50.0, 4.6, 4.6))


def test_write_tiff_labels_and_channels(tmp_path: Path) -> None:
    labels = _noise((3, 6, 6), np.uint32)
    out = write_tiff(tmp_path / "labels.tif", labels, voxel_size=(10, 10, 10))
    layer = open_layer(out)
    assert layer.metadata["format"] == "ome-tiff"
    np.testing.assert_array_equal(layer.read(), labels)

    czyx = _noise((2, 3, 6, 6), np.uint16)
    for name, ome in (("c_ij.tif", None), ("c.ome.tif", None)):
        layer = open_layer(write_tiff(tmp_path / name, czyx, voxel_size="40,5,5", ome=ome))
        assert layer.axes == "czyx"
        np.testing.assert_array_equal(layer.read(), czyx)
        _close(layer.voxel_size.as_tuple(), (40.0, 5.0, 5.0))

    image = _noise((6, 7))
    layer = open_layer(write_tiff(tmp_path / "image.tif", image.astype(bool), voxel_size="5"))
    assert (layer.axes, layer.dtype) == ("yx", np.uint8)
    np.testing.assert_array_equal(layer.read(), image.astype(bool))


def test_write_tiff_from_layer_streams_slabs(tmp_path: Path) -> None:
    volume = _noise((12, 16, 16), np.uint16)
    lazy = da.from_array(volume, chunks=(4, 16, 16))
    layer = Layer(lazy, voxel_size=VoxelSize(30, 6, 6), metadata={"voxel_size_from": "file"})

    class Count:
        def __init__(self) -> None:
            self.total = 0
            self.steps = 0

        def start(self, total: int, description: str) -> None:
            self.total = total

        def advance(self, steps: int = 1) -> None:
            self.steps += steps

        def finish(self) -> None:
            pass

    progress = Count()
    out = write_tiff(
        tmp_path / "lazy.tif", layer, compression="zstd", bigtiff=True, progress=progress
    )
    assert progress.steps == progress.total >= 1
    result = open_layer(out)
    assert result.metadata["bigtiff"]
    assert result.metadata["format"] == "ome-tiff"
    np.testing.assert_array_equal(result.read(), volume)
    _close(result.voxel_size.as_tuple(), (30.0, 6.0, 6.0))

    unknown = Layer(volume, voxel_size=VoxelSize(1, 1, 1))  # voxel size never known
    assert (
        open_layer(write_tiff(tmp_path / "plain.tif", unknown)).metadata["voxel_size_from"]
        == "unknown"
    )


def test_write_tiff_overwrite_and_atomicity(tmp_path: Path) -> None:
    path = tmp_path / "out.tif"
    write_tiff(path, _noise((2, 4, 4)), voxel_size="10")
    with pytest.raises(OutputExistsError):
        write_tiff(path, _noise((2, 4, 4)), voxel_size="10")
    write_tiff(path, _noise((3, 4, 4), seed=1), voxel_size="10", overwrite=True)
    assert open_layer(path).shape == (3, 4, 4)

    class Failing:
        shape = (8, 4, 4)
        dtype = np.dtype(np.uint8)

        def __getitem__(self, key: object) -> np.ndarray:
            raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        write_tiff(path, Failing(), voxel_size="10", overwrite=True)
    assert open_layer(path).shape == (3, 4, 4)  # the old file is intact
    assert sorted(os.listdir(tmp_path)) == ["out.tif"]  # no temporary left behind


# --- real data ------------------------------------------------------------------------------------
def _real_data_root() -> Path | None:
    env = os.environ.get("VEMKIT_DATA")
    root = Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data"
    return root if root.is_dir() else None


@pytest.mark.realdata
def test_every_real_tif_opens() -> None:
    root = _real_data_root()
    if root is None:
        pytest.skip("real datasets not found (set VEMKIT_DATA or place ../shared/data)")
    checked = 0
    for path in sorted(root.glob("*/*.tif")):
        meta_file = path.parent / "dataset.json"
        files = json.loads(meta_file.read_text()).get("files", {}) if meta_file.exists() else {}
        layer = open_layer(path)
        assert layer.axes == "zyx", path.name
        if path.name in files:
            assert list(layer.shape) == list(files[path.name]["shape"]), path.name
            assert layer.dtype == np.dtype(files[path.name]["dtype"]), path.name
        z = layer.shape[0] // 2
        plane = layer.read(Box((z, 0, 0), (1, *layer.shape[1:])))
        assert plane.shape == (1, *layer.shape[1:])
        checked += 1
    assert checked > 0
