"""Write a volume to an ImageJ-compatible or OME TIFF, page by page and atomically.

Which flavour is written
------------------------
- **ImageJ hyperstack** (the default for ``uint8``, ``uint16`` and ``float32`` data up to
  4 GB): opens directly in Fiji/ImageJ with its voxel size (``Image > Properties``) and is
  read back by :func:`vemkit.io.open_layer`. The voxel size is stored as ImageJ does: x/y
  as ``XResolution``/``YResolution`` in pixels per µm, z as ``spacing`` in µm.
- **OME-TIFF** (``ome=True``, a path ending in ``.ome.tif``, any other dtype such as
  ``uint32`` labels, or data over 4 GB, which is then written as BigTIFF): the voxel size is
  stored as ``PhysicalSizeZ/Y/X`` in nm. Fiji opens it with Bio-Formats.

Compression ``"zlib"`` (default), ``"lzw"``, ``"packbits"`` or ``None`` are readable by
Fiji; ``"zstd"`` is smaller and faster but only readable by tifffile-based software.

Pages are written one z slab at a time (slabs follow the storage chunks of a lazy input),
so memory stays bounded by a slab, not by the volume. The file appears under its final
name only when complete (see :func:`vemkit.io.atomic.atomic_output`). A layer's ``offset``
is not stored (TIFF has no place for it).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from numpy.typing import NDArray

from vemkit.errors import ConfigError, InvalidVolumeError, VoxelSizeError
from vemkit.geometry import VoxelSize
from vemkit.io.atomic import atomic_output
from vemkit.io.layer import ArrayLike, Layer
from vemkit.progress import NullProgress, Progress

__all__ = ["IMAGEJ_DTYPES", "TIFF_COMPRESSIONS", "write_tiff"]

logger = logging.getLogger(__name__)

#: Compressions accepted by :func:`write_tiff` (None means uncompressed).
TIFF_COMPRESSIONS = (None, "none", "zlib", "lzw", "packbits", "zstd")
#: Data types an ImageJ hyperstack can hold (anything else is written as OME-TIFF).
IMAGEJ_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))

# Classic TIFF addresses 4 GiB; leave room for the page directories and metadata.
_CLASSIC_TIFF_LIMIT_BYTES = 2**32 - 2**25
_SLAB_TARGET_BYTES = 64 * 2**20
_AXES_BY_NDIM = {2: "yx", 3: "zyx", 4: "czyx"}


def _resolve_input(
    data: Layer | ArrayLike, voxel_size: VoxelSize | str | Sequence[float] | None, axes: str | None
) -> tuple[Any, str, VoxelSize | None, tuple[int, ...] | None]:
    """Return (array, axes, voxel size or None for 'uncalibrated', storage chunks)."""
    if isinstance(data, Layer):
        array, layer_axes, chunks = data.data, data.axes, data.chunks
        if voxel_size is not None:
            size: VoxelSize | None = VoxelSize.coerce(voxel_size)
        elif data.metadata.get("voxel_size_from", "unknown") == "unknown":
            logger.info("layer %r has no known voxel size; the TIFF is uncalibrated", data.name)
            size = None
        else:
            size = data.voxel_size
        if axes is not None and axes != layer_axes:
            raise ConfigError(f"axes={axes!r} contradicts the layer's axes {layer_axes!r}")
        return array, layer_axes, size, chunks
    if voxel_size is None:
        raise VoxelSizeError(
            "write_tiff needs voxel_size= (z, y, x in nm, e.g. '50,4.6,4.6') when given a "
            "plain array; pass a Layer to use its voxel size"
        )
    shape = tuple(data.shape)
    resolved = axes or _AXES_BY_NDIM.get(len(shape))
    if resolved is None:
        raise InvalidVolumeError(
            f"cannot write an array of shape {shape} as TIFF; give a 2D (y, x), 3D (z, y, x) "
            "or 4D (c, z, y, x) array"
        )
    chunks = getattr(data, "chunks", None)
    if chunks and isinstance(chunks[0], tuple):  # dask
        chunks = tuple(int(c[0]) for c in chunks)
    return data, resolved, VoxelSize.coerce(voxel_size), chunks


def _slab_depth(
    shape: tuple[int, ...], axes: str, chunks: tuple[int, ...] | None, dtype: np.dtype
) -> int:
    """Return how many z planes to read at once: about 64 MiB, a multiple of the z chunk size."""
    n_c = shape[0] if axes == "czyx" else 1
    n_z = shape[axes.index("z")] if "z" in axes else 1
    plane_bytes = max(1, shape[-1] * shape[-2] * n_c * dtype.itemsize)
    depth = max(1, min(n_z, _SLAB_TARGET_BYTES // plane_bytes))
    if chunks is not None and "z" in axes:
        chunk_z = int(chunks[axes.index("z")])
        if chunk_z * plane_bytes <= 8 * _SLAB_TARGET_BYTES:
            depth = max(1, chunk_z * max(1, depth // chunk_z))
    return depth


def _pages(
    array: Any, axes: str, depth: int, dtype: np.dtype, progress: Progress
) -> Iterator[NDArray[Any]]:
    """Yield 2D pages in ZCYX order (z outer, channel inner), reading one z slab at a time.

    A slab counts as one progress step once it is read (tifffile stops asking for pages
    after the last one, so a step reported after yielding would be lost).
    """
    n_z = int(array.shape[axes.index("z")]) if "z" in axes else 1
    for start in range(0, n_z, depth):
        stop = min(n_z, start + depth)
        if axes == "yx":
            slab = np.asarray(array[:, :])[np.newaxis, np.newaxis]
        elif axes == "zyx":
            slab = np.asarray(array[start:stop])[np.newaxis]
        else:
            slab = np.asarray(array[:, start:stop])
        slab = slab.astype(dtype, copy=False)
        progress.advance(1)
        for z in range(slab.shape[1]):
            for c in range(slab.shape[0]):
                yield slab[c, z]


def write_tiff(
    path: str | os.PathLike[str],
    data: Layer | ArrayLike,
    *,
    voxel_size: VoxelSize | str | Sequence[float] | None = None,
    axes: str | None = None,
    compression: str | None = "zlib",
    ome: bool | None = None,
    bigtiff: bool | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> Path:
    """Write a volume (or 2D image) to a TIFF that Fiji and vemkit read with its voxel size.

    Parameters
    ----------
    path : str or path
        Output file (``.tif``; ``.ome.tif`` selects OME-TIFF).
    data : Layer or array-like
        A :class:`Layer` (its axes and voxel size are used) or an array (NumPy, Zarr,
        Dask, ...) with axes ``yx``, ``zyx`` or ``czyx``. Lazy inputs are read one z slab
        at a time. Boolean data is written as ``uint8``.
    voxel_size : VoxelSize, str or (z, y, x) in nm, optional
        Required for arrays; for a Layer it overrides the layer's. A layer whose voxel size
        is unknown is written uncalibrated.
    axes : str, optional
        Axes of an array (default from its number of dimensions).
    compression : {"zlib", "lzw", "packbits", "zstd", None}
        Page compression; Fiji cannot read ``"zstd"``.
    ome : bool, optional
        Force OME-TIFF (True) or ImageJ TIFF (False); by default ImageJ unless the path ends
        in ``.ome.tif``/``.ome.tiff``, the dtype is not uint8/uint16/float32, or the data
        needs BigTIFF.
    bigtiff : bool, optional
        Force BigTIFF; by default used when the data exceeds about 4 GB.
    overwrite : bool
        Replace an existing file (only once the new one is complete).
    progress : Progress, optional
        Receives one step per z slab written.

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``overwrite`` is false.
    OutputNotWritableError
        The folder is missing or not writable.
    VoxelSizeError
        An array was given without ``voxel_size``.
    ConfigError
        Contradictory options (ImageJ requested for data ImageJ cannot hold, unknown
        compression).
    InvalidVolumeError
        The data has axes other than ``yx``, ``zyx``, ``czyx``.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "vol.tif"
    >>> _ = write_tiff(out, np.zeros((4, 8, 8), np.uint8), voxel_size="50,4.6,4.6")
    >>> from vemkit.io.registry import open_layer
    >>> [round(v, 6) for v in open_layer(out).voxel_size.as_tuple()]
    [50.0, 4.6, 4.6]
    """
    array, layer_axes, size, chunks = _resolve_input(data, voxel_size, axes)
    if layer_axes not in ("yx", "zyx", "czyx"):
        raise InvalidVolumeError(
            f"cannot write axes {layer_axes!r} as TIFF; vemkit writes yx, zyx or czyx data"
        )
    if len(layer_axes) != len(array.shape):
        raise InvalidVolumeError(f"axes {layer_axes!r} do not match data of shape {array.shape}")
    if compression not in TIFF_COMPRESSIONS:
        raise ConfigError(
            f"unknown TIFF compression {compression!r}; use one of "
            f"{', '.join(str(c) for c in TIFF_COMPRESSIONS[1:])}"
        )
    dtype = np.dtype(array.dtype)
    if dtype == np.bool_:
        dtype = np.dtype(np.uint8)
    nbytes = math.prod(int(s) for s in array.shape) * dtype.itemsize
    use_bigtiff = nbytes > _CLASSIC_TIFF_LIMIT_BYTES if bigtiff is None else bigtiff
    name = os.fspath(path).lower()
    wants_ome = name.endswith((".ome.tif", ".ome.tiff"))
    use_ome = ome if ome is not None else (wants_ome or use_bigtiff or dtype not in IMAGEJ_DTYPES)
    if not use_ome and (dtype not in IMAGEJ_DTYPES or use_bigtiff):
        raise ConfigError(
            f"an ImageJ TIFF cannot hold {dtype} data{' over 4 GB' if use_bigtiff else ''}; "
            "write an OME-TIFF instead (ome=True or a .ome.tif name)"
        )

    n_c = int(array.shape[0]) if layer_axes == "czyx" else 1
    spatial = [int(array.shape[layer_axes.index(a)]) for a in layer_axes if a in "zyx"]
    n_z = spatial[0] if "z" in layer_axes else 1
    n_y, n_x = spatial[-2:]
    file_axes = {"yx": "YX", "zyx": "ZYX", "czyx": "ZCYX"}[layer_axes]
    file_shape = {"yx": (n_y, n_x), "zyx": (n_z, n_y, n_x), "czyx": (n_z, n_c, n_y, n_x)}[
        layer_axes
    ]
    options: dict[str, Any] = {
        "shape": file_shape,
        "dtype": dtype,
        "photometric": "minisblack",
        "compression": None if compression in (None, "none") else compression,
    }
    if use_ome:
        metadata: dict[str, Any] = {"axes": file_axes}
        if size is not None:
            for axis, value in zip("ZYX", size.as_tuple(), strict=True):
                if axis in file_axes:
                    metadata[f"PhysicalSize{axis}"] = value
                    metadata[f"PhysicalSize{axis}Unit"] = "nm"
        options["metadata"] = metadata
    else:
        metadata = {"axes": file_axes}
        if size is not None:
            metadata["unit"] = "um"
            if "z" in layer_axes:
                metadata["spacing"] = size.z / 1000.0
            options["resolution"] = (1000.0 / size.x, 1000.0 / size.y)
        options["metadata"] = metadata

    with atomic_output(path, overwrite=overwrite) as tmp:
        depth = _slab_depth(tuple(int(n) for n in array.shape), layer_axes, chunks, dtype)
        reporter = progress if progress is not None else NullProgress()
        reporter.start(math.ceil(n_z / depth), "write TIFF")
        try:
            pages = _pages(array, layer_axes, depth, dtype, reporter)
            with tifffile.TiffWriter(
                tmp, bigtiff=use_bigtiff, imagej=not use_ome, ome=use_ome
            ) as tif:
                tif.write(pages, **options)
        finally:
            reporter.finish()
    target = Path(path).expanduser().absolute()
    logger.info(
        "wrote %s (%s, %s, %s)", target, "OME-TIFF" if use_ome else "ImageJ TIFF", dtype, file_shape
    )
    return target
