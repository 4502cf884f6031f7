"""A ``.zip`` of 2D slices (PNG, TIFF, JPEG), e.g. an upload, read lazily as a z stack.

The same rules as for a folder of slices apply (see :mod:`vemkit.io.formats.slices`):
natural sort of the member names (sub-folders included), hidden members and macOS
``__MACOSX/`` entries ignored, one shape and dtype for all slices, voxel size unknown.

Nothing is extracted to disk and the zip is not loaded into memory: at open time the
central directory and each member's header are read; afterwards every read decompresses
only the members (slices) it needs, one Dask task per slice. Reads of members stored
without compression (common for TIFF slices) cost little; deflated members are
decompressed whole, so reading a small box still decodes full slices.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dask.base import tokenize
from natsort import natsorted, ns
from numpy.typing import NDArray

from vemkit.errors import (
    CorruptFileError,
    LayerNotFoundError,
    UnknownFormatError,
    VemkitError,
    VolumeNotFoundError,
)
from vemkit.io.formats.slices import (
    SliceInfo,
    check_same_info,
    check_slice,
    decode_slice,
    is_slice_name,
    layer_from_stack,
    probe_slice,
    stack_slices,
)
from vemkit.io.layer import Layer
from vemkit.io.registry import Location, Reader, parse_location, register_reader

__all__ = ["is_zip_location", "list_zip_slices", "open_zip"]

logger = logging.getLogger(__name__)


def is_zip_location(location: Location) -> bool:
    """Whether ``location`` is a ``.zip`` file."""
    return (
        not location.inner
        and location.path.name.lower().endswith(".zip")
        and location.path.is_file()
    )


def list_zip_slices(archive: zipfile.ZipFile) -> list[str]:
    """List the member names of the 2D slices in ``archive``, natural sort order."""
    names = []
    for info in archive.infolist():
        if info.is_dir():
            continue
        parts = info.filename.split("/")
        if any(part.startswith(".") or part == "__MACOSX" for part in parts):
            continue
        if is_slice_name(info.filename):
            names.append(info.filename)
    return natsorted(names, alg=ns.IGNORECASE)


def _open_archive(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path, mode="r")
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise CorruptFileError(
            f"cannot read {str(path)!r} as a zip archive: {exc}. The file may be truncated; "
            "upload or copy it again"
        ) from exc


class _ZipSlices:
    """Picklable reader of slice ``i`` of a zip; keeps one archive handle per process."""

    def __init__(self, path: Path, names: Sequence[str], info: SliceInfo) -> None:
        self.path = str(path)
        self.names = list(names)
        self.info = info
        self._lock = threading.Lock()
        self._archive: zipfile.ZipFile | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "names": self.names, "info": self.info}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(Path(state["path"]), state["names"], state["info"])  # type: ignore[misc]

    def _member_bytes(self, name: str) -> bytes:
        with self._lock:
            if self._archive is None:
                self._archive = _open_archive(Path(self.path))
                weakref.finalize(self, self._archive.close)
            try:
                return self._archive.read(name)
            except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, KeyError) as exc:
                raise CorruptFileError(
                    f"cannot read slice {name!r} from {self.path!r}: {exc}. The zip may be "
                    "damaged; upload or copy it again"
                ) from exc

    def __call__(self, index: int) -> NDArray[Any]:
        name = self.names[index]
        label = f"{self.path}:{name}"
        return check_slice(decode_slice(self._member_bytes(name), label), self.info, label)


def open_zip(location: Location | str | os.PathLike[str], level: int = 0) -> Layer:
    """Open a zip of 2D slices read-only as a lazy (z, y, x) :class:`Layer`.

    Parameters
    ----------
    location : Location, str or path
        The ``.zip`` file.
    level : int
        Must be 0 (slices have a single resolution).

    Raises
    ------
    VolumeNotFoundError
        The file does not exist.
    CorruptFileError
        The zip or one of its slices cannot be read.
    UnknownFormatError
        The zip holds no PNG, TIFF or JPEG slice.
    InvalidVolumeError
        Slices differ in shape or dtype, or a slice is not 2D.
    """
    loc = location if isinstance(location, Location) else parse_location(location)
    path = loc.path
    if not path.is_file():
        raise VolumeNotFoundError(f"no such zip file: {str(path)!r}")
    if level != 0:
        raise LayerNotFoundError(
            f"{str(path)!r} is a zip of slices with one resolution level; level {level} does "
            "not exist (use 0)"
        )
    with _open_archive(path) as archive:
        names = list_zip_slices(archive)
        if not names:
            raise UnknownFormatError(
                f"zip {str(path)!r} contains no PNG, TIFF or JPEG slices; zip a folder of 2D "
                "images (one file per z slice)"
            )
        infos = []
        for name in names:
            label = f"{path}:{name}"
            try:
                with archive.open(name) as stream:
                    infos.append(probe_slice(stream, label))
            except VemkitError:
                raise
            except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as exc:
                raise CorruptFileError(f"cannot read slice {label!r}: {exc}") from exc
    info = check_same_info(infos, names, str(path))
    stat = path.stat()
    token = tokenize(str(path.absolute()), stat.st_size, stat.st_mtime_ns, names)
    stack = stack_slices(_ZipSlices(path, names, info), count=len(names), info=info, token=token)
    return layer_from_stack(
        stack,
        name=path.stem or "raw",
        metadata={
            "format": "zip",
            "slice_count": len(names),
            "first_slice": names[0],
            "last_slice": names[-1],
        },
        has_samples=len(info[0]) == 3,
    )


READER = register_reader(Reader(name="zip", matches=is_zip_location, open=open_zip))
