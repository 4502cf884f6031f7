"""TIFF, BigTIFF, OME-TIFF and ImageJ TIFF stacks, read lazily with tifffile.

Data access
-----------
The :class:`Layer` holds a :class:`TiffArray`: uncompressed contiguous files are memory
mapped; compressed or tiled files (zlib, LZW, zstd, ...) are read page by page through
``tifffile``'s Zarr store, so only the pages a read touches are decoded. The file is never
opened for writing. A :class:`TiffArray` can be pickled (it reopens the file on the other
side), so layers can be sent to Dask worker processes.

Axes
----
tifffile's series axes are mapped to vemkit's: ``Z``, ``I`` (image sequence) and ``Q``
(unknown, e.g. a plain multi-page file) become ``z``; ``C`` and ``S`` (RGB samples) become
``c``, moved first; singleton axes other than ``y`` and ``x`` are dropped, so one 2D page
gives ``"yx"`` and an ImageJ or OME hyperstack with channels gives ``"czyx"``. A ``T`` axis
with more than one frame is read as ``z`` when the file has no ``Z`` axis (ImageJ stacks
saved as frames; their z spacing is then unknown) and refused otherwise.

Voxel size (converted to nm)
----------------------------
1. OME-TIFF: ``PhysicalSizeZ/Y/X`` with ``PhysicalSize*Unit`` (default µm, as in the OME
   schema).
2. ImageJ TIFF: ``XResolution``/``YResolution`` are pixels per ``unit`` (from the ImageJ
   description, ``micron``, ``µm``, ``nm``...), z is ``spacing`` (ImageJ's default of
   1 unit when absent).
3. Any other TIFF: ``XResolution``/``YResolution`` with ``ResolutionUnit`` centimetre,
   millimetre, micrometre or inch (screen defaults of 72/96/150/300/600 dpi are ignored).
   Such files carry no z spacing, so for a 3D stack the voxel size stays unknown (the y/x
   pixel size is recorded in ``metadata["pixel_size_yx_nm"]``).

For a 2D image the z entry of ``voxel_size`` repeats the y size. When nothing usable is
found ``voxel_size`` is ``VoxelSize(1, 1, 1)`` and ``metadata["voxel_size_from"]`` is
``"unknown"``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import weakref
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import zarr
from numpy.typing import NDArray

from vemkit.errors import (
    CorruptFileError,
    InvalidVolumeError,
    LayerNotFoundError,
    VemkitError,
    VolumeNotFoundError,
    VoxelSizeError,
)
from vemkit.geometry import VoxelSize
from vemkit.io.layer import Layer
from vemkit.io.registry import Location, Reader, parse_location, register_reader

__all__ = ["TIFF_SUFFIXES", "TiffArray", "is_tiff_location", "open_tiff"]

logger = logging.getLogger(__name__)

#: File name endings read as TIFF (``.ome.tif`` ends with ``.tif``).
TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8", ".tf2")

_Z_LIKE = "ZIQ"
_C_LIKE = "CS"
# ResolutionUnit values that give a physical pixel size, in nm per unit.
_RESUNIT_NM = {2: 2.54e7, 3: 1.0e7, 4: 1.0e6, 5: 1.0e3}  # inch, cm, mm, µm
_SCREEN_DPI = (72.0, 96.0, 150.0, 300.0, 600.0)


def is_tiff_location(location: Location) -> bool:
    """Whether ``location`` is a TIFF file (by its name ending)."""
    return (
        not location.inner
        and location.path.name.lower().endswith(TIFF_SUFFIXES)
        and location.path.is_file()
    )


@dataclass(frozen=True)
class _TiffSource:
    """Everything needed to (re)open one series level of a TIFF file."""

    path: str
    series: int
    level: int
    generic_pages: bool  # reopen with is_shaped=False (a shaped file of many 2D series)
    memmap_offset: int | None  # byte offset of contiguous uncompressed data, else None
    file_shape: tuple[int, ...]  # shape of the series as tifffile gives it (squeezed)
    file_dtype: np.dtype


class TiffArray:
    """Read-only, lazy array view of one TIFF series with vemkit's axis order.

    Only basic indexing (integers, slices, ``...``) is supported; every read returns a
    NumPy array in native byte order.

    Parameters
    ----------
    source : _TiffSource
        Where the data lies in the file.
    axes_map : tuple of int or None
        For each axis of the file's series, the axis of this view it becomes, or None when
        it is a singleton axis that is dropped.
    shape : tuple of int
        Shape in this view's axis order.
    tif : tifffile.TiffFile, optional
        An already opened file to reuse (closed when this array is garbage collected).
    """

    def __init__(
        self,
        source: _TiffSource,
        *,
        axes_map: tuple[int | None, ...],
        shape: tuple[int, ...],
        tif: tifffile.TiffFile | None = None,
    ) -> None:
        self._source = source
        self._axes_map = axes_map
        self.shape = shape
        self.dtype = source.file_dtype.newbyteorder("=")
        self._lock = threading.Lock()
        self._array: Any = None
        self._tif: tifffile.TiffFile | None = None
        if tif is not None:
            self._attach(tif)

    # --- opening ------------------------------------------------------------------------
    def _attach(self, tif: tifffile.TiffFile) -> None:
        self._tif = tif
        weakref.finalize(self, tif.close)

    def _open(self) -> Any:
        with self._lock:
            if self._array is not None:
                return self._array
            src = self._source
            if src.memmap_offset is not None:
                self._array = np.memmap(
                    src.path,
                    dtype=src.file_dtype,
                    mode="r",
                    offset=src.memmap_offset,
                    shape=src.file_shape,
                )
                return self._array
            if self._tif is None:
                self._attach(_open_tiff_file(Path(src.path), generic_pages=src.generic_pages))
            assert self._tif is not None
            store = self._tif.aszarr(series=src.series, level=src.level)
            self._array = zarr.open_array(store, mode="r")
            return self._array

    def close(self) -> None:
        """Close the file handle (a later read reopens it)."""
        with self._lock:
            self._array = None
            if self._tif is not None:
                self._tif.close()
                self._tif = None

    def __dask_tokenize__(self) -> tuple[Any, ...]:
        stat = os.stat(self._source.path)
        return ("TiffArray", self._source, stat.st_size, stat.st_mtime_ns, self._axes_map)

    def __getstate__(self) -> dict[str, Any]:
        return {
            "source": self._source,
            "axes_map": self._axes_map,
            "shape": self.shape,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(  # type: ignore[misc]
            state["source"],
            axes_map=state["axes_map"],
            shape=state["shape"],
        )

    # --- array protocol -----------------------------------------------------------------
    @property
    def chunks(self) -> tuple[int, ...] | None:
        """Storage chunk shape in this view's axis order (None for memory-mapped data)."""
        if self._source.memmap_offset is not None:
            return None
        file_chunks = self._open().chunks
        chunks = list(self.shape)
        for target, size in zip(self._axes_map, file_chunks, strict=True):
            if target is not None:
                chunks[target] = int(size)
        return tuple(chunks)

    @property
    def ndim(self) -> int:
        """Number of axes."""
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> NDArray[Any]:
        full = _normalize_key(key, self.ndim)
        file_key: list[int | slice] = []
        kept: list[int] = []  # view axis of each file axis that survives the read
        for target in self._axes_map:
            if target is None:
                file_key.append(0)
                continue
            part = full[target]
            file_key.append(part)
            if isinstance(part, slice):
                kept.append(target)
        try:
            values = np.asarray(self._open()[tuple(file_key)])
        except (VemkitError, MemoryError):
            raise
        except Exception as exc:
            raise CorruptFileError(
                f"cannot read TIFF {self._source.path!r}: {exc}. The file may be truncated "
                "or damaged; export it again from the acquisition software or Fiji"
            ) from exc
        order = sorted(range(len(kept)), key=kept.__getitem__)
        if order != list(range(len(kept))):
            values = values.transpose(order)
        if not values.dtype.isnative:
            values = values.astype(values.dtype.newbyteorder("="))
        return values

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> NDArray[Any]:
        values = self[...]
        return values if dtype is None else values.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"TiffArray({self._source.path!r}, shape={self.shape}, dtype={self.dtype})"


