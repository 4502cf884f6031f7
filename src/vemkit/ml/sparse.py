"""Sparse annotations: which voxels of a label volume were actually annotated."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from vemkit.errors import ConfigError

__all__ = ["sparse_plane_mask"]


def sparse_plane_mask(
    shape: Sequence[int],
    *,
    every_n: int,
    axis: int = 0,
    offset: int = 0,
    fraction_painted: float = 1.0,
    stroke_px: float = 8.0,
    seed: int = 0,
) -> NDArray[np.bool_]:
    """Simulate sparse annotation: every ``every_n``-th plane, partially painted.

    Parameters
    ----------
    shape : sequence of int
        Shape of the label volume, e.g. ``(Z, Y, X)``.
    every_n : int
        Planes ``offset, offset + every_n, ...`` along ``axis`` are annotated.
    axis : int
        Axis perpendicular to the annotated planes.
    offset : int
        Index of the first annotated plane.
    fraction_painted : float
        Fraction (0–1] of each annotated plane that is painted, as smooth blobs like
        brush strokes.
    stroke_px : float
        Typical size of the painted blobs in pixels (smoothing of a random field).
    seed : int
        Seed of the random painting.

    Returns
    -------
    ndarray of bool
        ``shape``; true where a voxel is annotated (the ``valid`` mask of losses).

    Examples
    --------
    >>> m = sparse_plane_mask((8, 4, 4), every_n=4)
    >>> m.any(axis=(1, 2)).nonzero()[0].tolist()
    [0, 4]
    """
    shape = tuple(int(s) for s in shape)
    if every_n < 1:
        raise ConfigError(f"every_n must be a positive integer, got {every_n!r}")
    if not 0.0 < fraction_painted <= 1.0:
        raise ConfigError(f"fraction_painted must be in (0, 1], got {fraction_painted!r}")
    if not -len(shape) <= axis < len(shape):
        raise ConfigError(f"axis {axis} is out of range for shape {shape}")
    axis %= len(shape)
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, dtype=bool)
    moved = np.moveaxis(mask, axis, 0)  # a view: writing to it fills ``mask``
    for index in range(offset % every_n, shape[axis], every_n):
        if fraction_painted >= 1.0:
            moved[index] = True
            continue
        field = ndimage.gaussian_filter(
            rng.standard_normal(moved.shape[1:]), sigma=stroke_px, mode="wrap"
        )
        threshold = np.quantile(field, 1.0 - fraction_painted)
        moved[index] = field >= threshold
    return mask
