"""Datasets: one OME-Zarr store holding a raw volume and every result derived from it.

Layout (NGFF 0.4, zarr format 2)::

    DATASET.zarr/
      .zattrs            {"vemkit": {"format_version": 1, "raw": {...}, ...}}
      raw/               multiscale image (copy mode only)
      NAME/              more images (predictions, ...)
      labels/
        .zattrs          {"labels": ["nuclei", ...]}
        nuclei/          multiscale label image ("image-label" metadata)

In *reference* mode (for inputs too big to copy) ``raw/`` is absent: the root record keeps
the source location and voxel size, and :meth:`Dataset.layer` ``("raw")`` opens the source
read-only. The source is never modified in either mode. Every layer is written at a hidden
temporary sibling and renamed into place, so a crash never leaves half a layer.
"""

from __future__ import annotations

import datetime
import logging
import math
import os
import re
from pathlib import Path
from typing import Any, Literal

import zarr
from zarr.storage import LocalStore

from vemkit.errors import (
    ConfigError,
    InvalidVolumeError,
    LayerNotFoundError,
    UnknownFormatError,
    VemkitError,
    VolumeNotFoundError,
    VoxelSizeError,
)
from vemkit.geometry import VoxelSize
from vemkit.io.atomic import atomic_output
from vemkit.io.describe import describe_layer
from vemkit.io.formats.ome_zarr import (
    VEMKIT_ATTRS_KEY,
    is_zarr_array,
    list_layer_names,
    ngff_attributes,
    open_ome_zarr,
    open_zarr_node,
    read_multiscale,
)
from vemkit.io.layer import ArrayLike, Layer, LayerKind
from vemkit.io.ome_zarr import write_ome_zarr_group
from vemkit.io.registry import Location, parse_location
from vemkit.progress import Progress

__all__ = ["DATASET_FORMAT_VERSION", "Dataset", "RawMode", "is_dataset"]

logger = logging.getLogger(__name__)