def _normalize_key(key: Any, ndim: int) -> tuple[int | slice, ...]:
    """Expand ``key`` to one int or slice per axis; refuse fancy indexing."""
    parts = key if isinstance(key, tuple) else (key,)
    if any(p is Ellipsis for p in parts):
        at = next(i for i, p in enumerate(parts) if p is Ellipsis)
        fill = (slice(None),) * (ndim - len(parts) + 1)
        parts = parts[:at] + fill + parts[at + 1 :]
    if len(parts) > ndim:
        raise IndexError(f"too many indices ({len(parts)}) for an array with {ndim} axes")
    parts = parts + (slice(None),) * (ndim - len(parts))
    result: list[int | slice] = []
    for part in parts:
        if isinstance(part, slice):
            result.append(part)
        elif isinstance(part, int | np.integer) and not isinstance(part, bool):
            result.append(int(part))
        else:
            raise TypeError(
                f"TIFF arrays support only integer and slice indexing, got {type(part).__name__}"
            )
    return tuple(result)


# --- opening ------------------------------------------------------------------------------
# tifffile logs (rather than raises) when a page chain is cut off and then silently falls
# back to fewer pages; these messages mean the file is damaged or truncated.
_DAMAGE_MESSAGES = (
    "invalid page offset",
    "invalid offset to page",
    "corrupted tag list",
    "failed to reshape",
)


