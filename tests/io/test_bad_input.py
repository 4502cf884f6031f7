"""Bad input raises the right VemkitError subclass with a message that says what to do."""

from __future__ import annotations

import zipfile
from pathlib import Path

import h5py
import mrcfile
import numpy as np
import pytest
import tifffile
from PIL import Image

from vemkit.errors import (
    ConfigError,
    CorruptFileError,
    InvalidVolumeError,
    LayerNotFoundError,
    OutputExistsError,
    UnknownFormatError,
    VemkitError,
    VolumeNotFoundError,
    VoxelSizeError,
)
from vemkit.geometry import VoxelSize
from vemkit.io.layer import Layer
from vemkit.io.registry import open_layer
from vemkit.io.tiff_writer import write_tiff
from vemkit.io.validate import (
    require_finite,
    require_nonempty,
    require_volume,
    require_voxel_size,
)


def _open_and_read(location: str | Path) -> None:
    open_layer(location).read()


def _noise(shape: tuple[int, ...], dtype: type = np.uint8) -> np.ndarray:
    return np.random.default_rng(3).integers(0, 200, shape).astype(dtype)


# --- unknown and missing input ----------------------------------------------------------------
def test_unknown_format(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a volume")
    with pytest.raises(UnknownFormatError, match="unknown format") as info:
        open_layer(path)
    assert "OME-Zarr" in str(info.value)
    assert "TIFF" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.tif"
    with pytest.raises(VolumeNotFoundError, match="no such file") as info:
        open_layer(path)
    assert "missing.tif" in str(info.value)
    assert isinstance(info.value, FileNotFoundError)


# --- damaged files -------------------------------------------------------------------------------
@pytest.mark.parametrize("compression", [None, "zlib"])
def test_truncated_tiff(tmp_path: Path, compression: str | None) -> None:
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, _noise((8, 32, 32)), photometric="minisblack", compression=compression)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError, match=r"truncated|damaged") as info:
        _open_and_read(path)
    assert "cut.tif" in str(info.value)
    assert isinstance(info.value, OSError)


def test_not_a_tiff(tmp_path: Path) -> None:
    path = tmp_path / "fake.tif"
    path.write_bytes(b"this is text, not an image" * 10)
    with pytest.raises(CorruptFileError, match="TIFF"):
        open_layer(path)


def test_corrupt_hdf5(tmp_path: Path) -> None:
    path = tmp_path / "broken.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 64 + b"garbage" * 20)
    with pytest.raises(CorruptFileError, match="HDF5") as info:
        open_layer(f"{path}:/raw")
    assert "broken.h5" in str(info.value)


def test_hdf5_missing_dataset_lists_what_exists(tmp_path: Path) -> None:
    path = tmp_path / "two.h5"
    with h5py.File(path, "w") as file:
        file["raw"] = _noise((4, 8, 8))
        file["labels/cells"] = _noise((4, 8, 8), np.uint16)
    with pytest.raises(LayerNotFoundError, match="no dataset 'nuclei'") as info:
        open_layer(f"{path}:/nuclei")
    assert "/raw" in str(info.value)
    assert "/labels/cells" in str(info.value)
    with pytest.raises(LayerNotFoundError, match="several") as info:
        open_layer(path)
    assert f"{path}:/raw" in str(info.value)
    assert f"{path}:/labels/cells" in str(info.value)


def test_n5_missing_dataset(tmp_path: Path) -> None:
    root = tmp_path / "empty.n5"
    root.mkdir()
    (root / "attributes.json").write_text('{"n5": "2.0.0"}')
    with pytest.raises(LayerNotFoundError, match="no dataset 'raw'"):
        open_layer(f"{root}:/raw")
    with pytest.raises(LayerNotFoundError, match="no image dataset"):
        open_layer(root)


def test_corrupt_mrc(tmp_path: Path) -> None:
    path = tmp_path / "junk.mrc"
    path.write_bytes(b"\x01" * 2000)
    with pytest.raises(CorruptFileError, match="MRC"):
        open_layer(path)


def test_truncated_mrc(tmp_path: Path) -> None:
    path = tmp_path / "cut.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(np.zeros((8, 16, 16), np.float32))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 500])
    with pytest.raises(CorruptFileError, match="truncated"):
        open_layer(path)


