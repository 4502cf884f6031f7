"""One reader registry: ``open_layer(location)`` picks the reader from the path.

Locations
---------
- ``volume.tif`` / ``.tiff`` / ``.ome.tif``: TIFF, OME-TIFF, ImageJ hyperstack
- ``folder/``: a folder of 2D slices (PNG / TIFF), natural sort order
- ``stack.zip``: a zip of 2D slices
- ``file.h5:/path/to/dataset`` (also ``.hdf5``, ``.hdf``): HDF5 dataset
- ``file.n5:/path/to/dataset`` or ``file.n5/path/to/dataset``: N5 dataset
- ``volume.mrc`` / ``.rec`` / ``.map``: MRC
- ``DATASET.zarr`` (its first image), ``DATASET.zarr/NAME``, ``DATASET.zarr/labels/NAME``:
  OME-Zarr (NGFF); ``level`` picks the pyramid level
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vemkit.errors import UnknownFormatError, VolumeNotFoundError
from vemkit.geometry import VoxelSize
from vemkit.io.layer import Layer, LayerKind

__all__ = [
    "Location",
    "Reader",
    "open_layer",
    "parse_location",
    "reader_for",
    "register_reader",
]

# Suffixes of container formats whose inner datasets are addressed by a path after them.
_CONTAINER_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5", ".n5", ".zarr")


@dataclass(frozen=True)
class Location:
    """A parsed input location: a file or folder plus an optional path inside it."""

    path: Path
    inner: str = ""

    def __str__(self) -> str:
        return f"{self.path}:{self.inner}" if self.inner else str(self.path)


@dataclass(frozen=True)
class Reader:
    """A format reader: ``matches`` decides from the location, ``open`` returns a Layer.

    ``open(location, level)`` must open the data read-only and lazily where the format
    allows, set ``voxel_size`` from the file's metadata when present (and record
    ``metadata["voxel_size_from"] = "file"``, else ``"unknown"``), and raise
    :class:`~vemkit.errors.CorruptFileError` for damaged files.
    """

    name: str
    matches: Callable[[Location], bool]
    open: Callable[[Location, int], Layer]


_READERS: list[Reader] = []


def register_reader(reader: Reader) -> Reader:
    """Add a reader; later registrations are tried first."""
    _READERS.insert(0, reader)
    return reader


def parse_location(location: str | os.PathLike[str]) -> Location:
    """Split ``"file.h5:/a/b"`` or ``"data.zarr/labels/x"`` into a file path and inner path."""
    text = os.fspath(location)
    match = re.match(r"^(.*?\.(?:h5|hdf5|hdf|he5|n5|zarr))(?::|/+)(.+)$", text, re.IGNORECASE)
    if match and not Path(text).is_file():
        inner = match.group(2).strip("/")
        return Location(Path(match.group(1)).expanduser(), inner)
    return Location(Path(text.rstrip(":")).expanduser())


def reader_for(location: Location) -> Reader:
    """Return the reader for ``location`` or raise a clear error."""
    _ensure_builtin_readers()
    if not location.path.exists():
        raise VolumeNotFoundError(f"no such file or folder: {str(location.path)!r}")
    for reader in _READERS:
        if reader.matches(location):
            return reader
    raise UnknownFormatError(
        f"cannot read {str(location)!r}: unknown format. vemkit reads OME-Zarr (.zarr), "
        "TIFF/OME-TIFF, folders or .zip files of 2D PNG/TIFF slices, HDF5 (file.h5:/dataset), "
        "N5 (file.n5:/dataset) and MRC"
    )


def open_layer(
    location: str | os.PathLike[str],
    *,
    voxel_size: VoxelSize | str | None = None,
    level: int = 0,
    name: str | None = None,
    kind: LayerKind | None = None,
) -> Layer:
    """Open a volume read-only as a :class:`Layer`.

    Parameters
    ----------
    location : str or path
        See the module docstring for the accepted forms.
    voxel_size : VoxelSize or str, optional
        Overrides the voxel size stored in the file (nm, z, y, x).
    level : int
        Pyramid level for multiscale formats (0 = full resolution).
    name, kind : optional
        Override the layer name and kind guessed from the source.

    Returns
    -------
    Layer
        A read-only layer; ``metadata["voxel_size_from"]`` is ``"file"``, ``"user"`` or
        ``"unknown"`` (then ``voxel_size`` is a placeholder of 1 nm).
    """
    loc = parse_location(location)
    layer = reader_for(loc).open(loc, level)
    if voxel_size is not None:
        layer.voxel_size = VoxelSize.coerce(voxel_size)
        layer.metadata["voxel_size_from"] = "user"
    layer.metadata.setdefault("voxel_size_from", "unknown")
    layer.metadata.setdefault("source", str(loc))
    if name is not None:
        layer.name = name
    if kind is not None:
        layer.kind = kind
    layer.read_only = True
    return layer


_BUILTINS_LOADED = False


def _ensure_builtin_readers() -> None:
    """Import the format modules once; each registers its reader on import."""
    global _BUILTINS_LOADED  # noqa: PLW0603 - a one-time import guard, not configuration
    if _BUILTINS_LOADED:
        return
    _BUILTINS_LOADED = True
    from vemkit.io import formats  # noqa: F401
