"""Input checks shared by the segmentation functions.

Every public function validates its arguments once, at the top, through these helpers,
so the messages read the same everywhere: they name the argument and the value received.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from vemkit.errors import ConfigError, InvalidVolumeError
from vemkit.geometry import VoxelSize

__all__ = [
    "as_float_volume",
    "as_label_volume",
    "as_mask_volume",
    "as_real_volume",
    "check_finite",
    "check_nonnegative",
    "check_positive",
    "check_same_shape",
    "coerce_voxel_size",
    "sigma_vox",
]


def _as_3d(data: ArrayLike, name: str) -> NDArray[Any]:
    array = np.asarray(data)
    if array.ndim != 3:
        raise InvalidVolumeError(
            f"{name} must be a 3-D (z, y, x) array, got {array.ndim}-D with shape {array.shape}"
        )
    if array.size == 0:
        raise InvalidVolumeError(f"{name} is empty (shape {array.shape})")
    return array


def as_real_volume(data: ArrayLike, name: str) -> NDArray[Any]:
    """Return ``data`` as a 3-D array of bool, integers or finite floats, without a copy."""
    array = _as_3d(data, name)
    if array.dtype.kind not in "buif":
        raise InvalidVolumeError(
            f"{name} must hold real numbers, got an array of dtype {array.dtype}"
        )
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        n_bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        raise InvalidVolumeError(
            f"{name} contains {n_bad} NaN or infinite values; replace them "
            "(e.g. with numpy.nan_to_num) before segmenting"
        )
    return array


def as_float_volume(data: ArrayLike, name: str) -> NDArray[np.floating]:
    """Return ``data`` as a 3-D float array with finite values.

    float32 and float64 are kept; bool and integers up to 16 bits become float32, wider
    integers float64.
    """
    array = as_real_volume(data, name)
    if array.dtype in (np.float32, np.float64):
        return array
    return array.astype(np.float32 if array.dtype.itemsize <= 2 else np.float64)


def as_mask_volume(data: ArrayLike, name: str) -> NDArray[np.bool_]:
    """Return ``data`` as a 3-D boolean mask (bool as is, integers as ``!= 0``)."""
    array = _as_3d(data, name)
    if array.dtype.kind == "b":
        return array
    if array.dtype.kind in "ui":
        return array != 0
    raise InvalidVolumeError(
        f"{name} must be a boolean (or integer) mask, got dtype {array.dtype}; "
        "threshold a probability map first (e.g. probabilities > 0.5)"
    )


def as_label_volume(data: ArrayLike, name: str) -> NDArray[np.unsignedinteger]:
    """Return ``data`` as 3-D unsigned labels; signed input must hold no negative value."""
    array = _as_3d(data, name)
    if array.dtype.kind == "u":
        return array
    if array.dtype.kind == "b":
        return array.view(np.uint8)
    if array.dtype.kind == "i":
        low = int(array.min())
        if low < 0:
            raise InvalidVolumeError(
                f"{name} must hold non-negative labels (0 = background), got minimum {low}"
            )
        return array.astype(np.dtype(f"u{array.dtype.itemsize}"))
    raise InvalidVolumeError(
        f"{name} must be an integer label image, got dtype {array.dtype}; "
        "threshold and run connected_components first"
    )


def check_same_shape(first: NDArray[np.generic], second: NDArray[np.generic], names: str) -> None:
    """Raise unless the two arrays have the same shape; ``names`` reads like ``"a and b"``."""
    if first.shape != second.shape:
        raise InvalidVolumeError(
            f"{names} must have the same shape, got {first.shape} and {second.shape}"
        )


def _as_number(value: float, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ConfigError(f"{name} must be finite, got {value!r}")
    return number


def check_nonnegative(value: float, name: str) -> float:
    """Return ``value`` as float, raising :class:`ConfigError` when it is negative or not finite."""
    number = _as_number(value, name)
    if number < 0:
        raise ConfigError(f"{name} must be >= 0, got {value!r}")
    return number


def check_positive(value: float, name: str) -> float:
    """Return ``value`` as float, raising :class:`ConfigError` unless it is > 0 and finite."""
    number = _as_number(value, name)
    if number <= 0:
        raise ConfigError(f"{name} must be > 0, got {value!r}")
    return number


def check_finite(value: float, name: str) -> float:
    """Return ``value`` as float, raising :class:`ConfigError` when it is not a finite number."""
    return _as_number(value, name)


def coerce_voxel_size(voxel_size: VoxelSize | str | float | Sequence[float]) -> VoxelSize:
    """Accept what :meth:`VoxelSize.coerce` accepts; raises ``VoxelSizeError`` otherwise."""
    return VoxelSize.coerce(voxel_size)


def sigma_vox(sigma_nm: float, voxel_size: VoxelSize) -> tuple[float, float, float]:
    """Convert an isotropic Gaussian sigma in nm to per-axis sigmas in voxels (z, y, x)."""
    return voxel_size.to_voxels(sigma_nm)