#: Version of the ``vemkit`` record in a dataset's root attributes.
DATASET_FORMAT_VERSION = 1
RawMode = Literal["copy", "reference"]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class Dataset:
    """An OME-Zarr dataset: raw volume plus derived image and label layers.

    Create one with :meth:`create`, open one with :meth:`open`.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> raw = Layer(np.zeros((8, 16, 16), np.uint8), VoxelSize(50, 5, 5))
    >>> ds = Dataset.create(folder / "cell.zarr", raw)
    >>> _ = ds.add_layer("nuclei", np.ones((8, 16, 16), np.uint32), kind="labels")
    >>> ds.layer_names()
    ['raw', 'labels/nuclei']
    """

    def __init__(self, path: Path) -> None:
        self._path = path

    # --- construction ------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        raw: Layer,
        *,
        mode: RawMode = "copy",
        overwrite: bool = False,
        chunks: tuple[int, ...] | None = None,
        progress: Progress | None = None,
    ) -> Dataset:
        """Create a dataset from a raw volume without modifying the volume.

        Parameters
        ----------
        path : str or path
            The ``.zarr`` folder to create; its parent must exist.
        raw : Layer
            The input volume, e.g. from :func:`vemkit.io.registry.open_layer`.
        mode : {"copy", "reference"}
            ``"copy"`` writes raw as the image ``raw`` with a pyramid; ``"reference"`` stores
            only the source location and voxel size (``raw`` must come from a file).
        overwrite : bool
            Replace an existing dataset at ``path`` (only once the new one is complete).
        chunks : tuple of int, optional
            Storage chunks of ``raw`` (default: about 128³ voxels shaped by the voxel size).
        progress : Progress, optional
            One step per chunk written.

        Raises
        ------
        OutputExistsError
            ``path`` exists and ``overwrite`` is false.
        VoxelSizeError
            ``raw`` has no known voxel size.
        ConfigError
            Unknown mode, or reference mode for data that is not in a file.
        """
        if mode not in ("copy", "reference"):
            raise ConfigError(f"dataset mode must be 'copy' or 'reference', got {mode!r}")
        if raw.metadata.get("voxel_size_from") == "unknown":
            raise VoxelSizeError(
                f"{raw.metadata.get('source', raw.name)!r} does not record its voxel size; "
                "pass --voxel-size Z,Y,X in nm (e.g. --voxel-size 50,4.6,4.6)"
            )
        target = Path(path).expanduser().absolute()
        source = _source_location(raw)
        if source is not None and _is_within(source.path, target):
            raise ConfigError(
                f"the dataset {str(target)!r} would replace its own raw data "
                f"{str(source)!r}; choose another output path"
            )
        record: dict[str, Any] = {
            "format_version": DATASET_FORMAT_VERSION,
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "raw": {
                "mode": mode,
                "source": str(source) if source is not None else None,
                "level": int(raw.metadata.get("level", 0)),
                "voxel_size_nm": list(raw.voxel_size.as_tuple()),
                "voxel_size_from": raw.metadata.get("voxel_size_from", "user"),
                "shape": list(raw.shape),
                "dtype": str(raw.dtype),
                "axes": raw.axes,
            },
        }
        if mode == "reference" and (source is None or not source.path.exists()):
            raise ConfigError(
                "reference mode needs raw data opened from a file (open_layer); data held "
                "in memory must be copied: use mode='copy'"
            )
        with atomic_output(target, overwrite=overwrite) as tmp:
            root = zarr.open_group(LocalStore(tmp), mode="w-", zarr_format=2)
            if mode == "copy":
                write_ome_zarr_group(
                    tmp / "raw",
                    raw.data,
                    voxel_size=raw.voxel_size,
                    name="raw",
                    kind="image",
                    axes=raw.axes,
                    chunks=chunks,
                    progress=progress,
                )
            root.attrs.update({VEMKIT_ATTRS_KEY: record})
        logger.info("created dataset %s (%s raw from %s)", target, mode, source)
        return cls(target)

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Dataset:
        """Open an existing dataset (any OME-Zarr collection of images and labels).

        Raises
        ------
        VolumeNotFoundError
            ``path`` does not exist.
        UnknownFormatError
            ``path`` is no Zarr group, or is a single image rather than a dataset.
        """
        target = Path(path).expanduser().absolute()
        if not target.exists():
            raise VolumeNotFoundError(f"no such dataset: {str(target)!r}")
        root = open_zarr_node(target, "")
        if root is None or is_zarr_array(root):
            raise UnknownFormatError(
                f"{str(target)!r} is not an OME-Zarr dataset (no Zarr group there); create "
                "one with Dataset.create or `vemkit convert`"
            )
        if read_multiscale(root, where=str(target)) is not None:
            raise UnknownFormatError(
                f"{str(target)!r} is a single OME-Zarr image, not a dataset; open it with "
                "open_layer, or make a dataset from it with Dataset.create"
            )
        return cls(target)

    # --- reading -----------------------------------------------------------------------------
    @property
    def path(self) -> Path:
        """Location of the dataset folder."""
        return self._path

    @property
    def record(self) -> dict[str, Any]:
        """The ``vemkit`` record of the root attributes (empty for foreign datasets)."""
        root = open_zarr_node(self._path, "")
        if root is None:
            raise VolumeNotFoundError(f"dataset {str(self._path)!r} no longer exists")
        record = ngff_attributes(root, where=str(self._path)).get(VEMKIT_ATTRS_KEY, {})
        return record if isinstance(record, dict) else {}

    @property
    def mode(self) -> str:
        """``"copy"``, ``"reference"``, or ``"external"`` for datasets vemkit did not create."""
        raw = self.record.get("raw")
        return str(raw.get("mode", "external")) if isinstance(raw, dict) else "external"

    def layer_names(self) -> list[str]:
        """Layer names: ``"raw"`` first, other images, then ``"labels/NAME"`` entries."""
        return [n for n in list_layer_names(self._path) if n != "."]

    def layer(self, name: str, level: int = 0) -> Layer:
        """Open a layer read-only at pyramid ``level`` (0 = full resolution).

        Parameters
        ----------
        name : str
            ``"raw"``, an image name, or ``"labels/NAME"`` (a bare label name also works when
            no image has that name).

        Raises
        ------
        LayerNotFoundError
            No such layer or level; the message lists the layers that exist.
        """
        names = self.layer_names()
        key = name.strip("/")
        if key not in names and f"labels/{key}" in names:
            key = f"labels/{key}"
        if key not in names:
            raise LayerNotFoundError(
                f"dataset {str(self._path)!r} has no layer {name!r}; it has: "
                f"{', '.join(names) or 'no layers'}"
            )
        return open_ome_zarr(Location(self._path, key), level=level)

    def add_layer(
        self,
        name: str,
        data: ArrayLike | Layer,
        *,
        kind: LayerKind,
        voxel_size: VoxelSize | str | float | tuple[float, float, float] | None = None,
        overwrite: bool = False,
        progress: Progress | None = None,
    ) -> Layer:
        """Write a new image or label layer (with pyramid) into the dataset, atomically.

        Parameters
        ----------
        name : str
            Layer name (letters, digits, ``_``, ``-``, ``.``); label images go to
            ``labels/NAME`` and are listed in ``labels/.zattrs``.
        data : (Z, Y, X) array-like or Layer
            NumPy, Zarr or Dask data (written chunk by chunk), or a Layer.
        kind : {"image", "labels"}
            Intensity image or integer labels.
        voxel_size : VoxelSize, str, float or (z, y, x), optional
            Voxel size of ``data`` in nm. Default: the Layer's own when ``data`` is a Layer,
            else raw's. The layer must cover the same physical extent as raw (to within one
            of its voxels), so a layer predicted at a coarser level needs its voxel size.
        overwrite : bool
            Replace an existing layer of that name (only once the new one is complete).
        progress : Progress, optional
            One step per chunk written.

        Returns
        -------
        Layer
            The written layer at level 0, opened read-only.

        Raises
        ------
        OutputExistsError
            The layer exists and ``overwrite`` is false.
        ConfigError
            A bad name (``raw`` is reserved for the input).
        InvalidVolumeError
            The data does not cover the raw volume's extent.
        """
        if kind not in ("image", "labels"):
            raise ConfigError(f"layer kind must be 'image' or 'labels', got {kind!r}")
        leaf = _check_name(name, kind)
        raw = self.layer("raw") if "raw" in self.layer_names() else None
        if isinstance(data, Layer):
            axes = data.axes
            size = VoxelSize.coerce(voxel_size) if voxel_size is not None else data.voxel_size
            array: ArrayLike = data.data
        else:
            if not 2 <= len(data.shape) <= 4:
                raise InvalidVolumeError(
                    f"layer {name!r} has shape {tuple(data.shape)}; give (Z, Y, X) or "
                    "(C, Z, Y, X) data"
                )
            axes = "czyx"[-len(data.shape) :]
            if voxel_size is not None:
                size = VoxelSize.coerce(voxel_size)
            elif raw is not None:
                size = raw.voxel_size
            else:
                raise VoxelSizeError(
                    f"dataset {str(self._path)!r} has no raw layer to take the voxel size "
                    f"from; pass voxel_size= for layer {name!r}"
                )
            array = data
        if raw is not None:
            _check_extent(array.shape, axes, size, raw, name=name)
        is_labels = kind == "labels"
        if is_labels:
            labels_group = zarr.open_group(
                LocalStore(self._path / "labels"), mode="a", zarr_format=2
            )
            if "labels" not in labels_group.attrs:
                labels_group.attrs.update({"labels": []})
            target = self._path / "labels" / leaf
        else:
            target = self._path / leaf
        has_raw_group = (self._path / "raw").is_dir()
        with atomic_output(target, overwrite=overwrite) as tmp:
            write_ome_zarr_group(
                tmp,
                array,
                voxel_size=size,
                name=leaf,
                kind=kind,
                axes=axes,
                progress=progress,
                label_source="../../raw" if is_labels and has_raw_group else None,
            )
        if is_labels:
            existing = labels_group.attrs.get("labels", [])
            listed = [str(n) for n in existing] if isinstance(existing, list) else []
            if leaf not in listed:
                labels_group.attrs.update({"labels": [*listed, leaf]})
        logger.info("wrote %s layer %s to %s", kind, leaf, target)
        return self.layer(f"labels/{leaf}" if is_labels else leaf)

    def create_layer(
        self,
        name: str,
        *,
        shape: tuple[int, ...],
        dtype: Any,
        kind: LayerKind,
        voxel_size: VoxelSize | str | float | tuple[float, float, float] | None = None,
        chunks: tuple[int, ...] | None = None,
        resume: bool = False,
    ) -> Layer:
        """Create an empty layer to be filled block by block (or reopen it to resume).

        Unlike :meth:`add_layer` this is not atomic: the layer exists, holding zeros, while
        a blockwise run (:func:`vemkit.blockwise.map_layer`) fills level 0; the run then
        builds the other pyramid levels. Its finished blocks are recorded inside the
        layer, so a crashed run resumes where it stopped.

        Parameters
        ----------
        name : str
            Layer name; label layers go to ``labels/NAME``.
        shape : tuple of int
            Level-0 shape ``(Z, Y, X)`` or ``(C, Z, Y, X)``.
        dtype : dtype-like
            Data type (unsigned integers for labels).
        kind : {"image", "labels"}
            Intensity image or labels.
        voxel_size : optional
            Voxel size in nm (default: raw's). The layer must cover raw's extent.
        chunks : tuple of int, optional
            Storage chunks; blockwise block shapes must be multiples of them.
        resume : bool
            Reopen an existing layer of that name (writable) instead of refusing it.

        Returns
        -------
        Layer
            Level 0, writable.

        Raises
        ------
        OutputExistsError
            The layer exists and ``resume`` is false.
        """
        from vemkit.io.ome_zarr import create_ome_zarr, open_ome_zarr_writable

        if kind not in ("image", "labels"):
            raise ConfigError(f"layer kind must be 'image' or 'labels', got {kind!r}")
        leaf = _check_name(name, kind)
        raw = self.layer("raw") if "raw" in self.layer_names() else None
        if voxel_size is not None:
            size = VoxelSize.coerce(voxel_size)
        elif raw is not None:
            size = raw.voxel_size
        else:
            raise VoxelSizeError(f"pass voxel_size= for layer {name!r}")
        axes = "czyx"[-len(shape) :]
        if raw is not None:
            _check_extent(tuple(shape), axes, size, raw, name=name)
        is_labels = kind == "labels"
        target = self._path / "labels" / leaf if is_labels else self._path / leaf
        if resume and target.exists():
            return open_ome_zarr_writable(target)
        if is_labels:
            labels_group = zarr.open_group(
                LocalStore(self._path / "labels"), mode="a", zarr_format=2
            )
            listed = labels_group.attrs.get("labels", [])
            listed = [str(n) for n in listed] if isinstance(listed, list) else []
            labels_group.attrs.update({"labels": listed})
        has_raw_group = (self._path / "raw").is_dir()
        layer = create_ome_zarr(
            target,
            shape=shape,
            dtype=dtype,
            voxel_size=size,
            name=leaf,
            kind=kind,
            axes=axes,
            chunks=chunks,
            label_source="../../raw" if is_labels and has_raw_group else None,
        )
        if is_labels and leaf not in listed:
            labels_group.attrs.update({"labels": [*listed, leaf]})
        return layer

    def info(self, *, stats: bool = False) -> dict[str, Any]:
        """Summary for ``vemkit info``: mode, source, provenance and every layer's facts.

        Parameters
        ----------
        stats : bool
            Also compute value ranges / label counts (reads the data).

        Returns
        -------
        dict
            JSON-serialisable. A layer that cannot be opened (e.g. a reference whose source
            has moved) gets an ``"error"`` entry instead of its facts.
        """
        record = self.record
        raw_record = record.get("raw", {}) if isinstance(record.get("raw"), dict) else {}
        layers = []
        for name in self.layer_names():
            try:
                facts = describe_layer(self.layer(name), stats=stats)
            except VemkitError as error:
                layers.append({"name": name, "error": str(error)})
                continue
            layers.append({**facts, "name": name})
        return {
            "path": str(self._path),
            "mode": self.mode,
            "source": raw_record.get("source"),
            "voxel_size_nm": raw_record.get("voxel_size_nm"),
            "created": record.get("created"),
            "provenance": record.get("provenance", []),
            "layers": layers,
        }

    def add_provenance(self, entry: dict[str, Any]) -> None:
        """Append a JSON-ready record of a step that wrote to this dataset."""
        import vemkit

        root = zarr.open_group(LocalStore(self._path), mode="r+", zarr_format=2)
        record = dict(root.attrs.get(VEMKIT_ATTRS_KEY, {}))
        stamped = {
            "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "vemkit_version": vemkit.__version__,
            **entry,
        }
        record["provenance"] = [*record.get("provenance", []), stamped]
        root.attrs.update({VEMKIT_ATTRS_KEY: record})

    def __repr__(self) -> str:
        return f"Dataset({str(self._path)!r}, layers={self.layer_names()})"


