"""A folder of 2D slices (PNG, TIFF, JPEG) read lazily as one z stack.

Slices are ordered by natural sort of their file names (``z2.png`` before ``z10.png``).
Hidden files (names starting with ``.``) and files that are not PNG, TIFF or JPEG are
ignored. At open time only each slice's header is read, to check that all slices share one
shape and dtype (an :class:`~vemkit.errors.InvalidVolumeError` names the first slice that
differs); pixel data is decoded only when a read needs it, one Dask task per slice.

PNG and JPEG are decoded with ``imagecodecs`` (no pixel-count limit, unlike Pillow's
decompression-bomb guard, which large EM sections would trip); palette PNGs are decoded
with Pillow and give the palette indices (as label images expect). Slices with colour
samples (RGB) give axes ``"czyx"``.

The voxel size is not read from slices (a folder of images carries no z spacing): it is
``VoxelSize(1, 1, 1)`` with ``metadata["voxel_size_from"] = "unknown"``; pass
``voxel_size=``.
"""

from __future__ import annotations

import io
import logging
import os
import struct
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import dask.array as da
import imagecodecs
import numpy as np
import tifffile
from dask.base import tokenize
from natsort import natsorted, ns
from numpy.typing import NDArray
from PIL import Image

from vemkit.errors import (
    CorruptFileError,
    InvalidVolumeError,
    LayerNotFoundError,
    UnknownFormatError,
    VemkitError,
    VolumeNotFoundError,
)
from vemkit.geometry import VoxelSize
from vemkit.io.layer import Layer
from vemkit.io.registry import Location, Reader, parse_location, register_reader

__all__ = [
    "SLICE_SUFFIXES",
    "SliceInfo",
    "check_same_info",
    "check_slice",
    "decode_slice",
    "is_slice_folder",
    "is_slice_name",
    "layer_from_stack",
    "list_slice_files",
    "open_slices",
    "probe_slice",
    "stack_slices",
]

logger = logging.getLogger(__name__)

#: File name endings taken as 2D slices.
SLICE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")

# Folders that are containers of other formats, never slice folders.
_CONTAINER_SUFFIXES = (".zarr", ".n5", ".ome.zarr")
_CONTAINER_MARKERS = ("zarr.json", ".zarray", ".zgroup", ".zattrs", "attributes.json")

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_PNG_SAMPLES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> samples (palette: indices)

#: (shape, dtype) of one decoded slice: shape is (y, x) or (y, x, samples).
SliceInfo = tuple[tuple[int, ...], np.dtype]


def is_slice_name(name: str) -> bool:
    """Whether a file name looks like a 2D slice (not hidden, PNG/TIFF/JPEG ending)."""
    base = name.rsplit("/", 1)[-1]
    return bool(base) and not base.startswith(".") and base.lower().endswith(SLICE_SUFFIXES)


def is_slice_folder(location: Location) -> bool:
    """Whether ``location`` is a plain folder (not a Zarr/N5 container)."""
    path = location.path
    if location.inner or not path.is_dir():
        return False
    if path.name.lower().endswith(_CONTAINER_SUFFIXES):
        return False
    return not any((path / marker).exists() for marker in _CONTAINER_MARKERS)


def list_slice_files(folder: Path) -> list[Path]:
    """List the slice files of ``folder`` in natural sort order (hidden files ignored)."""
    names = [
        entry.name for entry in os.scandir(folder) if entry.is_file() and is_slice_name(entry.name)
    ]
    return [folder / name for name in natsorted(names, alg=ns.IGNORECASE)]


# --- headers --------------------------------------------------------------------------------
def _png_info(head: bytes, name: str) -> SliceInfo:
    if len(head) < 26 or head[12:16] != b"IHDR":
        raise CorruptFileError(f"slice {name!r} is a damaged PNG (no IHDR header)")
    width, height = struct.unpack(">II", head[16:24])
    depth, colour = head[24], head[25]
    samples = _PNG_SAMPLES.get(colour)
    if samples is None:
        raise CorruptFileError(f"slice {name!r} is a damaged PNG (colour type {colour})")
    dtype = np.dtype(np.uint16 if depth == 16 else np.uint8)
    shape = (height, width) if samples == 1 else (height, width, samples)
    return shape, dtype


