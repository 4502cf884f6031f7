"""N5 datasets (``file.n5:/path`` or ``file.n5/path``), read lazily with TensorStore.

zarr-python 3 has no N5 support, so the ``n5`` driver of TensorStore reads the chunks
(raw, gzip, bzip2, xz, blosc, zstd). N5 lists dimensions fastest-first (x, y, z); the
:class:`N5Array` the :class:`Layer` holds presents them in vemkit's order (z, y, x) through
a transposed TensorStore view, without copying.

Locations
---------
``volume.n5:/raw`` names a dataset. Without an inner path the container's only 3D dataset
is used (several: :class:`~vemkit.errors.LayerNotFoundError` lists them). An inner path to
a group holding pyramid levels ``s0, s1, ...`` (N5-viewer, BigDataViewer, Paintera) picks
the ``level``-th one.

Voxel size (x, y, z in the file, turned into z, y, x)
-----------------------------------------------------
Read from the dataset's ``attributes.json``, else from its parent group's (then multiplied
by the dataset's ``downsamplingFactors``), first match wins:

- ``pixelResolution``: ``{"dimensions": [x, y, z], "unit": "um"}`` (N5-viewer) or a plain
  list ``[x, y, z]`` in nm;
- ``resolution``: ``[x, y, z]`` in nm (BigCAT, Paintera), or in ``unit``/``units``;
- ``transform``: ``{"axes": [...], "scale": [...], "units": [...]}`` (COSEM /
  OpenOrganelle), matched by axis name.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np
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

__all__ = ["N5Array", "is_n5_location", "list_n5_datasets", "open_n5"]

logger = logging.getLogger(__name__)

_AXES_BY_NDIM = {2: "yx", 3: "zyx", 4: "czyx"}
_LEVEL_NAME = re.compile(r"^s(\d+)$")
_ATTRIBUTES = "attributes.json"


def is_n5_location(location: Location) -> bool:
    """Whether ``location`` is an N5 container (``*.n5`` or a folder with N5 attributes)."""
    path = location.path
    if not path.is_dir():
        return False
    if path.name.lower().endswith(".n5"):
        return True
    try:
        attributes = _read_attributes(path)
    except CorruptFileError:
        return True  # an N5 folder with broken attributes: open_n5 explains
    return "n5" in attributes or "dimensions" in attributes


def _read_attributes(folder: Path) -> dict[str, Any]:
    file = folder / _ATTRIBUTES
    if not file.is_file():
        return {}
    try:
        with file.open(encoding="utf-8") as stream:
            attributes = json.load(stream)
    except (OSError, ValueError) as exc:
        raise CorruptFileError(
            f"cannot read N5 attributes {str(file)!r}: {exc}. Repair or rewrite the JSON file"
        ) from exc
    return attributes if isinstance(attributes, dict) else {}


def _is_dataset(attributes: dict[str, Any]) -> bool:
    return "dimensions" in attributes and "dataType" in attributes


def list_n5_datasets(root: Path) -> list[tuple[str, tuple[int, ...]]]:
    """All datasets below ``root`` as (inner path, shape in z, y, x order)."""
    found: list[tuple[str, tuple[int, ...]]] = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(s for s in subfolders if not s.isdigit() and not s.startswith("."))
        if _ATTRIBUTES not in files:
            continue
        attributes = _read_attributes(Path(folder))
        if _is_dataset(attributes):
            inner = Path(folder).relative_to(root).as_posix()
            found.append((inner, tuple(int(d) for d in reversed(attributes["dimensions"]))))
            subfolders[:] = []
    return found


def _describe(datasets: list[tuple[str, tuple[int, ...]]]) -> str:
    return ", ".join(f"{name} {shape}" for name, shape in datasets) or "none"


def _pick_dataset(root: Path, inner: str, level: int) -> str:
    target = root / inner if inner else root
    if not target.is_dir():
        raise LayerNotFoundError(
            f"N5 container {str(root)!r} has no dataset {inner!r}; it holds: "
            f"{_describe(list_n5_datasets(root))}"
        )
    if _is_dataset(_read_attributes(target)):
        if level != 0:
            raise LayerNotFoundError(
                f"{root}:{inner} is a single dataset; level {level} does not exist. Point to "
                "the group that holds the pyramid levels (s0, s1, ...) instead"
            )
        return inner
    levels = {
        int(m.group(1)): child.name
        for child in target.iterdir()
        if (m := _LEVEL_NAME.match(child.name)) and _is_dataset(_read_attributes(child))
    }
    if levels and 0 in levels:
        if level not in levels:
            raise LayerNotFoundError(
                f"{root}:{inner} has pyramid levels {sorted(levels)}; level {level} does not exist"
            )
        return f"{inner}/{levels[level]}".strip("/")
    datasets = [(f"{inner}/{name}".strip("/"), shape) for name, shape in list_n5_datasets(target)]
    volumes = [d for d in datasets if len(d[1]) == 3]
    candidates = volumes or [d for d in datasets if len(d[1]) in (2, 4)]
    if len(candidates) == 1 and level == 0:
        return candidates[0][0]
    if not candidates:
        raise LayerNotFoundError(
            f"N5 container {str(root)!r} holds no image dataset under {inner or '/'!r} "
            f"(found: {_describe(datasets)})"
        )
    names = ", ".join(f"{root}:{name}" for name, _ in candidates)
    raise LayerNotFoundError(f"{root} holds several N5 datasets; choose one, e.g. {names}")


# --- voxel size -----------------------------------------------------------------------------
def _xyz_sizes(attributes: dict[str, Any]) -> tuple[list[float], list[str]] | None:
    """Voxel size in x, y, z order and per-axis units, from one attributes dict."""
    pixel = attributes.get("pixelResolution")
    if isinstance(pixel, dict) and "dimensions" in pixel:
        unit = str(pixel.get("unit", "um"))
        values = [float(v) for v in pixel["dimensions"]]
        return values, [unit] * len(values)
    if isinstance(pixel, list):
        return [float(v) for v in pixel], ["nm"] * len(pixel)
    resolution = attributes.get("resolution")
    if isinstance(resolution, list):
        units = attributes.get("units", attributes.get("unit", "nm"))
        unit_list = units if isinstance(units, list) else [units] * len(resolution)
        return [float(v) for v in resolution], [str(u) for u in unit_list]
    transform = attributes.get("transform")
    if isinstance(transform, dict) and "scale" in transform and "axes" in transform:
        axes = [str(a).lower() for a in transform["axes"]]
        scale = [float(v) for v in transform["scale"]]
        units = transform.get("units", ["nm"] * len(axes))
        by_axis = dict(zip(axes, zip(scale, units, strict=False), strict=False))
        if all(a in by_axis for a in "xyz"):
            return [by_axis[a][0] for a in "xyz"], [str(by_axis[a][1]) for a in "xyz"]
    return None


def _voxel_size(root: Path, inner: str, ndim: int) -> VoxelSize | None:
    folder = root / inner if inner else root
    attributes = _read_attributes(folder)
    found = _xyz_sizes(attributes)
    factors = [1.0, 1.0, 1.0]
    if found is None and folder != root:
        found = _xyz_sizes(_read_attributes(folder.parent))
        downsampling = attributes.get("downsamplingFactors")
        if found is not None and isinstance(downsampling, list):
            factors = [float(f) for f in downsampling[:3]] + [1.0] * (3 - len(downsampling[:3]))
    if found is None:
        return None
    values, units = found
    try:
        nm = [v * VoxelSize.unit_to_nm(u) for v, u in zip(values, units, strict=False)]
        if ndim == 2 and len(nm) == 2:
            nm = [*nm, nm[1]]  # a 2D image: z repeats y
        if len(nm) < 3:
            raise VoxelSizeError(f"need x, y, z voxel sizes, got {values}")
        x_nm, y_nm, z_nm = (v * f for v, f in zip(nm[:3], factors, strict=True))
        return VoxelSize(z_nm, y_nm, x_nm)
    except (VoxelSizeError, ValueError, TypeError) as exc:
        logger.warning("%s:%s: ignoring the stored voxel size (%s)", root, inner, exc)
        return None


# --- array adapter --------------------------------------------------------------------------
class N5Array:
    """Read-only N5 dataset seen in z, y, x order; slicing returns NumPy arrays.

    Parameters
    ----------
    path : str
        Folder of the N5 dataset (the one holding its ``attributes.json``).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._store: Any = None
        store = self._open()
        self.shape: tuple[int, ...] = tuple(int(s) for s in store.shape)
        self.dtype = np.dtype(store.dtype.numpy_dtype)
        chunk = store.chunk_layout.read_chunk.shape
        self.chunks: tuple[int, ...] | None = (
            tuple(int(c) for c in chunk) if chunk is not None else None
        )

    def _open(self) -> Any:
        with self._lock:
            if self._store is None:
                # imported here: TensorStore costs ~0.5 s to import and only N5 needs it
                import tensorstore as ts

                spec = {"driver": "n5", "kvstore": {"driver": "file", "path": self.path + "/"}}
                try:
                    self._store = ts.open(spec, read=True, open=True).result().T
                except ValueError as exc:
                    raise CorruptFileError(
                        f"cannot open N5 dataset {self.path!r}: {exc}. Check its "
                        "attributes.json and that the copy is complete"
                    ) from exc
            return self._store

    def __dask_tokenize__(self) -> tuple[Any, ...]:
        stat = os.stat(os.path.join(self.path, _ATTRIBUTES))
        return ("N5Array", self.path, stat.st_mtime_ns)

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])  # type: ignore[misc]

    @property
    def ndim(self) -> int:
        """Number of axes."""
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> NDArray[Any]:
        view = self._open()[key]
        try:
            return np.asarray(view.read().result())
        except VemkitError:
            raise
        except (ValueError, OSError) as exc:
            raise CorruptFileError(
                f"cannot read N5 dataset {self.path!r}: {exc}. A chunk may be damaged"
            ) from exc

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> NDArray[Any]:
        values = self[...]
        return values if dtype is None else values.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"N5Array({self.path!r}, shape={self.shape}, dtype={self.dtype})"


