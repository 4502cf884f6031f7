"""Checks that turn bad input into clear errors before any work starts."""

from __future__ import annotations

import numpy as np

from vemkit.errors import InvalidVolumeError, VoxelSizeError
from vemkit.io.layer import Layer

__all__ = ["require_finite", "require_nonempty", "require_volume", "require_voxel_size"]


def require_volume(layer: Layer) -> Layer:
    """Require a 3D (z, y, x) layer with at least one voxel.

    Raises
    ------
    InvalidVolumeError
        For a 2D image, a stack with channels, or an empty array.
    """
    if layer.spatial_ndim != 3:
        hint = ""
        if "S" in str(layer.metadata.get("axes_in_file", "")) and "c" in layer.axes:
            # tifffile.imwrite (2025-2026 versions) stores a (3 or 4, Y, X) array as one
            # image with 3 or 4 samples per pixel (colour channels), not as sections.
            hint = (
                f" The TIFF stores its {layer.shape[layer.axes.index('c')]} planes as samples "
                "(colour channels) of one image, as tifffile.imwrite does by default for "
                "arrays of 3 or 4 planes; if they are sections, save them with "
                "tifffile.imwrite(path, stack, photometric='minisblack', metadata={'axes': 'ZYX'})."
            )
        raise InvalidVolumeError(
            f"{layer.metadata.get('source', layer.name)!r} is a {layer.spatial_ndim}D image "
            f"(shape {layer.shape}); vemkit needs a 3D volume (z, y, x). Give a stack, a "
            f"folder of slices or a 3D file.{hint}"
        )
    if "c" in layer.axes:
        raise InvalidVolumeError(
            f"{layer.name!r} has {layer.shape[layer.axes.index('c')]} channels; choose one "
            "channel (vemkit segments single-channel volumes)"
        )
    if 0 in layer.shape:
        raise InvalidVolumeError(f"{layer.name!r} is empty (shape {layer.shape})")
    return layer


def require_nonempty(values: np.ndarray, *, name: str) -> np.ndarray:
    """Reject image data that is all NaN (or contains no finite value)."""
    if values.size == 0:
        raise InvalidVolumeError(f"{name!r} holds no voxels")
    if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).any():
        raise InvalidVolumeError(f"{name!r} contains only NaN or infinite values")
    return values


def require_finite(layer: Layer) -> Layer:
    """Reject a floating-point layer without any finite value (e.g. all NaN).

    Integer layers pass at once; float layers are scanned block by block with Dask,
    stopping memory growth at one block.
    """
    if not np.issubdtype(layer.dtype, np.floating):
        return layer
    import dask.array as da

    if not bool(da.isfinite(layer.to_dask()).any().compute()):
        raise InvalidVolumeError(
            f"{layer.metadata.get('source', layer.name)!r} contains only NaN or infinite "
            "values; check the export that produced it"
        )
    return layer


def require_voxel_size(layer: Layer) -> Layer:
    """Require a voxel size that came from the file or the user, not a placeholder."""
    if layer.metadata.get("voxel_size_from", "unknown") == "unknown":
        raise VoxelSizeError(
            f"{layer.metadata.get('source', layer.name)!r} does not record its voxel size; "
            "pass --voxel-size Z,Y,X in nm (e.g. --voxel-size 50,4.6,4.6)"
        )
    return layer