def _jpeg_info(stream: IO[bytes], name: str) -> SliceInfo:
    stream.read(2)  # SOI
    while True:
        marker = stream.read(2)
        if len(marker) < 2 or marker[0] != 0xFF:
            raise CorruptFileError(f"slice {name!r} is a damaged JPEG (no frame header)")
        code = marker[1]
        if code == 0xFF:  # fill byte
            stream.seek(-1, io.SEEK_CUR)
            continue
        if code in (0xD8, 0x01) or 0xD0 <= code <= 0xD7:
            continue
        length_bytes = stream.read(2)
        if len(length_bytes) < 2:
            raise CorruptFileError(f"slice {name!r} is a damaged JPEG (truncated header)")
        length = struct.unpack(">H", length_bytes)[0]
        if 0xC0 <= code <= 0xCF and code not in (0xC4, 0xC8, 0xCC):
            frame = stream.read(6)
            if len(frame) < 6:
                raise CorruptFileError(f"slice {name!r} is a damaged JPEG (truncated header)")
            precision, height, width, samples = struct.unpack(">BHHB", frame)
            dtype = np.dtype(np.uint8 if precision <= 8 else np.uint16)
            shape = (height, width) if samples == 1 else (height, width, samples)
            return shape, dtype
        stream.seek(length - 2, io.SEEK_CUR)


def _tiff_info(stream: IO[bytes], name: str) -> SliceInfo:
    try:
        with tifffile.TiffFile(stream) as tif:
            series = tif.series[0]
            return _tiff_slice_shape(str(series.axes), tuple(series.shape), name), np.dtype(
                series.dtype
            ).newbyteorder("=")
    except VemkitError:
        raise
    except Exception as exc:
        raise CorruptFileError(f"cannot read slice {name!r} as TIFF: {exc}") from exc


def _tiff_slice_shape(axes: str, shape: tuple[int, ...], name: str) -> tuple[int, ...]:
    sizes = dict(zip(axes, shape, strict=True))
    extra = {a: s for a, s in sizes.items() if a not in "YXSC" and s > 1}
    if extra or "Y" not in sizes or "X" not in sizes:
        raise InvalidVolumeError(
            f"slice {name!r} is not a 2D image (axes {axes!r}, shape {shape}); a folder or "
            "zip of slices must hold one 2D image per file (to open a stack file, give its "
            "path instead of the folder)"
        )
    samples = sizes.get("S", sizes.get("C", 1))
    base = (sizes["Y"], sizes["X"])
    return base if samples == 1 else (*base, samples)


def probe_slice(stream: IO[bytes], name: str) -> SliceInfo:
    """Read the header of one slice and return its (shape, dtype) without decoding pixels.

    Parameters
    ----------
    stream : binary file object
        Seekable, positioned at the start of the image.
    name : str
        File or member name, used in error messages.

    Raises
    ------
    CorruptFileError
        The file is not a readable PNG, TIFF or JPEG.
    InvalidVolumeError
        The image is not 2D.
    """
    head = stream.read(32)
    stream.seek(0)
    if head.startswith(_PNG_MAGIC):
        return _png_info(head, name)
    if head.startswith(_JPEG_MAGIC):
        return _jpeg_info(stream, name)
    if head[:4] in _TIFF_MAGICS:
        return _tiff_info(stream, name)
    raise CorruptFileError(
        f"slice {name!r} is not a PNG, TIFF or JPEG image (or is empty/damaged); remove it "
        "from the folder or replace it with a valid slice"
    )


def decode_slice(data: bytes, name: str) -> NDArray[Any]:
    """Decode one PNG, TIFF or JPEG slice to a (y, x) or (y, x, samples) array.

    Raises
    ------
    CorruptFileError
        The image cannot be decoded (truncated, damaged, unsupported encoding).
    """
    try:
        if data.startswith(_PNG_MAGIC):
            if len(data) > 25 and data[25] == 3:  # palette: keep the indices
                with Image.open(io.BytesIO(data)) as image:
                    return np.asarray(image)
            return np.asarray(imagecodecs.png_decode(data))
        if data.startswith(_JPEG_MAGIC):
            return np.asarray(imagecodecs.jpeg8_decode(data))
        if data[:4] in _TIFF_MAGICS:
            with tifffile.TiffFile(io.BytesIO(data)) as tif:
                series = tif.series[0]
                values = series.asarray()
                if str(series.axes)[:1] in "SC" and values.ndim == 3:
                    values = np.moveaxis(values, 0, -1)
                return values
    except MemoryError:
        raise
    except Exception as exc:
        raise CorruptFileError(
            f"cannot decode slice {name!r}: {exc}. The file may be truncated or damaged; "
            "replace it with a valid slice"
        ) from exc
    raise CorruptFileError(f"slice {name!r} is not a PNG, TIFF or JPEG image")


def check_slice(values: NDArray[Any], info: SliceInfo, name: str) -> NDArray[Any]:
    """Require a decoded slice to match the stack's (shape, dtype); return it native-endian."""
    shape, dtype = info
    if values.dtype != dtype and values.dtype.newbyteorder("=") == dtype:
        values = values.astype(dtype)
    if values.shape != shape or values.dtype != dtype:
        raise InvalidVolumeError(
            f"slice {name!r} decodes to shape {values.shape} and dtype {values.dtype}, but the "
            f"stack's slices are {shape} {dtype}; all slices must share shape and dtype"
        )
    return values


