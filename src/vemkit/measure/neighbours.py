"""Nearest-neighbour distances between object centroids (or any points)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.spatial import cKDTree

from vemkit.errors import ConfigError, InvalidVolumeError

__all__ = ["knn_distances", "knn_mean_distances"]


def _check_points(points: Any, name: str = "points") -> NDArray[np.float64]:
    array = np.asarray(points, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] not in (2, 3):
        raise InvalidVolumeError(
            f"{name} must be an (N, 3) array of (z, y, x) positions (or (N, 2) for "
            f"(y, x)), got shape {array.shape}"
        )
    if not np.isfinite(array).all():
        raise InvalidVolumeError(f"{name} contains NaN or infinite coordinates")
    return array


def knn_distances(points: NDArray[np.floating[Any]], *, k: int = 1) -> NDArray[np.float64]:
    """Distances from each point to its ``k`` nearest other points, nearest first.

    Parameters
    ----------
    points : (N, 3) ndarray of float
        Positions ``(z, y, x)`` in any one physical unit (e.g. µm); (N, 2) also works.
    k : int, optional
        Number of neighbours. Default 1.

    Returns
    -------
    (N, k) ndarray of float64
        Distances in the unit of ``points``; column ``j`` holds the ``j + 1``-th
        nearest neighbour, NaN where fewer than ``j + 1`` other points exist.

    Examples
    --------
    >>> knn_distances(np.array([[0, 0, 0], [0, 0, 1.0], [0, 0, 3.0]]), k=2).tolist()
    [[1.0, 3.0], [1.0, 2.0], [2.0, 3.0]]
    """
    if int(k) != k or k < 1:
        raise ConfigError(f"k must be a positive integer, got {k!r}")
    array = _check_points(points)
    n = len(array)
    out = np.full((n, int(k)), np.nan)
    available = min(int(k), n - 1)
    if available < 1:
        return out
    distances, _ = cKDTree(array).query(array, k=available + 1)
    # Column 0 is the point itself (distance 0); duplicates are legitimate neighbours.
    out[:, :available] = np.asarray(distances, dtype=np.float64).reshape(n, -1)[:, 1:]
    return out


def knn_mean_distances(points: NDArray[np.floating[Any]], *, k: int = 8) -> NDArray[np.float64]:
    """Mean distance from each point to its ``k`` nearest other points.

    The arivis-style local crowding measure ("average distance to the nearest 8
    objects"): small values where objects are dense.

    Parameters
    ----------
    points : (N, 3) ndarray of float
        Positions ``(z, y, x)`` in any one physical unit (e.g. µm).
    k : int, optional
        Number of neighbours. Default 8.

    Returns
    -------
    (N,) ndarray of float64
        Mean distance in the unit of ``points``; all NaN when ``N < k + 1`` (fewer
        than ``k`` neighbours per point), never a mean over fewer neighbours.
    """
    distances = knn_distances(points, k=k)
    if np.isnan(distances).any():
        return np.full(len(distances), np.nan)
    return distances.mean(axis=1)