def open_n5(location: Location | str | os.PathLike[str], level: int = 0) -> Layer:
    """Open an N5 dataset read-only as a lazy (z, y, x) :class:`Layer`.

    Parameters
    ----------
    location : Location, str or path
        ``volume.n5:/dataset``, ``volume.n5/dataset`` or ``volume.n5`` (its only 3D dataset).
    level : int
        Pyramid level when the inner path is a group of levels ``s0, s1, ...``.

    Raises
    ------
    VolumeNotFoundError
        The container does not exist.
    LayerNotFoundError
        The dataset does not exist, or several fit and none was named.
    CorruptFileError
        Attributes or chunks cannot be read.
    InvalidVolumeError
        The dataset is not 2D, 3D or 4D.
    """
    loc = location if isinstance(location, Location) else parse_location(location)
    root = loc.path
    if not root.is_dir():
        raise VolumeNotFoundError(f"no such N5 container: {str(root)!r}")
    inner = _pick_dataset(root, loc.inner.strip("/"), level)
    folder = root / inner if inner else root
    data = N5Array(str(folder))
    axes = _AXES_BY_NDIM.get(data.ndim)
    if axes is None:
        raise InvalidVolumeError(
            f"N5 dataset {root}:{inner} has {data.ndim} axes (shape {data.shape}); vemkit reads "
            "2D, 3D or 4D (x, y, z, c in N5 order) datasets"
        )
    voxel_size = _voxel_size(root, inner, data.ndim)
    metadata: dict[str, Any] = {"format": "n5", "dataset": inner}
    if voxel_size is not None:
        metadata["voxel_size_from"] = "file"
    name = folder.name
    if _LEVEL_NAME.match(name) and folder != root:
        name = folder.parent.name
    return Layer(
        data,
        voxel_size=voxel_size or VoxelSize(1.0, 1.0, 1.0),
        axes=axes,
        name=name.removesuffix(".n5") or "raw",
        metadata=metadata,
        read_only=True,
    )


READER = register_reader(Reader(name="n5", matches=is_n5_location, open=open_n5))
