"""OME-Zarr (NGFF 0.4 on zarr v2, NGFF 0.5 on zarr v3) and plain Zarr reader.

Locations
---------
- ``DATASET.zarr``: the root image when the root is a multiscale image, else the dataset's
  raw image (``raw``, possibly a reference to data stored elsewhere), else the first
  multiscale group in name order;
- ``DATASET.zarr/NAME``, ``DATASET.zarr/labels/NAME``: a named image or label image;
- ``DATASET.zarr/NAME/0`` or a plain ``array.zarr``: one Zarr array (with the voxel size
  of its multiscale group when it belongs to one, else unknown).

Everything is opened read-only (zarr mode ``"r"``) and lazily: the :class:`Layer` holds the
Zarr array itself. Singleton ``t`` and ``c`` axes are dropped (lazily); other ``t`` axes are
refused.

Voxel sizes come from the level's ``scale`` transformation times the multiscale's own
``coordinateTransformations`` scale, converted to nm with the axis unit. When the spatial
axes carry no unit the numbers are kept (so ratios between levels stay right) but
``metadata["voxel_size_from"]`` is ``"unknown"`` and the user must pass ``--voxel-size``.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.errors import NodeNotFoundError
from zarr.storage import LocalStore

from vemkit.errors import (
    ConfigError,
    CorruptFileError,
    InvalidVolumeError,
    LayerNotFoundError,
    UnknownFormatError,
    VolumeNotFoundError,
    VoxelSizeError,
)
from vemkit.geometry import VoxelSize
from vemkit.io.layer import Layer
from vemkit.io.registry import Location, Reader, open_layer, parse_location, register_reader

__all__ = [
    "VEMKIT_ATTRS_KEY",
    "Multiscale",
    "is_zarr_array",
    "is_zarr_location",
    "list_layer_names",
    "list_levels",
    "ngff_attributes",
    "open_ome_zarr",
    "open_zarr_node",
    "read_multiscale",
]

logger = logging.getLogger(__name__)

#: Key of the vemkit dataset record in a dataset's root attributes.
VEMKIT_ATTRS_KEY = "vemkit"
_ZARR_MARKERS = (".zgroup", ".zarray", "zarr.json")
_KNOWN_AXES = "tczyx"


@dataclass(frozen=True)
class Multiscale:
    """The parts of an NGFF ``multiscales`` entry that vemkit uses.

    Attributes
    ----------
    axes : str
        Axis names in array order, e.g. ``"zyx"`` or ``"tczyx"``.
    units : tuple of str or None
        Unit per axis as written in the file (None where absent).
    paths : tuple of str
        Array path of each level, finest first.
    scales : tuple of tuple of float
        Scale of each level per axis, in the file's units (global scale applied).
    version : str
        NGFF version string (``"0.4"``, ``"0.5"``, ...), ``""`` when absent.
    name : str
        The multiscale's name (``""`` when absent).
    attrs : dict
        All NGFF attributes of the group (``image-label`` among them for labels).
    """

    axes: str
    units: tuple[str | None, ...]
    paths: tuple[str, ...]
    scales: tuple[tuple[float, ...], ...]
    version: str = ""
    name: str = ""
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def n_levels(self) -> int:
        """Number of pyramid levels."""
        return len(self.paths)

    @property
    def has_units(self) -> bool:
        """Whether every spatial axis names a length unit."""
        return all(u for a, u in zip(self.axes, self.units, strict=True) if a in "zyx")

    def voxel_size_nm(self, level: int) -> tuple[float, ...]:
        """Voxel size of ``level`` in nm along the spatial axes (file units when unitless).

        Raises
        ------
        VoxelSizeError
            An axis unit is not a length unit vemkit knows.
        """
        sizes = []
        for axis, unit, scale in zip(self.axes, self.units, self.scales[level], strict=True):
            if axis in "zyx":
                sizes.append(scale * (VoxelSize.unit_to_nm(unit) if unit else 1.0))
        return tuple(sizes)


def is_zarr_location(location: Location) -> bool:
    """Whether ``location`` names a Zarr store (``*.zarr`` or a folder with Zarr metadata)."""
    path = location.path
    if path.suffix.lower() == ".zarr":
        return True
    return path.is_dir() and any((path / marker).is_file() for marker in _ZARR_MARKERS)


def read_multiscale(node: Any, *, where: str = "") -> Multiscale | None:
    """Parse the ``multiscales`` metadata of a Zarr group (None when it has none).

    Parameters
    ----------
    node : zarr.Group
        The group to inspect (NGFF 0.4 attributes, or 0.5 attributes under ``"ome"``).
    where : str
        Location used in error messages.

    Raises
    ------
    CorruptFileError
        The metadata is present but malformed.
    """
    attrs = ngff_attributes(node, where=where)
    if "multiscales" not in attrs:
        return None
    try:
        return _parse_multiscale(attrs, node)
    except CorruptFileError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as error:
        raise CorruptFileError(
            f"{where or 'Zarr group'}: malformed OME-Zarr 'multiscales' metadata ({error}); "
            "the file was not written completely or by a tool that breaks the NGFF spec — "
            "re-export it, or open one of its arrays directly (e.g. DATASET.zarr/NAME/0) "
            "with --voxel-size"
        ) from error


def open_ome_zarr(location: str | os.PathLike[str] | Location, *, level: int = 0) -> Layer:
    """Open an OME-Zarr image, label image or plain Zarr array read-only.

    Parameters
    ----------
    location : str, path or Location
        See the module docstring.
    level : int
        Pyramid level, 0 = full resolution.

    Returns
    -------
    Layer
        Lazy, read-only; ``metadata`` holds ``format="ome-zarr"``, ``level``, ``n_levels``,
        ``levels_voxel_size`` (one ``(z, y, x)`` tuple in nm per level), ``voxel_size_from``
        and, for label images, ``image_label``.

    Raises
    ------
    VolumeNotFoundError
        The store does not exist.
    LayerNotFoundError
        No image of that name or no such level (the message lists what exists).
    CorruptFileError
        Damaged metadata.
    """
    loc = location if isinstance(location, Location) else parse_location(location)
    if level < 0:
        raise LayerNotFoundError(f"pyramid level must be 0 or more, got {level}")
    root_path = loc.path
    if not root_path.exists():
        raise VolumeNotFoundError(f"no such Zarr store: {str(root_path)!r}")
    inner = loc.inner.strip("/")
    root = open_zarr_node(root_path, "")
    if root is None:
        raise UnknownFormatError(
            f"{str(root_path)!r} holds no Zarr metadata (.zgroup, .zarray or zarr.json); "
            "is it an OME-Zarr dataset?"
        )
    reference = _reference_record(root, where=str(root_path))
    if inner == "":
        return _open_default(root_path, root, reference, level)
    if inner == "raw" and reference is not None:
        return _open_reference(root_path, reference, level)
    node = open_zarr_node(root_path, inner)
    if node is None:
        raise LayerNotFoundError(
            f"{str(root_path)!r} has no layer {inner!r}; it has: "
            f"{', '.join(list_layer_names(root_path)) or 'no layers'}"
        )
    if is_zarr_array(node):
        return _open_array(root_path, inner, node, level)
    multiscale = read_multiscale(node, where=f"{root_path}/{inner}")
    if multiscale is None:
        raise LayerNotFoundError(
            f"{str(root_path)!r}/{inner} is a group, not an image; layers in "
            f"{str(root_path)!r}: {', '.join(list_layer_names(root_path)) or 'none'}"
        )
    return _open_multiscale(root_path, inner, node, multiscale, level)


def list_levels(location: str | os.PathLike[str] | Location) -> list[Layer]:
    """Open every pyramid level of an OME-Zarr image (finest first), all lazy and read-only."""
    first = open_ome_zarr(location, level=0)
    return [first] + [
        open_ome_zarr(location, level=i) for i in range(1, first.metadata.get("n_levels", 1))
    ]


def list_layer_names(path: str | os.PathLike[str]) -> list[str]:
    """Names of the images in a Zarr store, e.g. ``["raw", "pred", "labels/nuclei"]``.

    ``raw`` comes first, then other images in name order, then label images in the order of
    ``labels`` metadata (unlisted label groups after). A store whose root is itself an image
    is listed as ``"."``. Hidden names (temporary outputs being written) are skipped.
    """
    root_path = Path(path)
    root = open_zarr_node(root_path, "")
    if root is None or is_zarr_array(root):
        return []
    names: list[str] = []
    if read_multiscale(root, where=str(root_path)) is not None:
        names.append(".")
    if _reference_record(root, where=str(root_path)) is not None:
        names.append("raw")
    images = sorted(
        name
        for name in _child_groups(root)
        if name != "labels" and _is_multiscale_group(root_path, name)
    )
    names.extend(n for n in sorted(images, key=lambda n: n != "raw") if n not in names)
    labels_group = open_zarr_node(root_path, "labels")
    if labels_group is not None and not is_zarr_array(labels_group):
        listed = ngff_attributes(labels_group, where=f"{root_path}/labels").get("labels", [])
        if not isinstance(listed, list):
            raise CorruptFileError(
                f"{root_path}/labels: 'labels' metadata must be a list of names, got {listed!r}"
            )
        children = set(_child_groups(labels_group))
        ordered = [str(n) for n in listed if str(n) in children]
        ordered += sorted(children - set(ordered))
        names.extend(
            f"labels/{n}" for n in ordered if _is_multiscale_group(root_path, f"labels/{n}")
        )
    return names


# --- opening ---------------------------------------------------------------------------------
def _open_default(
    root_path: Path, root: Any, reference: dict[str, Any] | None, level: int
) -> Layer:
    if is_zarr_array(root):
        return _open_array(root_path, "", root, level)
    multiscale = read_multiscale(root, where=str(root_path))
    if multiscale is not None:
        return _open_multiscale(root_path, "", root, multiscale, level)
    if reference is not None:
        return _open_reference(root_path, reference, level)
    names = [n for n in list_layer_names(root_path) if not n.startswith("labels/")]
    if not names:
        raise LayerNotFoundError(
            f"{str(root_path)!r} holds no OME-Zarr image; give the path of an image or array "
            "inside it (e.g. DATASET.zarr/NAME)"
        )
    inner = names[0]
    node = open_zarr_node(root_path, inner)
    multiscale = read_multiscale(node, where=f"{root_path}/{inner}")
    assert multiscale is not None
    return _open_multiscale(root_path, inner, node, multiscale, level)


def _open_multiscale(
    root_path: Path, inner: str, group: Any, multiscale: Multiscale, level: int
) -> Layer:
    where = f"{root_path}/{inner}" if inner else str(root_path)
    if level >= multiscale.n_levels:
        raise LayerNotFoundError(
            f"{where!r} has no pyramid level {level}; it has levels 0 to {multiscale.n_levels - 1}"
        )
    try:
        array = group[multiscale.paths[level]]
    except (KeyError, FileNotFoundError, LookupError) as error:
        raise CorruptFileError(
            f"{where!r}: the metadata lists level {level} at {multiscale.paths[level]!r} but "
            "there is no array there; the dataset is incomplete — re-create it"
        ) from error
    except ValueError as error:  # damaged .zarray / zarr.json
        raise CorruptFileError(f"{where!r}: level {level} array is damaged ({error})") from error
    if not is_zarr_array(array):
        raise CorruptFileError(f"{where!r}: level path {multiscale.paths[level]!r} is no array")
    if array.ndim != len(multiscale.axes):
        raise CorruptFileError(
            f"{where!r}: level {level} has {array.ndim} axes but the metadata names "
            f"{len(multiscale.axes)} ({multiscale.axes!r})"
        )
    voxel_size_from = "file" if multiscale.has_units else "unknown"
    try:
        levels_nm = [multiscale.voxel_size_nm(i) for i in range(multiscale.n_levels)]
    except VoxelSizeError as error:
        logger.warning("%s: %s; treating the voxel size as unknown", where, error)
        levels_nm = [_scale_spatial(multiscale, i) for i in range(multiscale.n_levels)]
        voxel_size_from = "unknown"
    data, axes, squeezed = _squeeze(array, multiscale.axes, where=where)
    ngff = multiscale.attrs
    is_labels = "image-label" in ngff or inner.split("/", maxsplit=1)[0] == "labels"
    name = inner.rsplit("/", maxsplit=1)[-1] if inner else (multiscale.name or _stem(root_path))
    metadata: dict[str, Any] = {
        "format": "ome-zarr",
        "ngff_version": multiscale.version,
        "source": where,
        "path": str(root_path),
        "inner": inner,
        "level": level,
        "n_levels": multiscale.n_levels,
        "levels_voxel_size": [_zyx(v) for v in levels_nm],
        "levels_shape": _levels_shape(group, multiscale, where=where),
        "voxel_size_from": voxel_size_from,
    }
    if squeezed:
        metadata["squeezed_axes"] = squeezed
    if is_labels:
        metadata["image_label"] = ngff.get("image-label", {})
    return Layer(
        data=data,
        voxel_size=VoxelSize(*_zyx(levels_nm[level])),
        axes=axes,
        kind="labels" if is_labels else "image",
        name=name,
        metadata=metadata,
        read_only=True,
    )


def _open_array(root_path: Path, inner: str, array: Any, level: int) -> Layer:
    """Open a bare array: a level of its parent multiscale when it is one, else plain."""
    if inner:
        parent_inner, _, leaf = inner.rpartition("/")
        parent = open_zarr_node(root_path, parent_inner)
        multiscale = (
            read_multiscale(parent, where=f"{root_path}/{parent_inner}")
            if parent is not None and not is_zarr_array(parent)
            else None
        )
        if multiscale is not None and leaf in multiscale.paths:
            index = multiscale.paths.index(leaf)
            if level not in (0, index):
                raise ConfigError(
                    f"{root_path}/{inner} is pyramid level {index}; do not also ask for "
                    f"level {level}"
                )
            return _open_multiscale(root_path, parent_inner, parent, multiscale, index)
    if level != 0:
        raise LayerNotFoundError(
            f"{root_path}/{inner} is a single Zarr array without a pyramid; only level 0 exists"
        )
    if array.ndim > 4:
        raise InvalidVolumeError(
            f"{root_path}/{inner} has {array.ndim} axes and no OME-Zarr metadata naming them; "
            "vemkit reads 2D (y, x), 3D (z, y, x) and 4D (c, z, y, x) arrays"
        )
    axes = "czyx"[-array.ndim :]
    where = f"{root_path}/{inner}" if inner else str(root_path)
    name = inner.rsplit("/", maxsplit=1)[-1] if inner else _stem(root_path)
    return Layer(
        data=array,
        voxel_size=VoxelSize(1.0, 1.0, 1.0),
        axes=axes,
        kind="image",
        name=name,
        metadata={
            "format": "zarr",
            "source": where,
            "path": str(root_path),
            "inner": inner,
            "level": 0,
            "n_levels": 1,
            "levels_voxel_size": [(1.0, 1.0, 1.0)],
            "voxel_size_from": "unknown",
        },
        read_only=True,
    )


def _open_reference(root_path: Path, record: dict[str, Any], level: int) -> Layer:
    """Open the raw data a reference-mode dataset points to (read-only).

    The record holds the source location, the pyramid level of the source that was given
    (``level``, usually 0) and the voxel size of that level; ``level`` here counts from it.
    """
    raw = record.get("raw", {})
    try:
        source = str(raw["source"])
        source_level = int(raw.get("level", 0))
        voxel_size = VoxelSize(*raw["voxel_size_nm"])
    except (KeyError, TypeError, ValueError) as error:
        raise CorruptFileError(
            f"{str(root_path)!r}: the 'vemkit' record of the referenced raw data is damaged "
            f"({error}); re-create the dataset"
        ) from error
    try:
        layer = open_layer(source, level=source_level + level)
    except VolumeNotFoundError as error:
        raise VolumeNotFoundError(
            f"dataset {str(root_path)!r} refers to raw data at {source!r}, which no longer "
            "exists; move it back there or re-create the dataset"
        ) from error
    if level == 0:
        layer.voxel_size = voxel_size
    else:
        levels = layer.metadata.get("levels_voxel_size") or []
        ratio = [
            a / b for a, b in zip(levels[source_level + level], levels[source_level], strict=True)
        ]
        layer.voxel_size = voxel_size.scaled(ratio)
    layer.name = "raw"
    layer.kind = "image"
    layer.read_only = True
    layer.metadata["voxel_size_from"] = raw.get("voxel_size_from", "file")
    layer.metadata["reference"] = True
    layer.metadata["dataset"] = str(root_path)
    layer.metadata["source"] = source
    return layer


# --- metadata helpers ------------------------------------------------------------------------
def _parse_multiscale(attrs: dict[str, Any], node: Any) -> Multiscale:
    entries = attrs["multiscales"]
    if not isinstance(entries, list) or not entries or not isinstance(entries[0], dict):
        raise ValueError("'multiscales' must be a non-empty list of objects")
    entry = entries[0]
    datasets = entry["datasets"]
    if not isinstance(datasets, list) or not datasets:
        raise ValueError("'datasets' must be a non-empty list")
    paths = tuple(str(d["path"]) for d in datasets)
    version = str(entry.get("version", attrs.get("version", "")))
    raw_axes = entry.get("axes")
    if raw_axes is None:  # NGFF 0.1 / 0.2: always 5D t, c, z, y, x
        first = node[paths[0]]
        ndim = first.ndim
        raw_axes = list(_KNOWN_AXES[-ndim:])
    names: list[str] = []
    units: list[str | None] = []
    for axis in raw_axes:
        if isinstance(axis, str):
            names.append(axis.lower())
            units.append(None)
        else:
            names.append(str(axis["name"]).lower())
            unit = axis.get("unit")
            units.append(str(unit) if unit else None)
    axes = "".join(names)
    if len(set(names)) != len(names) or any(n not in _KNOWN_AXES or len(n) != 1 for n in names):
        raise InvalidVolumeError(
            f"OME-Zarr axes {names} are not supported; vemkit reads axes named t, c, z, y, x"
        )
    if not any(a in "zyx" for a in axes):
        raise InvalidVolumeError(f"OME-Zarr axes {names} include no spatial axis (z, y, x)")
    global_scale = _scale_of(entry.get("coordinateTransformations") or [], len(axes))
    scales = []
    for dataset in datasets:
        level_scale = _scale_of(dataset.get("coordinateTransformations") or [], len(axes))
        scale = tuple(a * b for a, b in zip(level_scale, global_scale, strict=True))
        if any(not math.isfinite(s) or s <= 0 for s in scale):
            raise ValueError(f"scale {scale} of level {dataset['path']!r} is not positive")
        scales.append(scale)
    return Multiscale(
        axes=axes,
        units=tuple(units),
        paths=paths,
        scales=tuple(scales),
        version=version,
        name=str(entry.get("name", "") or ""),
        attrs=attrs,
    )


def _scale_of(transforms: Sequence[dict[str, Any]], ndim: int) -> tuple[float, ...]:
    scale = [1.0] * ndim
    for transform in transforms:
        if transform.get("type") != "scale":
            continue
        if "scale" not in transform:
            raise ValueError("scale transformations stored in a file ('path') are not supported")
        values = [float(v) for v in transform["scale"]]
        if len(values) != ndim:
            raise ValueError(f"scale {values} has {len(values)} values for {ndim} axes")
        scale = [a * b for a, b in zip(scale, values, strict=True)]
    return tuple(scale)


def ngff_attributes(node: Any, *, where: str) -> dict[str, Any]:
    """Attributes of a Zarr node with NGFF 0.5's ``"ome"`` entries lifted to the top level.

    NGFF 0.4 keeps ``multiscales`` etc. at the top level, 0.5 under ``"ome"``; callers see
    both the same way. Raises :class:`CorruptFileError` for unreadable attributes.
    """
    try:
        attrs = dict(node.attrs)
    except (ValueError, TypeError) as error:
        raise CorruptFileError(f"{where}: cannot read Zarr attributes ({error})") from error
    ome = attrs.get("ome")
    if isinstance(ome, dict):
        merged = dict(attrs)
        merged.update(ome)
        return merged
    return attrs


def _reference_record(root: Any, *, where: str) -> dict[str, Any] | None:
    if is_zarr_array(root):
        return None
    record = ngff_attributes(root, where=where).get(VEMKIT_ATTRS_KEY)
    if not isinstance(record, dict):
        return None
    raw = record.get("raw")
    if isinstance(raw, dict) and raw.get("mode") == "reference":
        return record
    return None


def open_zarr_node(root_path: Path, inner: str) -> Any | None:
    """Open the Zarr group or array at ``inner`` inside ``root_path`` read-only.

    Returns None when there is no node there; raises :class:`CorruptFileError` when its
    metadata cannot be parsed.
    """
    try:
        store = LocalStore(root_path, read_only=True)
        return zarr.open(store=store, mode="r", path=inner)
    except (NodeNotFoundError, FileNotFoundError, NotADirectoryError):
        return None
    except (ValueError, TypeError, KeyError) as error:  # json.JSONDecodeError is a ValueError
        where = f"{root_path}/{inner}" if inner else str(root_path)
        raise CorruptFileError(
            f"{where!r}: damaged Zarr metadata ({error}); the file was not written completely "
            "— re-create or re-download it"
        ) from error


def is_zarr_array(node: Any) -> bool:
    """Whether ``node`` is a Zarr array (rather than a group)."""
    return isinstance(node, zarr.Array)


def _is_multiscale_group(root_path: Path, inner: str) -> bool:
    try:
        node = open_zarr_node(root_path, inner)
        return (
            node is not None
            and not is_zarr_array(node)
            and "multiscales" in ngff_attributes(node, where=inner)
        )
    except CorruptFileError:
        logger.warning("%s/%s: damaged metadata, not listed as a layer", root_path, inner)
        return False


def _child_groups(group: Any) -> list[str]:
    # A dataset folder also holds plain folders (tables/, meshes/, seeds/) that zarr warns
    # about while listing; they are expected there, not a problem to report.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not recognized as a component")
        names = list(group.group_keys())
    return sorted(name for name in names if not name.startswith("."))


def _scale_spatial(multiscale: Multiscale, level: int) -> tuple[float, ...]:
    return tuple(
        s for a, s in zip(multiscale.axes, multiscale.scales[level], strict=True) if a in "zyx"
    )


def _zyx(spatial: Sequence[float]) -> tuple[float, float, float]:
    """Spatial sizes as (z, y, x); a 2D image repeats its y size for the unused z."""
    values = tuple(float(v) for v in spatial)
    if len(values) == 3:
        return values
    if len(values) == 2:
        return (values[0], values[0], values[1])
    return (values[0], values[0], values[0])


def _levels_shape(group: Any, multiscale: Multiscale, *, where: str) -> list[tuple[int, ...]]:
    """Spatial shape of every level (reads only the arrays' metadata)."""
    shapes = []
    for level, path in enumerate(multiscale.paths):
        try:
            shape = group[path].shape
        except (KeyError, LookupError, ValueError) as error:
            raise CorruptFileError(
                f"{where!r}: pyramid level {level} ({path!r}) is missing or damaged ({error}); "
                "the dataset is incomplete — re-create it"
            ) from error
        if len(shape) != len(multiscale.axes):
            raise CorruptFileError(
                f"{where!r}: level {level} has {len(shape)} axes, metadata names "
                f"{multiscale.axes!r}"
            )
        axes = multiscale.axes
        shapes.append(tuple(int(n) for a, n in zip(axes, shape, strict=True) if a in "zyx"))
    return shapes


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".ome.zarr", ".zarr"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _squeeze(array: Any, axes: str, *, where: str) -> tuple[Any, str, str]:
    """Drop singleton ``t`` and ``c`` axes lazily; refuse a real time series."""
    drop = [
        i for i, (a, n) in enumerate(zip(axes, array.shape, strict=True)) if a in "tc" and n == 1
    ]
    if "t" in axes and axes.index("t") not in drop:
        raise InvalidVolumeError(
            f"{where!r} is a time series of {array.shape[axes.index('t')]} time points; "
            "vemkit segments one volume at a time — export the time point you want"
        )
    if not drop:
        return array, axes, ""
    kept = "".join(a for i, a in enumerate(axes) if i not in drop)
    return _SqueezedArray(array, tuple(drop)), kept, "".join(axes[i] for i in drop)


class _SqueezedArray:
    """Lazy view of an array without some singleton axes (slicing reads only what is asked)."""

    def __init__(self, array: Any, drop: tuple[int, ...]) -> None:
        self.array = array
        self.drop = drop
        self.dtype = np.dtype(array.dtype)
        self.shape = tuple(n for i, n in enumerate(array.shape) if i not in drop)
        self.ndim = len(self.shape)
        chunks = getattr(array, "chunks", None)
        self.chunks = (
            tuple(c for i, c in enumerate(chunks) if i not in drop) if chunks is not None else None
        )

    def __getitem__(self, key: Any) -> Any:
        if not isinstance(key, tuple):
            key = (key,)
        if any(k is Ellipsis for k in key):
            at = next(i for i, k in enumerate(key) if k is Ellipsis)
            fill = (slice(None),) * (self.ndim - len(key) + 1)
            key = key[:at] + fill + key[at + 1 :]
        key = key + (slice(None),) * (self.ndim - len(key))
        parts = iter(key)
        full = tuple(0 if i in self.drop else next(parts) for i in range(self.array.ndim))
        return self.array[full]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        values = np.asarray(self[...])
        return values.astype(dtype) if dtype is not None else values


def _open(location: Location, level: int) -> Layer:
    return open_ome_zarr(location, level=level)


register_reader(Reader(name="ome-zarr", matches=is_zarr_location, open=_open))
