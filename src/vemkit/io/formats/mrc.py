"""MRC / CCP4 volumes (``.mrc``, ``.rec``, ``.map``, ``.st``), memory mapped read-only.

The header is validated with ``mrcfile`` (``permissive=False``: a damaged header or a
data block shorter than the header promises raises
:class:`~vemkit.errors.CorruptFileError`); the data is then memory mapped, so reads touch
only the bytes they need.

- Voxel size: ``mrcfile``'s ``voxel_size`` (cell size / sampling, in Å) divided by 10 to
  give nm. A zero cell (the default of many writers) means unknown.
- Axes: the file's ``MAPC/MAPR/MAPS`` axis order is honoured (a non-standard order is
  transposed lazily to z, y, x); a single image gives ``"yx"``; an image stack
  (``ISPG`` 0) reads its images as z.
- Mode 0 (8-bit) is signed in the MRC2014 standard, but IMOD and SerialEM write unsigned
  bytes and say so in IMOD's header flags: such files are read as ``uint8``.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Literal

import mrcfile
import numpy as np

from vemkit.errors import CorruptFileError, LayerNotFoundError, VolumeNotFoundError
from vemkit.geometry import VoxelSize
from vemkit.io.layer import Layer
from vemkit.io.registry import Location, Reader, parse_location, register_reader

__all__ = ["MRC_SUFFIXES", "is_mrc_location", "open_mrc"]

logger = logging.getLogger(__name__)

#: File name endings read as MRC.
MRC_SUFFIXES = (".mrc", ".rec", ".map", ".st")

_IMOD_STAMP = 1146047817  # "IMOD" in IMOD-written headers
_IMOD_SIGNED_BYTES = 1  # bit 0 of imodFlags: mode 0 bytes are signed


def is_mrc_location(location: Location) -> bool:
    """Whether ``location`` is an MRC file (by its name ending)."""
    return (
        not location.inner
        and location.path.name.lower().endswith(MRC_SUFFIXES)
        and location.path.is_file()
    )


def _imod_unsigned_bytes(header: Any) -> bool:
    """Whether a mode 0 file was written by IMOD/SerialEM with unsigned bytes."""
    extra2 = bytes(header.extra2)
    order: Literal["big", "little"] = "big" if header.mode.dtype.byteorder == ">" else "little"
    stamp = int.from_bytes(extra2[40:44], order)
    flags = int.from_bytes(extra2[44:48], order)
    return stamp == _IMOD_STAMP and not flags & _IMOD_SIGNED_BYTES


def open_mrc(location: Location | str | os.PathLike[str], level: int = 0) -> Layer:
    """Open an MRC file read-only as a memory-mapped :class:`Layer`.

    Parameters
    ----------
    location : Location, str or path
        The MRC file.
    level : int
        Must be 0 (MRC holds one resolution).

    Raises
    ------
    VolumeNotFoundError
        The file does not exist.
    CorruptFileError
        The header is invalid or the file is shorter than its header says.
    """
    loc = location if isinstance(location, Location) else parse_location(location)
    path = loc.path
    if not path.is_file():
        raise VolumeNotFoundError(f"no such MRC file: {str(path)!r}")
    if level != 0:
        raise LayerNotFoundError(
            f"{str(path)!r} is an MRC file with one resolution level; level {level} does not "
            "exist (use 0)"
        )
    try:
        with mrcfile.mmap(path, mode="r", permissive=False) as mrc:
            header = mrc.header
            raw = mrc.data
            if raw is None:
                raise ValueError("the file holds no data block")
            dtype = raw.dtype
            shape = tuple(int(s) for s in raw.shape)
            offset = int(raw.offset)
            voxel_xyz = tuple(float(v) for v in mrc.voxel_size.tolist())
            axis_order = (int(header.mapc), int(header.mapr), int(header.maps))
            mode = int(header.mode)
            unsigned_bytes = mode == 0 and _imod_unsigned_bytes(header)
    except (ValueError, OSError, EOFError) as exc:
        raise CorruptFileError(
            f"cannot read {str(path)!r} as MRC: {exc}. The file may be truncated or not an "
            "MRC file; check that the copy is complete"
        ) from exc
    if unsigned_bytes:
        dtype = np.dtype(np.uint8)
    data: Any = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
    if len(shape) == 4:  # a volume stack: keep the first volume only
        logger.warning("%s holds %d volumes; reading the first", path, shape[0])
        data = data[0]
    axes = "zyx" if data.ndim == 3 else "yx"
    if data.ndim == 3 and sorted(axis_order) == [1, 2, 3] and axis_order != (1, 2, 3):
        # data axes are (sections, rows, columns) = (MAPS, MAPR, MAPC); 1=x, 2=y, 3=z
        file_axes = [axis_order[2], axis_order[1], axis_order[0]]
        data = data.transpose([file_axes.index(a) for a in (3, 2, 1)])
    if not dtype.isnative:
        logger.debug("%s is big-endian; reads are converted on access", path)
    x_a, y_a, z_a = voxel_xyz
    metadata: dict[str, Any] = {"format": "mrc", "mrc_mode": mode}
    voxel_size = VoxelSize(1.0, 1.0, 1.0)
    if x_a > 0 and y_a > 0 and (z_a > 0 or axes == "yx"):
        z_nm = z_a / 10.0 if z_a > 0 else y_a / 10.0
        voxel_size = VoxelSize(z_nm, y_a / 10.0, x_a / 10.0)
        metadata["voxel_size_from"] = "file"
    return Layer(
        data,
        voxel_size=voxel_size,
        axes=axes,
        name=path.stem or "raw",
        metadata=metadata,
        read_only=True,
    )


READER = register_reader(Reader(name="mrc", matches=is_mrc_location, open=open_mrc))
