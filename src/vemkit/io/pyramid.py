"""Multiscale pyramids: which factors to use, how to downsample, which level to read.

Rules, chosen once and documented here
--------------------------------------
- **Factors** (:func:`downsample_factors`) are anisotropy-aware, as in webKnossos: at each
  step an axis is halved only when its current voxel size is less than
  :data:`ANISOTROPY_LIMIT` (2×) times the finest current voxel size. A 50 × 4.6 × 4.6 nm
  volume is therefore halved in y and x only (``(1, 2, 2)``) until y and x catch up with z,
  and then in all three axes. Levels are added until the largest axis is at most
  ``min_shape_vox`` (64) voxels.
- **Odd shapes are padded, not trimmed**: a level has ``ceil(n / f)`` voxels along an axis,
  so every level covers the whole field of view. The last, partial block of an axis is
  reduced over the voxels that exist (a mean of 1 × 2 × 2 voxels at an odd z edge, not of
  a padded 2 × 2 × 2 block).
- **Images** are reduced by the mean, computed in float64; integer results are rounded to
  the nearest integer and keep their dtype, floats keep their dtype (a NaN in a block makes
  that output voxel NaN).
- **Labels** are reduced by the mode (the most frequent label in each block, background
  included). Ties go to the label met first in C order inside the block, so a block of
  all-different labels gives the same result as nearest-neighbour (stride) sampling.
- **Level choice** (:func:`pick_level`) minimises the sum over axes of the squared log2
  ratio between a level's voxel size and the wanted voxel size; ties go to the finer level.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from vemkit.geometry import VoxelSize

__all__ = [
    "ANISOTROPY_LIMIT",
    "MIN_SHAPE_VOX",
    "downsample_dask",
    "downsample_factors",
    "downsample_image",
    "downsample_labels",
    "downsampled_shape",
    "pick_level",
]

#: An axis is halved while its voxel size is below this multiple of the finest voxel size.
ANISOTROPY_LIMIT = 2.0
#: Pyramids stop once the largest axis has at most this many voxels.
MIN_SHAPE_VOX = 64

_REL_TOL = 1e-6


def downsample_factors(
    voxel_size: VoxelSize | Sequence[float],
    shape: Sequence[int],
    *,
    min_shape_vox: int = MIN_SHAPE_VOX,
    n_levels: int | None = None,
) -> list[tuple[int, ...]]:
    """Per-level downsampling factors of an anisotropy-aware pyramid.

    Parameters
    ----------
    voxel_size : VoxelSize or sequence of float
        Voxel size of level 0 in nm, one value per axis of ``shape`` (z, y, x).
    shape : sequence of int
        Shape of level 0 (spatial axes only).
    min_shape_vox : int
        Stop once the largest axis has at most this many voxels (ignored when ``n_levels``
        is given).
    n_levels : int, optional
        Total number of levels wanted, level 0 included. Fewer are returned when every axis
        is already down to one voxel.

    Returns
    -------
    list of tuple of int
        ``factors[i]`` takes level ``i`` to level ``i + 1`` (each 1 or 2 per axis); the list
        is empty for a single-level pyramid. Multiply them for the factor relative to level 0.

    Examples
    --------
    >>> downsample_factors((50.0, 4.6, 4.6), (64, 512, 512))
    [(1, 2, 2), (1, 2, 2), (1, 2, 2)]
    >>> downsample_factors((8.0, 8.0, 8.0), (64, 64, 64))
    []
    >>> downsample_factors((8.0, 8.0, 8.0), (64, 64, 64), n_levels=3)
    [(2, 2, 2), (2, 2, 2)]
    """
    sizes = [float(v) for v in _as_sizes(voxel_size)]
    current = [int(s) for s in shape]
    if len(sizes) != len(current):
        raise ValueError(f"voxel size {tuple(sizes)} and shape {tuple(current)} differ in length")
    if any(s <= 0 for s in sizes):
        raise ValueError(f"voxel sizes must be positive, got {tuple(sizes)}")
    if n_levels is not None and n_levels < 1:
        raise ValueError(f"n_levels must be at least 1, got {n_levels}")
    factors: list[tuple[int, ...]] = []
    while True:
        if n_levels is not None:
            if len(factors) + 1 >= n_levels:
                break
        elif max(current, default=0) <= min_shape_vox:
            break
        shrinkable = [i for i, n in enumerate(current) if n > 1]
        if not shrinkable:
            break
        finest = min(sizes[i] for i in shrinkable)
        step = tuple(
            2 if (n > 1 and s < ANISOTROPY_LIMIT * finest * (1 - _REL_TOL)) else 1
            for s, n in zip(sizes, current, strict=True)
        )
        factors.append(step)
        sizes = [s * f for s, f in zip(sizes, step, strict=True)]
        current = [math.ceil(n / f) for n, f in zip(current, step, strict=True)]
    return factors


def downsampled_shape(shape: Sequence[int], factors: Sequence[int]) -> tuple[int, ...]:
    """Shape after downsampling by ``factors`` with padding (``ceil(n / f)`` per axis)."""
    return tuple(math.ceil(int(n) / int(f)) for n, f in zip(shape, factors, strict=True))


def downsample_image(array: NDArray[Any], factors: Sequence[int]) -> NDArray[Any]:
    """Downsample an intensity image by the block mean.

    Parameters
    ----------
    array : (..., Z, Y, X) ndarray
        Any numeric dtype; one factor per axis.
    factors : sequence of int
        Block size per axis (1 leaves an axis alone).

    Returns
    -------
    ndarray of the input dtype
        Shape ``ceil(n / f)`` per axis. Partial edge blocks are averaged over the voxels that
        exist; integers are rounded to the nearest value (and clipped to the dtype's range).

    Examples
    --------
    >>> downsample_image(np.array([[0, 2, 5]], dtype=np.uint8), (1, 2)).tolist()
    [[1, 5]]
    """
    array = np.asarray(array)
    factors = _check_factors(array, factors)
    if all(f == 1 for f in factors):
        return array.copy()
    padded = _pad_to_multiple(array, factors, mode="constant")
    blocks = _block_view(padded, factors)
    sums = blocks.sum(axis=tuple(range(1, 2 * array.ndim, 2)), dtype=np.float64)
    counts = np.ones((1,) * array.ndim, dtype=np.float64)
    for axis, (n, f) in enumerate(zip(array.shape, factors, strict=True)):
        per_axis = np.full(math.ceil(n / f), float(f))
        if n % f:
            per_axis[-1] = n % f
        counts = counts * per_axis.reshape([-1 if a == axis else 1 for a in range(array.ndim)])
    mean = sums / counts
    return _cast_like(mean, array.dtype)


def downsample_labels(array: NDArray[Any], factors: Sequence[int]) -> NDArray[Any]:
    """Downsample a label image by the block mode (most frequent label, ties to the first).

    Parameters
    ----------
    array : (..., Z, Y, X) ndarray of int
        Labels (0 = background, which takes part in the vote like any label).
    factors : sequence of int
        Block size per axis (1 leaves an axis alone).

    Returns
    -------
    ndarray of the input dtype
        Shape ``ceil(n / f)`` per axis; partial edge blocks vote among the voxels that exist.

    Examples
    --------
    >>> downsample_labels(np.array([[0, 7, 7, 3]], dtype=np.uint32), (1, 4)).tolist()
    [[7]]
    >>> downsample_labels(np.array([[0, 7, 3, 3]], dtype=np.uint32), (1, 2)).tolist()
    [[0, 3]]
    """
    array = np.asarray(array)
    factors = _check_factors(array, factors)
    if all(f == 1 for f in factors):
        return array.copy()
    ndim = array.ndim
    padded = _pad_to_multiple(array, factors, mode="edge")
    # (n0, f0, n1, f1, ...) -> (n0, n1, ..., f0 * f1 * ...): one row of candidates per block
    blocks = _block_view(padded, factors)
    order = tuple(range(0, 2 * ndim, 2)) + tuple(range(1, 2 * ndim, 2))
    out_shape = blocks.shape[0::2]
    votes = blocks.transpose(order).reshape(*out_shape, -1)
    valid = _valid_mask(array.shape, factors)
    valid_votes = valid.transpose(order).reshape(*valid.shape[0::2], -1)
    k = votes.shape[-1]
    # k is at most 2**ndim (8 for a volume): comparing every candidate with every other is
    # cheaper and simpler than sorting, and needs no bincount over huge label values.
    best_value = votes[..., 0].copy()
    best_count = np.zeros(out_shape, dtype=np.int32)
    for i in range(k):
        candidate = votes[..., i]
        count = np.zeros(out_shape, dtype=np.int32)
        for j in range(k):
            count += (votes[..., j] == candidate) & valid_votes[..., j]
        count = np.where(valid_votes[..., i], count, -1)
        better = count > best_count
        best_value = np.where(better, candidate, best_value)
        best_count = np.where(better, count, best_count)
    return best_value.astype(array.dtype, copy=False)


def downsample_dask(array: Any, factors: Sequence[int], *, kind: Literal["image", "labels"]) -> Any:
    """Lazily downsample a Dask array with the same result as the NumPy functions.

    The array is first rechunked so that every chunk except the last along each axis is a
    multiple of its factor; each chunk is then reduced on its own with
    :func:`downsample_image` or :func:`downsample_labels` (``map_blocks``), so only the
    final, partial block of an axis is ever padded — exactly as in the NumPy version.

    Parameters
    ----------
    array : dask.array.Array
        Input of any shape.
    factors : sequence of int
        Block size per axis.
    kind : {"image", "labels"}
        Mean for images, mode for labels.

    Returns
    -------
    dask.array.Array
        Shape ``ceil(n / f)`` per axis, dtype of the input.
    """
    if kind not in ("image", "labels"):
        raise ValueError(f"kind must be 'image' or 'labels', got {kind!r}")
    factors = tuple(int(f) for f in factors)
    if len(factors) != array.ndim or any(f < 1 for f in factors):
        raise ValueError(f"need one positive factor per axis of {array.shape}, got {factors}")
    if all(f == 1 for f in factors):
        return array
    aligned = array.rechunk(_aligned_chunks(array.chunks, factors))
    out_chunks = tuple(
        tuple(math.ceil(c / f) for c in axis_chunks)
        for axis_chunks, f in zip(aligned.chunks, factors, strict=True)
    )
    reduce = downsample_image if kind == "image" else downsample_labels
    return aligned.map_blocks(reduce, factors, chunks=out_chunks, dtype=array.dtype)


def pick_level(
    levels_voxel_sizes: Sequence[VoxelSize | Sequence[float]],
    target_voxel_size: VoxelSize | Sequence[float],
) -> int:
    """Index of the pyramid level whose voxel size is closest to ``target_voxel_size``.

    Distance is the sum over axes of ``log2(level / target) ** 2``, so being 2× too fine
    costs the same as being 2× too coarse, and ties go to the finer (lower) level.

    Parameters
    ----------
    levels_voxel_sizes : sequence of VoxelSize or (z, y, x) tuples
        Voxel size of every level in nm, finest first.
    target_voxel_size : VoxelSize or (z, y, x)
        The voxel size a model was trained at, in nm.

    Returns
    -------
    int
        The level index.

    Examples
    --------
    >>> pick_level([(50, 5, 5), (50, 10, 10), (50, 20, 20), (100, 40, 40)], (50, 16, 16))
    2
    """
    target = _as_sizes(target_voxel_size)
    if not levels_voxel_sizes:
        raise ValueError("no pyramid levels to choose from")
    best, best_distance = 0, math.inf
    for index, level in enumerate(levels_voxel_sizes):
        sizes = _as_sizes(level)
        if len(sizes) != len(target):
            raise ValueError(
                f"level {index} voxel size {sizes} and target {target} differ in length"
            )
        distance = sum(math.log2(s / t) ** 2 for s, t in zip(sizes, target, strict=True))
        if distance < best_distance - 1e-12:
            best, best_distance = index, distance
    return best


# --- helpers ---------------------------------------------------------------------------------
def _as_sizes(value: VoxelSize | Sequence[float]) -> tuple[float, ...]:
    if isinstance(value, VoxelSize):
        return value.as_tuple()
    sizes = tuple(float(v) for v in value)
    if any(not math.isfinite(s) or s <= 0 for s in sizes):
        raise ValueError(f"voxel sizes must be positive finite numbers of nm, got {sizes}")
    return sizes


def _check_factors(array: NDArray[Any], factors: Sequence[int]) -> tuple[int, ...]:
    result = tuple(int(f) for f in factors)
    if len(result) != array.ndim:
        raise ValueError(f"need {array.ndim} factors for an array of shape {array.shape}")
    if any(f < 1 for f in result):
        raise ValueError(f"factors must be positive integers, got {result}")
    if array.size == 0:
        raise ValueError(f"cannot downsample an empty array of shape {array.shape}")
    return result


def _pad_to_multiple(
    array: NDArray[Any], factors: tuple[int, ...], *, mode: Literal["constant", "edge"]
) -> NDArray[Any]:
    pad = [(0, (-n) % f) for n, f in zip(array.shape, factors, strict=True)]
    if not any(after for _, after in pad):
        return array
    return np.pad(array, pad, mode=mode)


def _block_view(array: NDArray[Any], factors: tuple[int, ...]) -> NDArray[Any]:
    """Reshape ``(n0 * f0, n1 * f1, ...)`` to ``(n0, f0, n1, f1, ...)`` without copying."""
    shape: list[int] = []
    for n, f in zip(array.shape, factors, strict=True):
        shape.extend((n // f, f))
    return array.reshape(shape)


def _valid_mask(shape: tuple[int, ...], factors: tuple[int, ...]) -> NDArray[np.bool_]:
    """Block view (see :func:`_block_view`) of which padded voxels exist in the original."""
    padded = tuple(math.ceil(n / f) * f for n, f in zip(shape, factors, strict=True))
    valid = np.zeros(padded, dtype=bool)
    valid[tuple(slice(0, n) for n in shape)] = True
    return _block_view(valid, factors)


def _cast_like(values: NDArray[np.float64], dtype: np.dtype[Any]) -> NDArray[Any]:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    if dtype == np.bool_:
        return values >= 0.5
    return values.astype(dtype)


def _aligned_chunks(
    chunks: tuple[tuple[int, ...], ...], factors: tuple[int, ...]
) -> tuple[tuple[int, ...], ...]:
    """Chunks whose every block but the last per axis is a multiple of the factor."""
    result: list[tuple[int, ...]] = []
    for axis_chunks, f in zip(chunks, factors, strict=True):
        total = sum(axis_chunks)
        if f == 1 or all(c % f == 0 for c in axis_chunks[:-1]):
            result.append(tuple(axis_chunks))
            continue
        size = max(f, math.ceil(max(axis_chunks) / f) * f)
        full, rest = divmod(total, size)
        result.append((size,) * full + ((rest,) if rest else ()))
    return tuple(result)