class _DamageLog(logging.Handler):
    """Collect tifffile's damage reports logged by the current thread."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.thread == self.thread and any(m in message for m in _DAMAGE_MESSAGES):
            self.messages.append(message)


@contextlib.contextmanager
def _refuse_damage(path: Path) -> Iterator[None]:
    """Turn tifffile's logged damage reports during the block into a CorruptFileError."""
    handler = _DamageLog()
    tifffile_logger = logging.getLogger("tifffile")
    tifffile_logger.addHandler(handler)
    try:
        yield
    finally:
        tifffile_logger.removeHandler(handler)
    if handler.messages:
        raise CorruptFileError(
            f"TIFF {str(path)!r} is damaged or truncated ({handler.messages[0]}); copy or "
            "export the file again"
        )


def _open_tiff_file(path: Path, *, generic_pages: bool = False) -> tifffile.TiffFile:
    try:
        if generic_pages:
            return tifffile.TiffFile(path, is_shaped=False)
        return tifffile.TiffFile(path)
    except (tifffile.TiffFileError, ValueError, OSError, EOFError, KeyError) as exc:
        raise CorruptFileError(
            f"cannot read {str(path)!r} as TIFF: {exc}. The file may be truncated or not a "
            "TIFF; check that the copy is complete"
        ) from exc


def _choose_series(tif: tifffile.TiffFile, path: Path) -> tuple[tifffile.TiffFile, bool]:
    """Return the file to use and whether it was reopened as a generic page sequence.

    A file written page by page with tifffile's default "shaped" metadata holds one 2D
    series per page; read such a file as one stack of pages instead.
    """
    series = tif.series
    if not series:
        tif.close()
        raise CorruptFileError(f"TIFF {str(path)!r} contains no image data")
    first = series[0]
    if (
        len(series) > 1
        and tif.is_shaped
        and not (tif.is_ome or tif.is_imagej)
        and all(s.shape == first.shape and s.dtype == first.dtype for s in series)
        and len(first.shape) == 2
    ):
        tif.close()
        return _open_tiff_file(path, generic_pages=True), True
    if len(series) > 1:
        logger.info("%s holds %d image series; reading the first", path, len(series))
    return tif, False