def check_same_info(infos: Sequence[SliceInfo], names: Sequence[str], where: str) -> SliceInfo:
    """Require one shape and dtype for all slices; name the first slice that differs."""
    first = infos[0]
    for info, name in zip(infos, names, strict=True):
        if info != first:
            raise InvalidVolumeError(
                f"slice {name!r} in {where!r} has shape {info[0]} and dtype {info[1]}, but "
                f"{names[0]!r} has shape {first[0]} and dtype {first[1]}; all slices must "
                "share one shape and dtype. Remove or convert the odd slice"
            )
    return first


def _read_block(*, read: Callable[[int], NDArray[Any]], block_id: tuple[int, ...]) -> Any:
    values = read(block_id[0])
    block = values[np.newaxis]
    return block


def stack_slices(
    read: Callable[[int], NDArray[Any]], *, count: int, info: SliceInfo, token: str
) -> Any:
    """Build a lazy (z, y, x[, samples]) Dask array with one read task per slice.

    Parameters
    ----------
    read : callable
        ``read(i)`` returns slice ``i`` as an array of ``info``'s shape and dtype. It should
        be picklable to run on worker processes.
    count : int
        Number of slices.
    info : (shape, dtype)
        Shape and dtype of every slice.
    token : str
        Unique, deterministic name of the stack (Dask key prefix).
    """
    shape, dtype = info
    chunks = ((1,) * count, *((s,) for s in shape))
    return da.map_blocks(
        _read_block,
        read=read,
        chunks=chunks,
        dtype=dtype,
        meta=np.empty((0,) * (len(shape) + 1), dtype=dtype),
        name=f"read-slices-{token}",
    )


def layer_from_stack(
    stack: Any, *, name: str, metadata: dict[str, Any], has_samples: bool
) -> Layer:
    """Wrap a stacked (z, y, x[, samples]) Dask array as a Layer (samples become ``c``)."""
    if has_samples:
        stack = stack.transpose(3, 0, 1, 2)
    return Layer(
        stack,
        voxel_size=VoxelSize(1.0, 1.0, 1.0),
        axes="czyx" if has_samples else "zyx",
        name=name,
        metadata=metadata,
        read_only=True,
    )


class _FolderSlices:
    """Picklable reader of slice ``i`` of a folder."""

    def __init__(self, paths: Sequence[Path], info: SliceInfo) -> None:
        self.paths = [str(p) for p in paths]
        self.info = info

    def __call__(self, index: int) -> NDArray[Any]:
        path = self.paths[index]
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise CorruptFileError(f"cannot read slice {path!r}: {exc}") from exc
        return check_slice(decode_slice(data, path), self.info, path)


def open_slices(location: Location | str | os.PathLike[str], level: int = 0) -> Layer:
    """Open a folder of 2D slices read-only as a lazy (z, y, x) :class:`Layer`.

    Parameters
    ----------
    location : Location, str or path
        The folder.
    level : int
        Must be 0 (slices have a single resolution).

    Raises
    ------
    VolumeNotFoundError
        The folder does not exist.
    UnknownFormatError
        The folder holds no PNG, TIFF or JPEG slice.
    InvalidVolumeError
        Slices differ in shape or dtype, or a slice is not 2D.
    CorruptFileError
        A slice cannot be read.
    """
    loc = location if isinstance(location, Location) else parse_location(location)
    folder = loc.path
    if not folder.is_dir():
        raise VolumeNotFoundError(f"no such folder: {str(folder)!r}")
    if level != 0:
        raise LayerNotFoundError(
            f"{str(folder)!r} is a folder of slices with one resolution level; level {level} "
            "does not exist (use 0)"
        )
    paths = list_slice_files(folder)
    if not paths:
        raise UnknownFormatError(
            f"folder {str(folder)!r} contains no PNG, TIFF or JPEG slices (hidden files are "
            "ignored); point to a folder of 2D images, a volume file or an OME-Zarr dataset"
        )
    infos = []
    for path in paths:
        try:
            with path.open("rb") as stream:
                infos.append(probe_slice(stream, str(path)))
        except OSError as exc:
            if isinstance(exc, VemkitError):
                raise
            raise CorruptFileError(f"cannot read slice {str(path)!r}: {exc}") from exc
    info = check_same_info(infos, [str(p) for p in paths], str(folder))
    stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in paths]
    token = tokenize(str(folder.absolute()), stats)
    stack = stack_slices(_FolderSlices(paths, info), count=len(paths), info=info, token=token)
    logger.debug("%s: %d slices of %s %s", folder, len(paths), info[0], info[1])
    return layer_from_stack(
        stack,
        name=folder.name or "raw",
        metadata={
            "format": "slices",
            "slice_count": len(paths),
            "first_slice": paths[0].name,
            "last_slice": paths[-1].name,
        },
        has_samples=len(info[0]) == 3,
    )


READER = register_reader(Reader(name="slices", matches=is_slice_folder, open=open_slices))
