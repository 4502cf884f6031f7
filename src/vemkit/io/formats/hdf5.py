"""HDF5 datasets (``file.h5:/path/to/dataset``), read lazily with h5py.

Locations
---------
``file.h5:/volumes/raw`` (also ``.hdf5``, ``.hdf``, ``.he5``) names a dataset. Without an
inner path the file's only 3D dataset is used; when there are several, a
:class:`~vemkit.errors.LayerNotFoundError` lists them. An inner path to a group holding a
multiscale pyramid (datasets ``s0, s1, ...`` or ``0, 1, ...``) picks the ``level``-th one.

The file is opened read-only and stays open while the :class:`Layer` (which holds the
``h5py.Dataset`` itself) is in use; reads decode only the chunks they touch.

Voxel size
----------
Read from the dataset's attributes, or else from the nearest parent group that has one,
first match wins (a 2D dataset may give just y, x):

- ``element_size_um``: z, y, x in µm (Fiji's HDF5 plugin, ilastik, vigra);
- ``resolution``: z, y, x in nm (CREMI convention);
- ``voxel_size``: z, y, x in nm.

``resolution`` and ``voxel_size`` use a ``unit`` (or ``units``) attribute when present
(e.g. ``"um"``). Extra leading entries (a channel axis) are ignored. Axes: 2D datasets are
``"yx"``, 3D ``"zyx"``, 4D ``"czyx"`` (channels first).
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

import h5py
import numpy as np

from vemkit.errors import (
    CorruptFileError,
    InvalidVolumeError,
    LayerNotFoundError,
    VolumeNotFoundError,
    VoxelSizeError,
)
from vemkit.geometry import VoxelSize
from vemkit.io.layer import Layer
from vemkit.io.registry import Location, Reader, parse_location, register_reader

__all__ = ["HDF5_SUFFIXES", "is_hdf5_location", "list_hdf5_datasets", "open_hdf5"]

logger = logging.getLogger(__name__)

#: File name endings read as HDF5.
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5")

_AXES_BY_NDIM = {2: "yx", 3: "zyx", 4: "czyx"}
_LEVEL_NAME = re.compile(r"^s?(\d+)$")


def is_hdf5_location(location: Location) -> bool:
    """Whether ``location`` is an HDF5 file (by its name ending)."""
    return location.path.name.lower().endswith(HDF5_SUFFIXES) and location.path.is_file()


def list_hdf5_datasets(group: h5py.Group) -> list[tuple[str, tuple[int, ...]]]:
    """All datasets below ``group`` as (path, shape), in file order."""
    found: list[tuple[str, tuple[int, ...]]] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            found.append((obj.name, tuple(int(s) for s in obj.shape)))

    group.visititems(visit)
    return found


def _describe(datasets: list[tuple[str, tuple[int, ...]]]) -> str:
    return ", ".join(f"{name} {shape}" for name, shape in datasets) or "none"


def _pick_dataset(file: h5py.File, inner: str, level: int, label: str) -> h5py.Dataset:
    if inner:
        obj = file.get(inner)
        if obj is None:
            raise LayerNotFoundError(
                f"{label} has no dataset {inner!r}; it holds: {_describe(list_hdf5_datasets(file))}"
            )
    else:
        obj = file
    if isinstance(obj, h5py.Dataset):
        if level != 0:
            raise LayerNotFoundError(
                f"{label}:{obj.name} is a single dataset; level {level} does not exist. Point "
                "to the group that holds the pyramid levels instead"
            )
        return obj
    levels = {
        int(m.group(1)): key
        for key in obj
        if (m := _LEVEL_NAME.match(key)) and isinstance(obj[key], h5py.Dataset)
    }
    if inner and 0 in levels:
        if level not in levels:
            raise LayerNotFoundError(
                f"{label}:{obj.name} has pyramid levels {sorted(levels)}; level {level} does "
                "not exist"
            )
        return obj[levels[level]]
    datasets = list_hdf5_datasets(obj)
    volumes = [d for d in datasets if len(d[1]) == 3]
    candidates = volumes or [d for d in datasets if len(d[1]) in (2, 4)]
    if len(candidates) == 1 and level == 0:
        return file[candidates[0][0]]
    if not candidates:
        raise LayerNotFoundError(
            f"{label} holds no 2D/3D/4D image dataset (found: {_describe(datasets)})"
        )
    if level != 0:
        raise LayerNotFoundError(f"{label}: give the dataset path to pick a level {level}")
    names = ", ".join(f"{label}:{name}" for name, _ in candidates)
    raise LayerNotFoundError(f"{label} holds several image datasets; choose one, e.g. {names}")


def _unit_attr(attrs: Any) -> str | None:
    """Return the ``unit``/``units`` attribute as text (the last entry of a per-axis list)."""
    for key in ("unit", "units"):
        if key not in attrs:
            continue
        value = attrs[key]
        if not isinstance(value, str | bytes):
            entries = np.asarray(value).ravel()
            if entries.size == 0:
                continue
            value = entries[-1]
        return value.decode() if isinstance(value, bytes) else str(value)
    return None


def _attr_voxel_size(attrs: Any, label: str, *, ndim: int) -> VoxelSize | None:
    for key in ("element_size_um", "resolution", "voxel_size"):
        if key not in attrs:
            continue
        unit = "um" if key == "element_size_um" else (_unit_attr(attrs) or "nm")
        try:
            values = [float(v) for v in np.asarray(attrs[key], dtype=np.float64).ravel()]
            if ndim == 2 and len(values) == 2:  # a 2D image: z repeats y
                values = [values[0], *values]
            if len(values) < 3:
                raise VoxelSizeError(f"{key} has {len(values)} values, need z, y, x")
            factor = VoxelSize.unit_to_nm(unit)
            return VoxelSize(*(v * factor for v in values[-3:]))
        except (VoxelSizeError, ValueError, TypeError) as exc:
            logger.warning("%s: ignoring attribute %s=%r (%s)", label, key, attrs[key], exc)
    return None


def _voxel_size(dataset: h5py.Dataset, label: str) -> VoxelSize | None:
    node: Any = dataset
    while True:
        found = _attr_voxel_size(node.attrs, f"{label}:{node.name}", ndim=dataset.ndim)
        if found is not None:
            return found
        if node.name == "/":
            return None
        node = node.parent


def open_hdf5(location: Location | str | os.PathLike[str], level: int = 0) -> Layer:
    """Open an HDF5 dataset read-only as a lazy :class:`Layer`.

    Parameters
    ----------
    location : Location, str or path
        ``file.h5:/path/to/dataset``, or ``file.h5`` when it holds one 3D dataset.
    level : int
        Pyramid level when the inner path is a group of levels (``s0``, ``s1``, ...).

    Raises
    ------
    VolumeNotFoundError
        The file does not exist.
    CorruptFileError
        The file is not a readable HDF5 file.
    LayerNotFoundError
        The dataset does not exist, or several datasets fit and none was named.
    InvalidVolumeError
        The dataset is not 2D, 3D or 4D.
    """
    loc = location if isinstance(location, Location) else parse_location(location)
    path = loc.path
    if not path.is_file():
        raise VolumeNotFoundError(f"no such HDF5 file: {str(path)!r}")
    label = str(path)
    try:
        file = h5py.File(path, mode="r")
    except OSError as exc:
        raise CorruptFileError(
            f"cannot read {label!r} as HDF5: {exc}. The file may be truncated or not HDF5; "
            "check that the copy is complete"
        ) from exc
    try:
        dataset = _pick_dataset(file, loc.inner, level, label)
        axes = _AXES_BY_NDIM.get(dataset.ndim)
        if axes is None:
            raise InvalidVolumeError(
                f"{label}:{dataset.name} has {dataset.ndim} axes (shape {dataset.shape}); vemkit "
                "reads 2D (y, x), 3D (z, y, x) or 4D (c, z, y, x) datasets"
            )
        voxel_size = _voxel_size(dataset, label)
    except BaseException:
        file.close()
        raise
    metadata: dict[str, Any] = {"format": "hdf5", "dataset": dataset.name}
    if voxel_size is not None:
        metadata["voxel_size_from"] = "file"
    name = dataset.name.rsplit("/", 1)[-1]
    if _LEVEL_NAME.match(name) and dataset.parent.name != "/":
        name = dataset.parent.name.rsplit("/", 1)[-1]
    return Layer(
        dataset,
        voxel_size=voxel_size or VoxelSize(1.0, 1.0, 1.0),
        axes=axes,
        name=name or path.stem,
        metadata=metadata,
        read_only=True,
    )


READER = register_reader(Reader(name="hdf5", matches=is_hdf5_location, open=open_hdf5))