# --- helpers ---------------------------------------------------------------------------------
def _source_location(raw: Layer) -> Location | None:
    """Where ``raw`` was read from, as an absolute location (None for data built in memory)."""
    source = raw.metadata.get("source")
    if not source:
        return None
    location = parse_location(str(source))
    return Location(location.path.expanduser().absolute(), location.inner)


def _is_within(path: Path, folder: Path) -> bool:
    path, folder = path.expanduser().absolute(), folder.expanduser().absolute()
    return path == folder or folder in path.parents


def _check_name(name: str, kind: str) -> str:
    leaf = name.strip().strip("/")
    if leaf.startswith("labels/"):
        if kind != "labels":
            raise ConfigError(f"layer {name!r} lies under labels/ but kind is {kind!r}")
        leaf = leaf[len("labels/") :]
    if leaf == "raw":
        raise ConfigError(
            "'raw' is the dataset's input and is never replaced; give the new layer another "
            "name, or create a new dataset"
        )
    if leaf == "labels" or not _NAME.fullmatch(leaf):
        raise ConfigError(
            f"layer name {name!r} is not allowed; use letters, digits, '_', '-' and '.', "
            "starting with a letter or digit (e.g. 'nuclei')"
        )
    return leaf


def _check_extent(
    shape: tuple[int, ...], axes: str, size: VoxelSize, raw: Layer, *, name: str
) -> None:
    """Refuse a layer that does not cover raw's physical extent (to within one voxel)."""
    spatial = "".join(a for a in axes if a in "zyx")
    if spatial != raw.spatial_axes:
        raise InvalidVolumeError(
            f"layer {name!r} has spatial axes {spatial!r} but raw has {raw.spatial_axes!r}"
        )
    layer_shape = [n for a, n in zip(axes, shape, strict=True) if a in "zyx"]
    for axis, n, raw_n in zip(spatial, layer_shape, raw.spatial_shape, strict=True):
        step, raw_step = getattr(size, axis), getattr(raw.voxel_size, axis)
        extent, raw_extent = n * step, raw_n * raw_step
        if not math.isclose(extent, raw_extent) and abs(extent - raw_extent) >= step - 1e-6:
            raise InvalidVolumeError(
                f"layer {name!r} spans {extent:g} nm along {axis} ({n} voxels of {step:g} nm) "
                f"but raw spans {raw_extent:g} nm ({raw_n} × {raw_step:g} nm); give the "
                "voxel_size the data was computed at, or data of raw's shape"
            )


def is_dataset(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is an OME-Zarr dataset (a group of layers, not a single image)."""
    try:
        Dataset.open(path)
    except (UnknownFormatError, VolumeNotFoundError):
        return False
    return True
