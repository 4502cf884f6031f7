"""Distances between objects and reference structures, exact for anisotropic voxels.

Geometry: a voxel with index ``(k, j, i)`` is the box of size ``voxel_size`` centred at
``(k * z_nm, j * y_nm, i * x_nm)``; an object (or a reference mask) is the union of its
voxel boxes, and its surface is that union's boundary. Distances are Euclidean, in nm,
between those surfaces:

- :func:`gap_distance_map` gives, for every voxel, the gap between its box and the
  nearest reference box: 0 for voxels inside the reference and for voxels that touch
  it by a face, an edge or a corner. One Euclidean distance transform of the
  reference grown by one voxel (3 × 3 × 3) gives it exactly, because the gap between
  boxes whose index offsets are ``d`` is ``sqrt(sum((max(|d_i| - 1, 0) * s_i)^2))``.
  The smallest value over an object's voxels is the object's surface-to-surface
  distance to the reference (:func:`object_to_mask_distances`).
- :func:`point_to_mask_distances` gives the distance from arbitrary points (e.g.
  centroids) to the nearest reference box, 0 for points inside the reference.

To measure distances to a *containing* structure's boundary (a mitochondrion to the
plasma membrane, inside a cell mask), pass the structure's complement as the
reference: ``cell_mask == 0``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import fastremap
import numpy as np
from numpy.typing import NDArray
from scipy import ndimage
from scipy.spatial import cKDTree

from vemkit.errors import InvalidVolumeError
from vemkit.geometry import VoxelSize

__all__ = ["gap_distance_map", "object_to_mask_distances", "point_to_mask_distances"]


def _as_mask(reference: Any, name: str = "reference") -> NDArray[np.bool_]:
    array = np.asarray(reference)
    if array.ndim != 3:
        raise InvalidVolumeError(
            f"{name} must be a 3-D (z, y, x) mask or label array, got {array.ndim} dimensions"
        )
    return array != 0


def gap_distance_map(
    reference: NDArray[Any],
    *,
    voxel_size: VoxelSize | Sequence[float] | float,
) -> NDArray[np.float32]:
    """Gap (nm) between every voxel's box and the nearest box of ``reference``.

    Parameters
    ----------
    reference : (Z, Y, X) ndarray
        Reference mask or labels; any non-zero voxel belongs to the reference.
    voxel_size : VoxelSize or (z, y, x) sequence or float
        Voxel size in nm.

    Returns
    -------
    (Z, Y, X) ndarray of float32
        Distance in nm; 0 inside the reference and on voxels touching it (face, edge or
        corner); ``inf`` everywhere if the reference is empty.

    Examples
    --------
    >>> ref = np.zeros((1, 1, 6), bool); ref[0, 0, 0] = True
    >>> gap_distance_map(ref, voxel_size=(50, 10, 10))[0, 0].tolist()
    [0.0, 0.0, 10.0, 20.0, 30.0, 40.0]
    """
    mask = _as_mask(reference)
    spacing = VoxelSize.coerce(voxel_size).as_tuple()
    if not mask.any():
        return np.full(mask.shape, np.inf, dtype=np.float32)
    grown = ndimage.binary_dilation(mask, structure=np.ones((3, 3, 3), bool))
    distance = ndimage.distance_transform_edt(~grown, sampling=spacing)
    return np.asarray(distance, dtype=np.float32)


def _boundary_voxels(mask: NDArray[np.bool_], *, array_border: bool) -> NDArray[np.intp]:
    """Return indices (n, 3) of mask voxels with a face neighbour outside the mask.

    ``array_border=False`` leaves out voxels whose only outside neighbour lies beyond
    the array: no point inside the array is nearest to a face on the array border.
    """
    structure = ndimage.generate_binary_structure(3, 1)
    interior = ndimage.binary_erosion(mask, structure=structure, border_value=int(not array_border))
    return np.argwhere(mask & ~interior)


class _Reference:
    """A reference mask with its gap map and, on demand, a k-d tree of its boundary.

    Object-to-reference gaps are minima of the gap map over object voxels. Points
    (centroids) lie anywhere inside a voxel: the distance from a point ``c`` to a box
    centred at ``q`` is ``sqrt(sum(max(|c_i - q_i| - s_i / 2, 0)^2))``. With ``r`` the
    voxel containing ``c``, the gap map bounds the answer: ``G[r] <= d(c) <= G[r] +
    |s|``; every box that can be nearest has its centre within ``G[r] + 1.5 |s|`` of
    ``c``, and all reference boundary voxels in that ball are compared exactly (the
    nearest box seen from outside always has a face exposed towards the point).
    """

    def __init__(self, mask: NDArray[np.bool_], spacing: NDArray[np.float64]) -> None:
        self.mask = mask
        self.spacing = spacing
        self.is_empty = not bool(mask.any())
        self.gap_nm = gap_distance_map(mask, voxel_size=tuple(spacing))
        self._centres: NDArray[np.float64] | None = None
        self._tree: cKDTree | None = None

    def object_gap_nm(self, object_mask: NDArray[np.bool_], box: tuple[slice, ...]) -> float:
        """Gap (nm) between one object (its mask within ``box``) and the reference."""
        if self.is_empty:
            return float("nan")
        return float(self.gap_nm[box][object_mask].min())

    def point_distances_nm(self, points_nm: NDArray[np.float64]) -> NDArray[np.float64]:
        """Distance (nm) from each point to the nearest reference box, 0 inside it."""
        result = np.full(len(points_nm), np.nan)
        if self.is_empty or len(points_nm) == 0:
            return result
        shape = np.asarray(self.mask.shape)
        index = np.clip(np.rint(points_nm / self.spacing).astype(np.int64), 0, shape - 1)
        cell = tuple(index.T)
        inside = self.mask[cell] & np.all(
            np.abs(points_nm / self.spacing - index) <= 0.5 + 1e-9, axis=1
        )
        result[inside] = 0.0
        todo = np.flatnonzero(~inside)
        if todo.size == 0:
            return result
        if self._tree is None:
            boundary = _boundary_voxels(self.mask, array_border=False)
            if boundary.size == 0:  # the reference fills the array
                boundary = np.argwhere(self.mask)
            self._centres = boundary * self.spacing
            self._tree = cKDTree(self._centres)
        centres = self._centres
        assert centres is not None
        diagonal = float(np.linalg.norm(self.spacing))
        radii = self.gap_nm[cell][todo].astype(np.float64) + 1.5 * diagonal + 1e-6
        half = self.spacing / 2.0
        candidates = self._tree.query_ball_point(points_nm[todo], radii)
        for row, point, found in zip(todo, points_nm[todo], candidates, strict=True):
            offsets = np.maximum(np.abs(centres[found] - point) - half, 0.0)
            result[row] = float(np.sqrt((offsets**2).sum(axis=1)).min())
        return result


def point_to_mask_distances(
    points_nm: NDArray[np.floating[Any]],
    reference: NDArray[Any],
    *,
    voxel_size: VoxelSize | Sequence[float] | float,
) -> NDArray[np.float64]:
    """Distance (nm) from each point to the nearest voxel box of ``reference``.

    Parameters
    ----------
    points_nm : (N, 3) ndarray of float
        Points ``(z, y, x)`` in nm, in the array's frame (voxel ``(k, j, i)`` is centred
        at ``(k * z_nm, j * y_nm, i * x_nm)``).
    reference : (Z, Y, X) ndarray
        Reference mask or labels; any non-zero voxel belongs to the reference.
    voxel_size : VoxelSize or (z, y, x) sequence or float
        Voxel size in nm.

    Returns
    -------
    (N,) ndarray of float64
        Distance in nm to the reference surface; 0 for points inside a reference voxel;
        NaN for every point if the reference is empty.

    Examples
    --------
    >>> ref = np.zeros((1, 1, 6), bool); ref[0, 0, 5] = True
    >>> point_to_mask_distances(np.array([[0.0, 0, 0]]), ref, voxel_size=(50, 10, 10))
    array([45.])
    """
    mask = _as_mask(reference)
    spacing = np.asarray(VoxelSize.coerce(voxel_size).as_tuple(), dtype=np.float64)
    points = np.asarray(points_nm, dtype=np.float64).reshape(-1, 3)
    return _Reference(mask, spacing).point_distances_nm(points)


def object_to_mask_distances(
    labels: NDArray[np.integer[Any]],
    reference: NDArray[Any],
    *,
    voxel_size: VoxelSize | Sequence[float] | float,
) -> dict[int, float]:
    """Shortest surface-to-surface distance (nm) from each object to ``reference``.

    The minimum of :func:`gap_distance_map` over each object's voxels.

    Parameters
    ----------
    labels : (Z, Y, X) ndarray of int
        Instance labels, 0 = background.
    reference : (Z, Y, X) ndarray
        Reference mask or labels of the same shape; any non-zero voxel belongs to it.
    voxel_size : VoxelSize or (z, y, x) sequence or float
        Voxel size in nm.

    Returns
    -------
    dict of int to float
        Distance in nm per label, in increasing label order: 0 when the object touches
        (face, edge or corner) or overlaps the reference; NaN when the reference is
        empty.

    Examples
    --------
    >>> labels = np.zeros((1, 1, 8), np.uint8); labels[0, 0, 6:] = 4
    >>> ref = np.zeros((1, 1, 8), bool); ref[0, 0, :2] = True
    >>> object_to_mask_distances(labels, ref, voxel_size=(50, 10, 10))
    {4: 40.0}
    """
    array = np.asarray(labels)
    mask = _as_mask(reference)
    if array.shape != mask.shape:
        raise InvalidVolumeError(
            f"labels and reference must have the same shape, got {array.shape} and {mask.shape}"
        )
    ids = [int(v) for v in fastremap.unique(array) if v != 0]
    if not ids:
        return {}
    if not mask.any():
        return dict.fromkeys(ids, float("nan"))
    gap = gap_distance_map(mask, voxel_size=voxel_size)
    minima = ndimage.minimum(gap, labels=array, index=ids)
    return {i: float(v) for i, v in zip(ids, np.atleast_1d(minima), strict=True)}