def _map_axes(
    file_axes: str, file_shape: tuple[int, ...], path: Path
) -> tuple[str, tuple[int | None, ...], tuple[int, ...]]:
    """Map tifffile series axes to vemkit axes; return (axes, axes_map, shape)."""
    kept: list[tuple[str, int, int]] = []  # (vemkit axis, file axis index, size)
    has_z = any(a in _Z_LIKE and s > 1 for a, s in zip(file_axes, file_shape, strict=True))
    for index, (axis, size) in enumerate(zip(file_axes, file_shape, strict=True)):
        if axis in "YX":
            kept.append((axis.lower(), index, size))
        elif size == 1:
            continue
        elif axis in _Z_LIKE or (axis == "T" and not has_z):
            if axis == "T":
                logger.info("%s: reading its %d time frames as z slices", path, size)
            kept.append(("z", index, size))
        elif axis in _C_LIKE:
            kept.append(("c", index, size))
        else:
            raise InvalidVolumeError(
                f"TIFF {str(path)!r} has axes {file_axes!r} with shape {file_shape}; vemkit "
                f"reads z, y, x volumes (optionally with channels) and cannot use axis "
                f"{axis!r} of size {size}. Export a single time point / position as a z stack"
            )
    letters = [k[0] for k in kept]
    for letter in "zc":
        if letters.count(letter) > 1:
            raise InvalidVolumeError(
                f"TIFF {str(path)!r} has axes {file_axes!r} with shape {file_shape}: several "
                f"axes would become {letter!r}. Export one z stack (per channel) instead"
            )
    rank = {"c": 0, "z": 1, "y": 2, "x": 3}
    kept.sort(key=lambda k: rank[k[0]])
    axes = "".join(k[0] for k in kept)
    axes_map: list[int | None] = [None] * len(file_axes)
    for target, (_, index, _) in enumerate(kept):
        axes_map[index] = target
    return axes, tuple(axes_map), tuple(k[2] for k in kept)


def _check_complete(series: Any, path: Path) -> None:
    """Refuse a file whose image data ends after the end of the file (a cut-off copy)."""
    size = os.path.getsize(path)
    end = 0
    if series.dataoffset is not None:
        end = int(series.dataoffset) + int(series.nbytes)
        if series.keyframe.compression != 1:
            end = 0  # compressed contiguous data: check the last page below
    if end == 0:
        pages = series.pages
        last = pages[len(pages) - 1] if len(pages) else None
        if last is not None:
            offsets = getattr(last, "dataoffsets", ())
            counts = getattr(last, "databytecounts", ())
            end = max((int(o) + int(c) for o, c in zip(offsets, counts, strict=False)), default=0)
    if end > size:
        raise CorruptFileError(
            f"TIFF {str(path)!r} is truncated: its image data needs {end} bytes but the file "
            f"has {size}. Copy or export the file again"
        )


# --- voxel size -----------------------------------------------------------------------------
def _voxel(z_nm: float, y_nm: float, x_nm: float, path: Path) -> VoxelSize | None:
    try:
        return VoxelSize(z_nm, y_nm, x_nm)
    except VoxelSizeError as exc:
        logger.warning("%s: ignoring the voxel size stored in the file (%s)", path, exc)
        return None


def _unit_nm(unit: str, path: Path) -> float | None:
    text = unit.replace("\\u00B5", "µ").replace("\\u00b5", "µ").strip()
    if not text or text.lower() in ("pixel", "pixels", "px"):
        return None
    try:
        return VoxelSize.unit_to_nm(text)
    except VoxelSizeError:
        logger.warning("%s: unknown length unit %r; voxel size left unknown", path, unit)
        return None


