"""Write OME-Zarr (NGFF 0.4, zarr format 2) multiscale images and label images.

One call writes one multiscale group: level ``0`` at full resolution plus an
anisotropy-aware pyramid (see :mod:`vemkit.io.pyramid`), the ``multiscales`` metadata with
axis units in nanometres, and for label images the ``image-label`` metadata.

Input of any size is written chunk by chunk through Dask: NumPy and Zarr inputs are wrapped
with :func:`dask.array.from_array`, Dask inputs are rechunked to the storage chunks, and each
pyramid level is computed from the level below *as written on disk*, so memory stays bounded
by a few chunks per worker thread. The whole group is built at a temporary sibling path and
renamed into place at the end (:func:`vemkit.io.atomic.atomic_output`): an error leaves
nothing behind. Dask's current scheduler is used (threads unless the caller configured
another, e.g. ``dask.config.set(scheduler="synchronous")``).
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import dask
import dask.array as da
import dask.local
import dask.threaded
import numcodecs
import numpy as np
import zarr
from zarr.storage import LocalStore

from vemkit import __version__
from vemkit.errors import ConfigError, CorruptFileError, InvalidVolumeError
from vemkit.geometry import VoxelSize
from vemkit.io.atomic import atomic_output, check_output_path, remove_path
from vemkit.io.formats.ome_zarr import (
    ngff_attributes,
    open_ome_zarr,
    open_zarr_node,
    read_multiscale,
)
from vemkit.io.layer import ArrayLike, Layer, LayerKind
from vemkit.io.pyramid import downsample_dask, downsample_factors, downsampled_shape
from vemkit.progress import NullProgress, Progress

__all__ = [
    "CHUNK_VOXELS",
    "NGFF_VERSION",
    "Compressor",
    "build_pyramid",
    "create_ome_zarr",
    "default_chunks",
    "open_ome_zarr_writable",
    "write_ome_zarr",
    "write_ome_zarr_group",
]

logger = logging.getLogger(__name__)

#: NGFF version written (zarr format 2).
NGFF_VERSION = "0.4"
#: Default number of voxels per chunk (128³), spread over the axes by physical size.
CHUNK_VOXELS = 128**3

Compressor = Literal["zstd", "blosc", "gzip"] | None
_AXIS_TYPES = {"c": "channel", "t": "time", "z": "space", "y": "space", "x": "space"}


def write_ome_zarr(
    path: str | os.PathLike[str],
    data: ArrayLike | Layer,
    *,
    voxel_size: VoxelSize | str | float | Sequence[float],
    name: str,
    kind: LayerKind = "image",
    axes: str = "zyx",
    chunks: Sequence[int] | None = None,
    n_levels: int | None = None,
    compressor: Compressor = "zstd",
    progress: Progress | None = None,
    overwrite: bool = False,
) -> Layer:
    """Write an array as one OME-Zarr multiscale image (or label image), atomically.

    Parameters
    ----------
    path : str or path
        The group to create, e.g. ``out.zarr`` or ``dataset.zarr/labels/nuclei``; its parent
        folder must exist.
    data : (Z, Y, X) or (C, Z, Y, X) array-like
        NumPy, Zarr, Dask (written block by block, never loaded whole) or any array with
        ``shape``, ``dtype`` and slicing (a Layer's ``data`` is used when a Layer is given).
        Label images need an integer dtype.
    voxel_size : VoxelSize, str, float or (z, y, x)
        Voxel size of ``data`` in nm.
    name : str
        Name stored in the ``multiscales`` metadata.
    kind : {"image", "labels"}
        Images get a mean pyramid, labels a mode pyramid and ``image-label`` metadata.
    axes : str
        Axis names of ``data``: ``"zyx"``, ``"czyx"`` or ``"yx"``.
    chunks : sequence of int, optional
        Storage chunk shape (one value per axis), capped to each level's shape. Default:
        :func:`default_chunks` per level (about 128³ voxels, thin along coarse axes).
    n_levels : int, optional
        Number of pyramid levels including full resolution (1 = no pyramid). Default: down
        to at most 64 voxels along the largest axis.
    compressor : {"zstd", "blosc", "gzip", None}
        ``"zstd"``: Zstandard level 3; ``"blosc"``: Blosc-Zstd level 5 with byte shuffle;
        ``"gzip"``: gzip level 5; None: uncompressed.
    progress : Progress, optional
        Receives one step per chunk written, over all levels.
    overwrite : bool
        Replace an existing ``path`` (only once the new output is complete).

    Returns
    -------
    Layer
        Level 0 of the written image, opened read-only and lazily.

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``overwrite`` is false.
    InvalidVolumeError
        ``data`` is empty, its shape does not match ``axes``, or labels are not integers.
    """
    with atomic_output(path, overwrite=overwrite) as tmp:
        write_ome_zarr_group(
            tmp,
            data,
            voxel_size=voxel_size,
            name=name,
            kind=kind,
            axes=axes,
            chunks=chunks,
            n_levels=n_levels,
            compressor=compressor,
            progress=progress,
        )
    return open_ome_zarr(Path(path).expanduser().absolute())


def write_ome_zarr_group(
    path: str | os.PathLike[str],
    data: ArrayLike | Layer,
    *,
    voxel_size: VoxelSize | str | float | Sequence[float],
    name: str,
    kind: LayerKind = "image",
    axes: str = "zyx",
    chunks: Sequence[int] | None = None,
    n_levels: int | None = None,
    compressor: Compressor = "zstd",
    progress: Progress | None = None,
    label_source: str | None = None,
) -> None:
    """Write the multiscale group at ``path`` in place (not atomic; callers wrap it).

    Same parameters as :func:`write_ome_zarr`, plus ``label_source``: the relative path from
    a label image to its image, stored as ``image-label.source.image`` (e.g. ``"../../raw"``).
    ``path`` must not exist yet.
    """
    if isinstance(data, Layer):  # its array; axes and voxel size are still the caller's
        data = data.data
    size = VoxelSize.coerce(voxel_size)
    axes = _check_axes(axes, data)
    _check_data(data, axes=axes, kind=kind, name=name)
    shape = tuple(int(n) for n in data.shape)
    spatial = [i for i, a in enumerate(axes) if a in "zyx"]
    spatial_sizes = _spatial_voxel_size(size, axes)
    spatial_factors = downsample_factors(
        spatial_sizes, [shape[i] for i in spatial], n_levels=n_levels
    )
    level_factors = [_expand(f, axes) for f in spatial_factors]
    level_shapes = [shape]
    for factors in level_factors:
        level_shapes.append(downsampled_shape(level_shapes[-1], factors))
    level_scales = [tuple(1.0 for _ in axes)]
    for factors in level_factors:
        level_scales.append(tuple(s * f for s, f in zip(level_scales[-1], factors, strict=True)))
    level_sizes = [
        [s * scale[i] for s, i in zip(spatial_sizes, spatial, strict=True)]
        for scale in level_scales
    ]
    level_chunks = [
        _user_chunks(chunks, level_shape, axes)
        if chunks is not None
        else default_chunks(level_shape, sizes, axes=axes)
        for level_shape, sizes in zip(level_shapes, level_sizes, strict=True)
    ]
    dtype = np.dtype(data.dtype)
    codec = _codec(compressor)

    group = zarr.open_group(LocalStore(Path(path)), mode="w-", zarr_format=2)
    arrays = [
        group.create_array(
            str(level),
            shape=level_shape,
            dtype=dtype,
            chunks=level_chunk,
            compressors=codec,
            fill_value=0,
            chunk_key_encoding={"name": "v2", "separator": "/"},
        )
        for level, (level_shape, level_chunk) in enumerate(
            zip(level_shapes, level_chunks, strict=True)
        )
    ]
    total = sum(math.prod(_grid(s, c)) for s, c in zip(level_shapes, level_chunks, strict=True))
    reporter = progress if progress is not None else NullProgress()
    reporter.start(total, f"writing {name}")
    try:
        source = (
            data
            if isinstance(data, da.Array)
            else da.from_array(data, chunks=level_chunks[0], asarray=True, lock=False, name=False)
        )
        _store(source.rechunk(level_chunks[0]), arrays[0], reporter)
        for level, factors in enumerate(level_factors, start=1):
            below = arrays[level - 1]
            lazy = da.from_array(below, chunks=below.chunks, asarray=True, lock=False, name=False)
            reduced = downsample_dask(lazy, factors, kind=kind)
            _store(reduced.rechunk(level_chunks[level]), arrays[level], reporter)
            logger.debug("wrote %s level %d, shape %s", name, level, level_shapes[level])
    finally:
        reporter.finish()

    group.attrs.update(
        _ngff_attrs(
            name=name,
            axes=axes,
            spatial_sizes=spatial_sizes,
            level_scales=level_scales,
            kind=kind,
            label_source=label_source,
        )
    )


def create_ome_zarr(
    path: str | os.PathLike[str],
    *,
    shape: Sequence[int],
    dtype: Any,
    voxel_size: VoxelSize | str | float | Sequence[float],
    name: str | None = None,
    kind: LayerKind = "image",
    axes: str = "zyx",
    chunks: Sequence[int] | None = None,
    n_levels: int | None = None,
    compressor: Compressor = "zstd",
    label_source: str | None = None,
    overwrite: bool = False,
) -> Layer:
    """Create an empty OME-Zarr multiscale group to be filled block by block.

    Every pyramid level is allocated (filled with 0, no chunk stored yet) and the NGFF
    ``multiscales`` (and, for labels, ``image-label``) metadata is written at once, with the
    same level shapes, chunks and scales as :func:`write_ome_zarr` would use. Fill level 0
    (e.g. with :func:`vemkit.blockwise.map_layer`), then compute the other levels with
    :func:`build_pyramid`. Unlike :func:`write_ome_zarr` this is not atomic: the group exists
    (holding zeros) while it is being filled.

    Parameters
    ----------
    path : str or path
        The group to create, e.g. ``out.zarr`` or ``dataset.zarr/labels/nuclei``; its parent
        folder must exist.
    shape : sequence of int
        Shape of level 0, one value per axis of ``axes``.
    dtype : dtype-like
        Data type (an integer type for labels).
    voxel_size : VoxelSize, str, float or (z, y, x)
        Voxel size of level 0 in nm.
    name : str, optional
        Name stored in the metadata (default: the folder name without ``.zarr``).
    kind : {"image", "labels"}
        Mean (image) or mode (labels) pyramid; labels get ``image-label`` metadata.
    axes : str
        ``"zyx"``, ``"czyx"``, ``"yx"`` or ``"cyx"``.
    chunks : sequence of int, optional
        Storage chunks, one value per axis (default: :func:`default_chunks` per level).
        Blockwise writers need block shapes that are multiples of the level-0 chunks.
    n_levels : int, optional
        Number of levels including level 0 (default: down to at most 64 voxels).
    compressor : {"zstd", "blosc", "gzip", None}
        See :func:`write_ome_zarr`.
    label_source : str, optional
        Relative path from a label image to its image (``image-label.source.image``).
    overwrite : bool
        Remove an existing ``path`` first (at once, not after success).

    Returns
    -------
    Layer
        Level 0, writable (``read_only=False``), backed by the Zarr array.

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``overwrite`` is false.
    InvalidVolumeError
        ``shape`` is empty or does not match ``axes``, or labels are not integers.
    """
    target = check_output_path(path, overwrite=overwrite)
    axes = axes.lower()
    planned = _ShapeOnly(tuple(int(n) for n in shape), np.dtype(dtype))
    _check_axes(axes, planned)
    if any(n <= 0 for n in planned.shape):
        raise InvalidVolumeError(f"cannot create an image of shape {planned.shape}")
    _check_data(planned, axes=axes, kind=kind, name=name or target.name)
    plan = _plan_levels(
        planned.shape,
        VoxelSize.coerce(voxel_size),
        axes,
        chunks=chunks,
        n_levels=n_levels,
    )
    if target.exists():
        remove_path(target)
    group = zarr.open_group(LocalStore(target), mode="w-", zarr_format=2)
    codec = _codec(compressor)
    for level, (level_shape, level_chunk) in enumerate(zip(plan.shapes, plan.chunks, strict=True)):
        group.create_array(
            str(level),
            shape=level_shape,
            dtype=np.dtype(dtype),
            chunks=level_chunk,
            compressors=codec,
            fill_value=0,
            chunk_key_encoding={"name": "v2", "separator": "/"},
        )
    stem = target.name
    for suffix in (".ome.zarr", ".zarr"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    group.attrs.update(
        _ngff_attrs(
            name=name or stem,
            axes=axes,
            spatial_sizes=plan.spatial_sizes,
            level_scales=plan.scales,
            kind=kind,
            label_source=label_source,
        )
    )
    logger.debug("created empty %s %s, levels %s", kind, target, plan.shapes)
    return open_ome_zarr_writable(target)


def open_ome_zarr_writable(path: str | os.PathLike[str], *, level: int = 0) -> Layer:
    """Open one level of an existing OME-Zarr image for writing (``read_only=False``).

    Only for outputs vemkit is producing (e.g. a group made by :func:`create_ome_zarr` and
    filled by a resumed blockwise run); inputs are always opened with
    :func:`vemkit.io.formats.ome_zarr.open_ome_zarr`, read-only.

    Raises
    ------
    VolumeNotFoundError, LayerNotFoundError, CorruptFileError
        As :func:`~vemkit.io.formats.ome_zarr.open_ome_zarr`.
    ConfigError
        The level has singleton axes that vemkit hides when reading (write it whole instead).
    """
    layer = open_ome_zarr(path, level=level)
    if layer.metadata.get("squeezed_axes"):
        raise ConfigError(
            f"{layer.metadata.get('source')!r} has singleton axes "
            f"({layer.metadata['squeezed_axes']!r}) and cannot be written block by block; "
            "create the output with create_ome_zarr"
        )
    root = Path(str(layer.metadata["path"]))
    inner = str(layer.metadata.get("inner", ""))
    node = open_zarr_node(root, inner)
    multiscale = read_multiscale(node, where=str(layer.metadata.get("source")))
    if multiscale is None:
        raise ConfigError(f"{str(path)!r} is not an OME-Zarr multiscale image")
    array_path = "/".join(p for p in (inner, multiscale.paths[level]) if p)
    array = zarr.open_array(store=LocalStore(root), path=array_path, mode="r+")
    return layer.with_data(array, read_only=False)


def build_pyramid(path: str | os.PathLike[str], *, progress: Progress | None = None) -> None:
    """(Re)compute pyramid levels 1, 2, ... of an OME-Zarr image from its level 0 on disk.

    Each level is reduced from the level below as stored (mean for images, mode for label
    images, see :mod:`vemkit.io.pyramid`), chunk by chunk through Dask, so memory stays
    bounded by a few chunks per worker. The levels' shapes and downsampling factors come
    from the group's metadata (e.g. as written by :func:`create_ome_zarr`). Dask's current
    scheduler is used, as in :func:`write_ome_zarr`.

    Parameters
    ----------
    path : str or path
        The multiscale group (e.g. ``out.zarr`` or ``dataset.zarr/labels/nuclei``).
    progress : Progress, optional
        One step per chunk written, over all levels.

    Raises
    ------
    CorruptFileError
        Level shapes do not follow from integer downsampling factors.
    """
    first = open_ome_zarr(path)
    root = Path(str(first.metadata["path"]))
    inner = str(first.metadata.get("inner", ""))
    node = open_zarr_node(root, inner)
    where = str(first.metadata.get("source"))
    multiscale = read_multiscale(node, where=where)
    if multiscale is None:  # pragma: no cover - open_ome_zarr already checked
        raise ConfigError(f"{str(path)!r} is not an OME-Zarr multiscale image")
    kind: LayerKind = "labels" if "image-label" in ngff_attributes(node, where=where) else "image"
    arrays = [
        zarr.open_array(
            store=LocalStore(root), path="/".join(p for p in (inner, level) if p), mode="r+"
        )
        for level in multiscale.paths
    ]
    total = sum(math.prod(_grid(a.shape, a.chunks)) for a in arrays[1:])
    reporter = progress if progress is not None else NullProgress()
    reporter.start(total, f"building pyramid of {first.name}")
    try:
        for level in range(1, len(arrays)):
            below, array = arrays[level - 1], arrays[level]
            factors = tuple(
                max(1, round(b / a))
                for a, b in zip(multiscale.scales[level - 1], multiscale.scales[level], strict=True)
            )
            if downsampled_shape(below.shape, factors) != tuple(array.shape):
                raise CorruptFileError(
                    f"{where!r}: level {level} has shape {tuple(array.shape)}, which is not "
                    f"level {level - 1} ({tuple(below.shape)}) reduced by {factors}; "
                    "re-create the image"
                )
            lazy = da.from_array(below, chunks=below.chunks, asarray=True, lock=False, name=False)
            reduced = downsample_dask(lazy, factors, kind=kind)
            _store(reduced.rechunk(array.chunks), array, reporter)
    finally:
        reporter.finish()


def default_chunks(
    shape: Sequence[int],
    voxel_size: VoxelSize | Sequence[float],
    *,
    axes: str = "zyx",
    target_voxels: int = CHUNK_VOXELS,
) -> tuple[int, ...]:
    """Chunk shape of about ``target_voxels`` voxels covering a near-cubic physical region.

    Each spatial axis gets a power-of-two length proportional to ``1 / voxel size``, so a
    50 × 4.6 × 4.6 nm volume gets thin, wide chunks (32 × 256 × 256); lengths are capped to
    ``shape`` and channels get chunks of 1.

    Parameters
    ----------
    shape : sequence of int
        Array shape (all axes).
    voxel_size : VoxelSize or sequence of float
        Voxel size in nm of the spatial axes (z, y, x; or y, x for a 2D image).
    axes : str
        Axis names of ``shape``.
    target_voxels : int
        Wanted voxels per chunk of a volume; a 2D image gets chunks of the same edge length
        (128² voxels by default).

    Examples
    --------
    >>> default_chunks((1000, 4000, 4000), (50.0, 4.6, 4.6))
    (32, 256, 256)
    >>> default_chunks((20, 64, 64), (8.0, 8.0, 8.0))
    (20, 64, 64)
    """
    spatial_axes = [i for i, a in enumerate(axes) if a in "zyx"]
    sizes = list(voxel_size.as_tuple() if isinstance(voxel_size, VoxelSize) else voxel_size)
    if len(sizes) == 3 and len(spatial_axes) == 2:
        sizes = sizes[1:]
    if len(sizes) != len(spatial_axes):
        raise ValueError(f"voxel size {sizes} does not match the spatial axes of {axes!r}")
    if len(shape) != len(axes):
        raise ValueError(f"shape {tuple(shape)} does not match axes {axes!r}")
    edge = round(target_voxels ** (1 / 3))
    d = len(spatial_axes)
    # physical edge L such that prod(L / s) = edge ** d
    length_nm = (edge**d * math.prod(sizes)) ** (1 / d)
    result = [1] * len(shape)
    for i, s in zip(spatial_axes, sizes, strict=True):
        voxels = max(length_nm / s, 1.0)
        power = 2 ** round(math.log2(voxels))
        result[i] = max(1, min(int(power), int(shape[i])))
    return tuple(result)


# --- helpers ---------------------------------------------------------------------------------
class _ProgressTarget:
    """A store target for :func:`dask.array.store` that reports every chunk written."""

    def __init__(self, array: Any, progress: Progress) -> None:
        self.array = array
        self.shape = array.shape
        self.dtype = array.dtype
        self.ndim = len(array.shape)
        self._progress = progress
        self._lock = threading.Lock()  # Progress implementations need not be thread-safe

    def __setitem__(self, key: Any, value: Any) -> None:
        self.array[key] = value
        with self._lock:
            self._progress.advance(1)


def _store(source: Any, array: Any, progress: Progress) -> None:
    # Every Dask block is exactly one storage chunk, so no two writers share a chunk: no lock.
    if _is_local_scheduler():
        target: Any = _ProgressTarget(array, progress)  # duck-typed store target
        da.store(source, target, lock=False, compute=True)
        return
    # Distributed or multiprocessing workers cannot call back into a local Progress object:
    # store plainly and report the level's chunks once it is done.
    da.store(source, array, lock=False, compute=True)
    progress.advance(math.prod(len(c) for c in source.chunks))


def _is_local_scheduler() -> bool:
    """Whether Dask runs tasks in this process (threads or synchronous)."""
    scheduler = dask.base.get_scheduler(collections=None)
    return scheduler is None or scheduler in (dask.threaded.get, dask.local.get_sync)


class _ShapeOnly:
    """Shape and dtype of an array that does not exist yet (for the input checks)."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> None:
        self.shape = shape
        self.dtype = dtype

    def __getitem__(self, key: Any) -> Any:  # pragma: no cover - never read
        raise TypeError("no data")


class _LevelPlan:
    """Shapes, chunks and scales of every level of a multiscale image to be written."""

    def __init__(
        self,
        shapes: list[tuple[int, ...]],
        chunks: list[tuple[int, ...]],
        scales: list[tuple[float, ...]],
        spatial_sizes: list[float],
    ) -> None:
        self.shapes = shapes
        self.chunks = chunks
        self.scales = scales
        self.spatial_sizes = spatial_sizes


def _plan_levels(
    shape: tuple[int, ...],
    size: VoxelSize,
    axes: str,
    *,
    chunks: Sequence[int] | None,
    n_levels: int | None,
) -> _LevelPlan:
    """Level shapes, chunks and scales exactly as :func:`write_ome_zarr_group` lays them out."""
    spatial = [i for i, a in enumerate(axes) if a in "zyx"]
    spatial_sizes = _spatial_voxel_size(size, axes)
    spatial_factors = downsample_factors(
        spatial_sizes, [shape[i] for i in spatial], n_levels=n_levels
    )
    level_factors = [_expand(f, axes) for f in spatial_factors]
    shapes = [shape]
    for factors in level_factors:
        shapes.append(downsampled_shape(shapes[-1], factors))
    scales: list[tuple[float, ...]] = [tuple(1.0 for _ in axes)]
    for factors in level_factors:
        scales.append(tuple(s * f for s, f in zip(scales[-1], factors, strict=True)))
    level_sizes = [
        [s * scale[i] for s, i in zip(spatial_sizes, spatial, strict=True)] for scale in scales
    ]
    level_chunks = [
        _user_chunks(chunks, level_shape, axes)
        if chunks is not None
        else default_chunks(level_shape, sizes, axes=axes)
        for level_shape, sizes in zip(shapes, level_sizes, strict=True)
    ]
    return _LevelPlan(shapes, level_chunks, scales, spatial_sizes)


def _check_axes(axes: str, data: ArrayLike) -> str:
    axes = axes.lower()
    if axes not in ("zyx", "czyx", "yx", "cyx"):
        raise ConfigError(f"axes must be 'zyx', 'czyx', 'yx' or 'cyx', got {axes!r}")
    if len(axes) != len(data.shape):
        raise InvalidVolumeError(
            f"data of shape {tuple(data.shape)} does not match axes {axes!r}; give axes that "
            "name every dimension (e.g. 'zyx' for a volume)"
        )
    return axes


def _check_data(data: ArrayLike, *, axes: str, kind: str, name: str) -> None:
    if kind not in ("image", "labels"):
        raise ConfigError(f"kind must be 'image' or 'labels', got {kind!r}")
    if any(int(n) == 0 for n in data.shape):
        raise InvalidVolumeError(f"{name!r} is empty (shape {tuple(data.shape)}); nothing to write")
    dtype = np.dtype(data.dtype)
    if kind == "labels" and not (np.issubdtype(dtype, np.integer) or dtype == np.bool_):
        raise InvalidVolumeError(
            f"label image {name!r} has dtype {dtype}; labels must be integers (e.g. uint32) — "
            "convert them, or write the data as kind='image'"
        )
    if dtype.kind not in "biuf":
        raise InvalidVolumeError(
            f"{name!r} has dtype {dtype}; OME-Zarr images must be boolean, integer or float"
        )


def _spatial_voxel_size(size: VoxelSize, axes: str) -> list[float]:
    spatial = "".join(a for a in axes if a in "zyx")
    return [getattr(size, a) for a in spatial]


def _expand(spatial_factors: Sequence[int], axes: str) -> tuple[int, ...]:
    it = iter(spatial_factors)
    return tuple(next(it) if a in "zyx" else 1 for a in axes)


def _user_chunks(chunks: Sequence[int], shape: Sequence[int], axes: str) -> tuple[int, ...]:
    values = [int(c) for c in chunks]
    if len(values) != len(axes):
        raise ConfigError(f"chunks {tuple(values)} need one value per axis of {axes!r}")
    if any(c < 1 for c in values):
        raise ConfigError(f"chunks must be positive, got {tuple(values)}")
    return tuple(min(c, int(n)) for c, n in zip(values, shape, strict=True))


def _grid(shape: Sequence[int], chunks: Sequence[int]) -> tuple[int, ...]:
    return tuple(math.ceil(n / c) for n, c in zip(shape, chunks, strict=True))


def _codec(compressor: Compressor) -> Any:
    if compressor is None or compressor == "none":
        return None
    if compressor == "zstd":
        return numcodecs.Zstd(level=3)
    if compressor == "blosc":
        return numcodecs.Blosc(cname="zstd", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE)
    if compressor == "gzip":
        return numcodecs.GZip(level=5)
    raise ConfigError(f"compressor must be 'zstd', 'blosc', 'gzip' or None, got {compressor!r}")


def _ngff_attrs(
    *,
    name: str,
    axes: str,
    spatial_sizes: Sequence[float],
    level_scales: Sequence[Sequence[float]],
    kind: str,
    label_source: str | None,
) -> dict[str, Any]:
    sizes = iter(spatial_sizes)
    base = [next(sizes) if a in "zyx" else 1.0 for a in axes]
    datasets = []
    for level, scale in enumerate(level_scales):
        physical = [float(b * s) for b, s in zip(base, scale, strict=True)]
        transforms: list[dict[str, Any]] = [{"type": "scale", "scale": physical}]
        if level > 0:
            # mean/mode blocks are centred half a block beyond the first full-resolution voxel
            shift = [float((s - 1) * b / 2) for b, s in zip(base, scale, strict=True)]
            transforms.append({"type": "translation", "translation": shift})
        datasets.append({"path": str(level), "coordinateTransformations": transforms})
    axis_entries = []
    for a in axes:
        entry = {"name": a, "type": _AXIS_TYPES[a]}
        if a in "zyx":
            entry["unit"] = "nanometer"
        axis_entries.append(entry)
    reducer = "downsample_image" if kind == "image" else "downsample_labels"
    attrs: dict[str, Any] = {
        "multiscales": [
            {
                "version": NGFF_VERSION,
                "name": name,
                "axes": axis_entries,
                "datasets": datasets,
                "type": "mean" if kind == "image" else "mode",
                "metadata": {
                    "description": "anisotropy-aware 2x pyramid written by vemkit",
                    "method": f"vemkit.io.pyramid.{reducer}",
                    "version": __version__,
                },
            }
        ]
    }
    if kind == "labels":
        image_label: dict[str, Any] = {"version": NGFF_VERSION}
        if label_source is not None:
            image_label["source"] = {"image": label_source}
        attrs["image-label"] = image_label
    return attrs