def test_corrupt_zip(tmp_path: Path) -> None:
    path = tmp_path / "upload.zip"
    path.write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    with pytest.raises(CorruptFileError, match="zip"):
        open_layer(path)


def test_zip_without_slices(tmp_path: Path) -> None:
    path = tmp_path / "docs.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
        archive.writestr("__MACOSX/._0.png", b"resource fork")
    with pytest.raises(UnknownFormatError, match="no PNG, TIFF or JPEG slices"):
        open_layer(path)


# --- folders of slices ---------------------------------------------------------------------------
def test_empty_folder(tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / ".hidden.png").write_bytes(b"x")
    (folder / "notes.txt").write_text("no images here")
    with pytest.raises(UnknownFormatError, match="no PNG, TIFF or JPEG slices") as info:
        open_layer(folder)
    assert "empty" in str(info.value)


def test_slices_of_mixed_shape(tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.fromarray(_noise((16, 16))).save(folder / "s1.png")
    Image.fromarray(_noise((16, 16))).save(folder / "s2.png")
    Image.fromarray(_noise((16, 20))).save(folder / "s3.png")
    with pytest.raises(InvalidVolumeError, match="share one shape and dtype") as info:
        open_layer(folder)
    assert "s3.png" in str(info.value)


def test_slices_of_mixed_dtype(tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.fromarray(_noise((16, 16))).save(folder / "a1.png")
    Image.fromarray(_noise((16, 16), np.uint16)).save(folder / "a2.png")
    with pytest.raises(InvalidVolumeError, match=r"a2\.png"):
        open_layer(folder)


def test_unreadable_slice(tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    Image.fromarray(_noise((16, 16))).save(folder / "s1.png")
    (folder / "s2.png").write_bytes(b"definitely not a png")
    with pytest.raises(CorruptFileError, match=r"s2\.png"):
        open_layer(folder)


def test_truncated_slice_fails_on_read(tmp_path: Path) -> None:
    folder = tmp_path / "cut"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(_noise((32, 32))).save(folder / f"s{i}.png")
    data = (folder / "s1.png").read_bytes()
    (folder / "s1.png").write_bytes(data[: len(data) // 2])
    layer = open_layer(folder)  # headers are intact
    with pytest.raises(CorruptFileError, match=r"s1\.png.*truncated or damaged"):
        layer.read()


def test_slice_that_is_a_stack(tmp_path: Path) -> None:
    folder = tmp_path / "stacks"
    folder.mkdir()
    tifffile.imwrite(folder / "a.tif", _noise((3, 8, 8)), photometric="minisblack")
    with pytest.raises(InvalidVolumeError, match="not a 2D image"):
        open_layer(folder)


# --- dimensionality and content -------------------------------------------------------------------
def test_2d_image_where_volume_is_needed(tmp_path: Path) -> None:
    path = tmp_path / "section.tif"
    tifffile.imwrite(path, _noise((32, 32)))
    layer = open_layer(path)
    assert layer.axes == "yx"
    with pytest.raises(InvalidVolumeError, match="2D image") as info:
        require_volume(layer)
    assert "3D volume" in str(info.value)


def test_few_sections_saved_by_tifffile_as_samples_get_the_fix(tmp_path: Path) -> None:
    # tifffile.imwrite stores a (3, Y, X) array as one RGB image by default (deprecated).
    path = tmp_path / "three_sections.tif"
    tifffile.imwrite(path, _noise((3, 32, 32)), photometric="rgb", planarconfig="separate")
    with pytest.raises(InvalidVolumeError, match="2D image") as info:
        require_volume(open_layer(path))
    assert "3 planes as samples" in str(info.value)
    assert "photometric='minisblack', metadata={'axes': 'ZYX'}" in str(info.value)
    fixed = tmp_path / "fixed.tif"
    tifffile.imwrite(fixed, _noise((3, 32, 32)), photometric="minisblack", metadata={"axes": "ZYX"})
    assert require_volume(open_layer(fixed)).axes == "zyx"  # the fix works


def test_channels_where_single_channel_is_needed(tmp_path: Path) -> None:
    path = tmp_path / "two_channels.tif"
    tifffile.imwrite(path, _noise((3, 2, 8, 8)), imagej=True, metadata={"axes": "ZCYX"})
    with pytest.raises(InvalidVolumeError, match="channel"):
        require_volume(open_layer(path))


def test_time_series_with_z_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "movie.tif"
    tifffile.imwrite(path, _noise((2, 3, 8, 8)), imagej=True, metadata={"axes": "TZYX"})
    with pytest.raises(
        InvalidVolumeError, match=r"cannot use axis 'T' of size 2.*single time point"
    ):
        open_layer(path)


def test_all_nan_volume(tmp_path: Path) -> None:
    layer = Layer(np.full((4, 8, 8), np.nan, np.float32), voxel_size=VoxelSize(1, 1, 1))
    with pytest.raises(InvalidVolumeError, match="NaN"):
        require_nonempty(layer.read(), name="raw")
    path = tmp_path / "nan.tif"
    tifffile.imwrite(path, layer.read(), photometric="minisblack")
    with pytest.raises(InvalidVolumeError, match="only NaN"):
        require_finite(open_layer(path))


def test_missing_level(tmp_path: Path) -> None:
    path = tmp_path / "one_level.tif"
    tifffile.imwrite(path, _noise((4, 8, 8)), photometric="minisblack")
    with pytest.raises(LayerNotFoundError, match="level 2 does not exist"):
        open_layer(path, level=2)


# --- voxel sizes ----------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["a,b,c", "0,1,1", "-1", "1,2", "50,4.6,nan"])
def test_malformed_voxel_size(tmp_path: Path, text: str) -> None:
    path = tmp_path / "vol.tif"
    tifffile.imwrite(path, _noise((4, 8, 8)), photometric="minisblack")
    with pytest.raises(VoxelSizeError, match="voxel size") as info:
        open_layer(path, voxel_size=text)
    assert isinstance(info.value, ValueError)


def test_unknown_voxel_size_is_required(tmp_path: Path) -> None:
    path = tmp_path / "vol.tif"
    tifffile.imwrite(path, _noise((4, 8, 8)), photometric="minisblack")
    layer = open_layer(path)
    assert layer.metadata["voxel_size_from"] == "unknown"
    with pytest.raises(VoxelSizeError, match="--voxel-size"):
        require_voxel_size(layer)
    assert require_voxel_size(open_layer(path, voxel_size="10")) is not None


def test_bad_voxel_size_in_file_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "bad_unit.tif"
    tifffile.imwrite(
        path,
        _noise((4, 8, 8)),
        imagej=True,
        resolution=(1.0, 1.0),
        metadata={"axes": "ZYX", "unit": "furlong", "spacing": 2.0},
    )
    layer = open_layer(path)
    assert layer.metadata["voxel_size_from"] == "unknown"


# --- writing --------------------------------------------------------------------------------------
def test_write_refuses_existing_output(tmp_path: Path) -> None:
    path = tmp_path / "out.tif"
    path.write_bytes(b"keep me")
    with pytest.raises(OutputExistsError, match="overwrite"):
        write_tiff(path, _noise((2, 4, 4)), voxel_size="10")
    assert path.read_bytes() == b"keep me"


def test_write_needs_voxel_size_for_arrays(tmp_path: Path) -> None:
    with pytest.raises(VoxelSizeError, match="voxel_size="):
        write_tiff(tmp_path / "out.tif", _noise((2, 4, 4)))


def test_write_imagej_refuses_uint32(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="OME-TIFF"):
        write_tiff(tmp_path / "out.tif", _noise((2, 4, 4), np.uint32), voxel_size="10", ome=False)


def test_write_unknown_compression(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="compression"):
        write_tiff(tmp_path / "out.tif", _noise((2, 4, 4)), voxel_size="10", compression="rar")


def test_write_5d_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidVolumeError, match="2D"):
        write_tiff(tmp_path / "out.tif", np.zeros((1, 2, 2, 2, 2), np.uint8), voxel_size="1")


def test_every_error_is_a_vemkit_error() -> None:
    for error in (
        ConfigError,
        CorruptFileError,
        InvalidVolumeError,
        LayerNotFoundError,
        UnknownFormatError,
        VolumeNotFoundError,
        VoxelSizeError,
    ):
        assert issubclass(error, VemkitError)