def _ome_sizes(tif: tifffile.TiffFile, series_index: int, path: Path) -> dict[str, float]:
    """Physical sizes in nm per axis letter (x, y, z) from the OME-XML, where given."""
    try:
        root = ET.fromstring(tif.ome_metadata or "")
    except ET.ParseError as exc:
        logger.warning("%s: cannot parse its OME-XML (%s); voxel size unknown", path, exc)
        return {}
    images = [el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Image"]
    if not images:
        return {}
    image = images[series_index] if series_index < len(images) else images[0]
    pixels = next((el for el in image if el.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None:
        return {}
    sizes: dict[str, float] = {}
    for axis in "xyz":
        value = pixels.get(f"PhysicalSize{axis.upper()}")
        if value is None:
            continue
        factor = _unit_nm(pixels.get(f"PhysicalSize{axis.upper()}Unit", "µm"), path)
        try:
            number = float(value)
        except ValueError:
            continue
        if factor is not None:
            sizes[axis] = number * factor
    return sizes


def _imagej_sizes(tif: tifffile.TiffFile, page: Any, path: Path) -> dict[str, float]:
    meta = tif.imagej_metadata or {}
    unit = meta.get("unit")
    if not isinstance(unit, str):
        return {}
    factor = _unit_nm(unit, path)
    if factor is None:
        return {}
    sizes: dict[str, float] = {}
    xres, yres = page.resolution
    yfactor = _unit_nm(str(meta.get("yunit", unit)), path) or factor
    zfactor = _unit_nm(str(meta.get("zunit", unit)), path) or factor
    if xres > 0 and yres > 0:
        sizes["x"] = factor / float(xres)
        sizes["y"] = yfactor / float(yres)
    spacing = meta.get("spacing", 1.0)  # ImageJ's pixelDepth defaults to 1 unit
    with contextlib.suppress(TypeError, ValueError):
        sizes["z"] = float(spacing) * zfactor
    return sizes


def _resolution_sizes(page: Any) -> dict[str, float]:
    unit = int(page.resolutionunit)
    if unit not in _RESUNIT_NM:
        return {}
    xres, yres = (float(r) for r in page.resolution)
    if xres <= 0 or yres <= 0:
        return {}
    if unit == 2 and xres == yres and xres in _SCREEN_DPI:
        return {}
    return {"x": _RESUNIT_NM[unit] / xres, "y": _RESUNIT_NM[unit] / yres}


def _file_voxel_size(
    tif: tifffile.TiffFile, series_index: int, axes: str, path: Path, *, z_is_time: bool
) -> tuple[VoxelSize | None, dict[str, Any]]:
    page = tif.series[series_index].keyframe
    if tif.is_ome:
        sizes = _ome_sizes(tif, series_index, path)
    elif tif.is_imagej:
        sizes = _imagej_sizes(tif, page, path)
    else:
        sizes = _resolution_sizes(page)
    if z_is_time:  # frames read as z slices: the file knows no z spacing
        sizes.pop("z", None)
    extra: dict[str, Any] = {}
    if "x" not in sizes or "y" not in sizes:
        return None, extra
    if "z" not in axes:
        return _voxel(sizes["y"], sizes["y"], sizes["x"], path), extra
    if "z" not in sizes:
        extra["pixel_size_yx_nm"] = (sizes["y"], sizes["x"])
        logger.info("%s gives a y/x pixel size but no z spacing; voxel size unknown", path)
        return None, extra
    return _voxel(sizes["z"], sizes["y"], sizes["x"], path), extra


def _format_name(tif: tifffile.TiffFile) -> str:
    if tif.is_ome:
        return "ome-tiff"
    if tif.is_imagej:
        return "imagej-tiff"
    return "tiff"


# --- reader ---------------------------------------------------------------------------------
def open_tiff(location: Location | str | os.PathLike[str], level: int = 0) -> Layer:
    """Open a TIFF, BigTIFF, OME-TIFF or ImageJ TIFF read-only as a lazy :class:`Layer`.

    Parameters
    ----------
    location : Location, str or path
        The TIFF file.
    level : int
        Pyramid level of a pyramidal (OME) TIFF; 0 is full resolution.

    Returns
    -------
    Layer
        Axes ``"zyx"``, ``"czyx"`` or ``"yx"``; ``metadata["format"]`` is ``"tiff"``,
        ``"ome-tiff"`` or ``"imagej-tiff"``.

    Raises
    ------
    VolumeNotFoundError
        The file does not exist.
    CorruptFileError
        The file is not a readable TIFF or is truncated.
    InvalidVolumeError
        The file holds axes vemkit cannot use (several time points and z slices, ...).
    LayerNotFoundError
        ``level`` does not exist.
    """
    loc = location if isinstance(location, Location) else parse_location(location)
    path = loc.path
    if not path.is_file():
        raise VolumeNotFoundError(f"no such TIFF file: {str(path)!r}")
    tif = _open_tiff_file(path)
    try:
        with _refuse_damage(path):
            tif, generic_pages = _choose_series(tif, path)
            series = tif.series[0]
            levels = series.levels
            if not 0 <= level < len(levels):
                raise LayerNotFoundError(
                    f"TIFF {str(path)!r} has {len(levels)} resolution level(s); level {level} "
                    f"does not exist (use 0..{len(levels) - 1})"
                )
            part = levels[level]
            _check_complete(part, path)
        file_axes, file_shape = str(part.axes), tuple(int(s) for s in part.shape)
        axes, axes_map, shape = _map_axes(file_axes, file_shape, path)
        contiguous = (
            part.dataoffset is not None
            and part.keyframe.compression == 1
            and not part.keyframe.is_tiled
        )
        dtype = np.dtype(part.dtype).newbyteorder(tif.byteorder)
        source = _TiffSource(
            path=str(path),
            series=0,
            level=level,
            generic_pages=generic_pages,
            memmap_offset=int(part.dataoffset or 0) if contiguous else None,
            file_shape=file_shape,
            file_dtype=dtype,
        )
        z_is_time = "z" in axes and file_axes[axes_map.index(axes.index("z"))] == "T"
        voxel_size, extra = _file_voxel_size(tif, 0, axes, path, z_is_time=z_is_time)
        if voxel_size is not None and level > 0:
            voxel_size = _scale_for_level(voxel_size, series.shape, part.shape, file_axes)
        metadata: dict[str, Any] = {
            "format": _format_name(tif),
            "compression": tifffile.COMPRESSION(part.keyframe.compression).name.lower(),
            "axes_in_file": file_axes,
            "bigtiff": bool(tif.is_bigtiff),
            **extra,
        }
        if voxel_size is not None:
            metadata["voxel_size_from"] = "file"
    except VemkitError:
        tif.close()
        raise
    except (tifffile.TiffFileError, ValueError, OSError, EOFError, IndexError, KeyError) as exc:
        tif.close()
        raise CorruptFileError(
            f"TIFF {str(path)!r} is damaged or truncated ({exc}); copy or export the file again"
        ) from exc
    except BaseException:
        tif.close()
        raise
    if contiguous:
        tif.close()
        data = TiffArray(source, axes_map=axes_map, shape=shape)
    else:
        data = TiffArray(source, axes_map=axes_map, shape=shape, tif=tif)
    name = path.name
    for suffix in (".ome.tiff", ".ome.tif", *TIFF_SUFFIXES):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return Layer(
        data,
        voxel_size=voxel_size or VoxelSize(1.0, 1.0, 1.0),
        axes=axes,
        name=name or "raw",
        metadata=metadata,
        read_only=True,
    )


def _scale_for_level(
    voxel_size: VoxelSize, base_shape: tuple[int, ...], level_shape: tuple[int, ...], axes: str
) -> VoxelSize:
    factors = {}
    for axis, base, current in zip(axes, base_shape, level_shape, strict=False):
        if axis in "ZYX" and current:
            factors[axis.lower()] = base / current
    return voxel_size.scaled((factors.get("z", 1.0), factors.get("y", 1.0), factors.get("x", 1.0)))


READER = register_reader(Reader(name="tiff", matches=is_tiff_location, open=open_tiff))
