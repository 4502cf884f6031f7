"""Per-object measurements in physical units: one table row per labelled object.

:func:`measure_regions` gathers size, shape, position, intensity, distances to
reference structures, neighbour distances and local density of every object of a
label array — the measurements of a vEM "cell profile" (organelle volumes, surface-
to-volume ratios, distances of mitochondria to the nucleus and the plasma membrane,
crowding). Every value carries its unit in the column name.

Conventions: arrays are ``(z, y, x)``; voxel ``(k, j, i)`` is the box of size
``voxel_size`` centred at ``(k * z_nm, j * y_nm, i * x_nm)``; lengths in the table are
µm (1 µm = 1000 nm).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import fastremap
import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import ndimage

from vemkit.errors import ConfigError, InvalidVolumeError
from vemkit.geometry import VoxelSize
from vemkit.measure.density import kernel_density
from vemkit.measure.distances import _as_mask, _Reference
from vemkit.measure.meshes import (
    _check_labels,
    _marching_cubes_zyx,
    _padded_crop,
    _signed_volume,
    _smoothing_pad,
    mask_smoothing_sigma_vox,
)
from vemkit.measure.neighbours import knn_distances

__all__ = ["measure_regions", "principal_axis_lengths"]

_NM_PER_UM = 1000.0
_AXES = ("z", "y", "x")


def principal_axis_lengths(
    coordinates_nm: NDArray[np.floating[Any]],
    *,
    voxel_size: VoxelSize | Sequence[float] | float | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Axis lengths of the solid ellipsoid with the same second moments as the voxels.

    A uniform solid ellipsoid with semi-axes ``a`` has covariance eigenvalues
    ``a^2 / 5``, so each full axis length is ``2 * sqrt(5 * lambda)``. This matches
    ``skimage.measure.regionprops(..., spacing=...)`` ``axis_major_length`` /
    ``axis_minor_length`` in 3-D when ``voxel_size`` is None.

    Parameters
    ----------
    coordinates_nm : (N, 3) ndarray of float
        Voxel centres ``(z, y, x)`` in nm.
    voxel_size : VoxelSize or (z, y, x) sequence or float, optional
        If given, each voxel counts as a uniform box rather than a point: ``s_i^2 / 12``
        is added to the variance along axis ``i``. This keeps one-voxel-thin objects
        from getting a zero minor axis (a one-slice object gets ``sqrt(5/3) * s_z``).

    Returns
    -------
    lengths_nm : (3,) ndarray of float64
        Full axis lengths in nm, largest first.
    axes : (3, 3) ndarray of float64
        Unit axis directions ``(z, y, x)`` as rows, in the same order.
    """
    points = np.asarray(coordinates_nm, dtype=np.float64).reshape(-1, 3)
    centred = points - points.mean(axis=0)
    covariance = centred.T @ centred / max(len(points), 1)
    if voxel_size is not None:
        spacing = np.asarray(VoxelSize.coerce(voxel_size).as_tuple())
        covariance = covariance + np.diag(spacing**2 / 12.0)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    order = np.argsort(eigenvalues)[::-1]
    lengths = 2.0 * np.sqrt(5.0 * np.clip(eigenvalues[order], 0.0, None))
    return lengths, eigenvectors[:, order].T


def _check_same_shape(name: str, array: Any, shape: tuple[int, ...]) -> NDArray[Any]:
    data = np.asarray(array)
    if data.shape != shape:
        raise InvalidVolumeError(f"{name} must have the shape of labels {shape}, got {data.shape}")
    return data


def _surface_area_nm2(
    mask: NDArray[np.bool_],
    spacing: tuple[float, float, float],
    sigma_vox: Sequence[float],
    step: int,
    voxel_volume_nm3: float,
) -> float:
    verts, faces = _marching_cubes_zyx(mask, spacing, sigma_vox=sigma_vox, step=step)
    area = _triangle_area(verts, faces)
    mesh_volume = abs(_signed_volume(verts, faces))
    if mesh_volume > 0:
        # The smoothed surface of a convex patch sits slightly inside the voxels; scale
        # the area as for a similar shape with the voxel volume (see measure_regions).
        area *= (voxel_volume_nm3 / mesh_volume) ** (2.0 / 3.0)
    return area


def _triangle_area(verts: NDArray[np.float64], faces: NDArray[Any]) -> float:
    tri = verts[faces]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    return float(0.5 * np.linalg.norm(cross, axis=1).sum())


def _empty_table(columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=np.float64) for c in columns})


def measure_regions(
    labels: NDArray[np.integer[Any]],
    *,
    voxel_size: VoxelSize | Sequence[float] | float,
    intensity: NDArray[Any] | None = None,
    references: Mapping[str, NDArray[Any]] | None = None,
    k_neighbours: int = 8,
    density_bandwidth_um: float | None = None,
    mesh_step: int = 1,
) -> pd.DataFrame:
    """Measure every labelled object in physical units; one row per object.

    Parameters
    ----------
    labels : (Z, Y, X) ndarray of unsigned int (or bool: one object, label 1)
        Instance labels, 0 = background (any label values; they need not be
        sequential).
    voxel_size : VoxelSize or (z, y, x) sequence or float
        Voxel size in nm.
    intensity : (Z, Y, X) ndarray, optional
        Image of the same shape; adds ``intensity_mean/std/min/max/median`` (in the
        image's units; std with ``ddof=0``).
    references : mapping of str to (Z, Y, X) ndarray, optional
        Reference structures by name (labels or masks; any non-zero voxel belongs to
        the reference), e.g. ``{"nucleus": nuclei, "outside": cell_mask == 0}``. For
        each NAME adds ``dist_surface_to_NAME_um`` and ``dist_centroid_to_NAME_um``
        (see Notes). Names must be non-empty strings.
    k_neighbours : int, optional
        ``knn_mean_dist_um`` averages the centroid distances to this many nearest other
        objects. Default 8 (as arivis's "nearest 8 objects").
    density_bandwidth_um : float, optional
        If given, adds ``density_per_um3``: the Gaussian kernel density of the other
        objects' centroids at each centroid with this bandwidth (standard deviation) in
        µm, see :func:`~vemkit.measure.kernel_density`.
    mesh_step : int, optional
        Marching-cubes step (voxels) for the surface area; 2 is faster and coarser.
        Default 1.

    Returns
    -------
    pandas.DataFrame
        One row per object, sorted by label, with columns

        - ``label`` (uint64), ``n_voxels``;
        - ``volume_um3``: voxel count × voxel volume;
        - ``surface_area_um2``, ``sv_ratio_per_um`` (area / volume) and
          ``sphericity`` (``pi^(1/3) (6 V)^(2/3) / A``, 1 for a sphere), see Notes;
        - ``centroid_z_um``, ``centroid_y_um``, ``centroid_x_um``: mean voxel centre;
        - ``bbox_min_{z,y,x}_vox``, ``bbox_max_{z,y,x}_vox`` (exclusive, as slices) and
          ``bbox_size_{z,y,x}_um`` (extent of the voxel boxes);
        - ``axis_major_length_um``, ``axis_medium_length_um``,
          ``axis_minor_length_um``: full axes of the solid ellipsoid with the same
          second moments (:func:`principal_axis_lengths`, voxels as boxes), and
          ``elongation`` = major / minor;
        - ``touches_border``: the object reaches the array border (it may be cut, so
          its size and shape are partial; its surface is closed along the border);
        - intensity and reference columns as described above;
        - ``nn_dist_um``: centroid distance to the nearest other object (NaN when
          there is only one object);
        - ``knn_mean_dist_um``: mean centroid distance to the ``k_neighbours`` nearest
          other objects, NaN for every row when there are fewer than
          ``k_neighbours + 1`` objects;
        - ``density_per_um3`` when ``density_bandwidth_um`` is given.

        An array without objects gives an empty table with these columns.

    Raises
    ------
    InvalidVolumeError
        If ``labels`` is not a non-empty 3-D non-negative integer array, or an
        ``intensity`` / reference array has another shape.
    ConfigError
        If ``k_neighbours``, ``density_bandwidth_um``, ``mesh_step`` or a reference
        name is invalid.

    Notes
    -----
    *Surface area.* Marching cubes on the binary voxel mask overestimates the area of
    smooth objects by about 9 % for isotropic voxels and 20-27 % for 5-8× anisotropic
    ones (the voxel staircase), whatever the resolution. Each object's padded crop is
    therefore smoothed with a Gaussian (:func:`~vemkit.measure.mask_smoothing_sigma_vox`:
    1 voxel, or half the coarse voxel edge along the fine axes) and meshed with
    :func:`skimage.measure.marching_cubes` at level 0.5 with ``spacing=voxel_size``;
    because smoothing pulls convex surfaces slightly inwards, the area is multiplied
    by ``(V_voxels / V_mesh)^(2/3)``. Measured on digitised spheres of radius 1 µm the
    error is +0.3 % at 20 nm isotropic and +0.5 % at (50, 10, 10) nm; for radii of
    0.15-1 µm it stays within +1.2 % at 10-20 nm isotropic and (30, 8, 8) to
    (50, 10, 10) nm voxels, and a rotated ellipsoid is within 0.3 %. Sharp edges are
    rounded (cubes come out 3-5 % small). Objects thinner than the smoothing kernel
    fall back to the binary mesh. zmesh was not used: its meshes are binary marching
    cubes, with the same +9 % / +21 % bias.

    *Distances.* ``dist_surface_to_NAME_um`` is the shortest distance between the
    object's surface and the nearest reference surface, both taken as unions of voxel
    boxes: the minimum over the object's voxels of
    :func:`~vemkit.measure.gap_distance_map` (one Euclidean distance transform per
    reference, about 3-4 s of CPU and 350 MB for a 256³ volume). It is 0 when the object
    touches or overlaps the reference.
    ``dist_centroid_to_NAME_um`` is the distance from the centroid to the nearest
    reference voxel box (:func:`~vemkit.measure.point_to_mask_distances`), 0 when the
    centroid lies inside the reference. Both are NaN when the reference is empty. To
    measure to the boundary of a structure that contains the objects (the plasma
    membrane of the cell they lie in), pass its complement, e.g.
    ``references={"outside": cell_mask == 0}``; note that the array border is not a
    boundary.

    Examples
    --------
    >>> labels = np.zeros((20, 20, 20), np.uint16)
    >>> labels[2:6, 2:6, 2:6] = 1; labels[10:14, 2:6, 2:6] = 2
    >>> table = measure_regions(labels, voxel_size=(50, 10, 10), k_neighbours=1)
    >>> table["volume_um3"].round(6).tolist()
    [0.00032, 0.00032]
    >>> table["knn_mean_dist_um"].round(6).tolist()
    [0.4, 0.4]
    """
    array = _check_labels(labels)
    vs = VoxelSize.coerce(voxel_size)
    spacing = vs.as_tuple()
    if int(k_neighbours) != k_neighbours or k_neighbours < 1:
        raise ConfigError(f"k_neighbours must be a positive integer, got {k_neighbours!r}")
    if int(mesh_step) != mesh_step or mesh_step < 1:
        raise ConfigError(f"mesh_step must be a positive integer, got {mesh_step!r}")
    if density_bandwidth_um is not None and not (
        math.isfinite(float(density_bandwidth_um)) and float(density_bandwidth_um) > 0
    ):
        raise ConfigError(
            f"density_bandwidth_um must be a positive number of µm, got {density_bandwidth_um!r}"
        )
    image = None if intensity is None else _check_same_shape("intensity", intensity, array.shape)
    reference_masks: dict[str, NDArray[np.bool_]] = {}
    for name, reference in (references or {}).items():
        if not isinstance(name, str) or not name:
            raise ConfigError(f"reference names must be non-empty strings, got {name!r}")
        _check_same_shape(f"reference {name!r}", reference, array.shape)
        reference_masks[name] = _as_mask(reference, f"reference {name!r}")

    columns = _columns(image is not None, list(reference_masks), density_bandwidth_um)
    relabeled, mapping = fastremap.renumber(array, in_place=False)
    new_to_old = {int(new): int(old) for old, new in mapping.items() if new != 0}
    boxes = ndimage.find_objects(relabeled)
    present = [(i, box) for i, box in enumerate(boxes, start=1) if box is not None]
    if not present:
        return _empty_table(columns)

    spacing_arr = np.asarray(spacing, dtype=np.float64)
    ref_layers = {name: _Reference(mask, spacing_arr) for name, mask in reference_masks.items()}
    sigma = mask_smoothing_sigma_vox(spacing)
    pad = _smoothing_pad(sigma)
    voxel_volume_nm3 = vs.volume_nm3
    shape = np.asarray(array.shape)

    rows: list[dict[str, Any]] = []
    for index, box in present:
        padded, _ = _padded_crop(relabeled, box, index, pad)
        mask = padded[tuple(slice(p, p + b.stop - b.start) for p, b in zip(pad, box, strict=True))]
        coords = np.nonzero(mask)
        n_voxels = len(coords[0])
        start = np.asarray([s.start for s in box])
        stop = np.asarray([s.stop for s in box])
        points_nm = (np.stack(coords, axis=1) + start) * spacing_arr
        centroid_nm = points_nm.mean(axis=0)
        lengths_nm, _ = principal_axis_lengths(points_nm, voxel_size=vs)
        volume_nm3 = n_voxels * voxel_volume_nm3
        area_nm2 = _surface_area_nm2(padded, spacing, sigma, int(mesh_step), volume_nm3)
        volume_um3 = volume_nm3 / _NM_PER_UM**3
        area_um2 = area_nm2 / _NM_PER_UM**2
        row: dict[str, Any] = {
            "label": new_to_old[index],
            "n_voxels": n_voxels,
            "volume_um3": volume_um3,
            "surface_area_um2": area_um2,
            "sv_ratio_per_um": area_um2 / volume_um3,
            "sphericity": math.pi ** (1 / 3) * (6 * volume_um3) ** (2 / 3) / area_um2,
        }
        for axis, value in zip(_AXES, centroid_nm, strict=True):
            row[f"centroid_{axis}_um"] = value / _NM_PER_UM
        for axis, value in zip(_AXES, start, strict=True):
            row[f"bbox_min_{axis}_vox"] = int(value)
        for axis, value in zip(_AXES, stop, strict=True):
            row[f"bbox_max_{axis}_vox"] = int(value)
        for axis, a, b, s in zip(_AXES, start, stop, spacing, strict=True):
            row[f"bbox_size_{axis}_um"] = (b - a) * s / _NM_PER_UM
        row["axis_major_length_um"] = lengths_nm[0] / _NM_PER_UM
        row["axis_medium_length_um"] = lengths_nm[1] / _NM_PER_UM
        row["axis_minor_length_um"] = lengths_nm[2] / _NM_PER_UM
        row["elongation"] = lengths_nm[0] / lengths_nm[2]
        row["touches_border"] = bool((start == 0).any() or (stop == shape).any())
        if image is not None:
            values = image[box][mask].astype(np.float64)
            row["intensity_mean"] = float(values.mean())
            row["intensity_std"] = float(values.std())
            row["intensity_min"] = float(values.min())
            row["intensity_max"] = float(values.max())
            row["intensity_median"] = float(np.median(values))
        for name, layer in ref_layers.items():
            row[f"dist_surface_to_{name}_um"] = layer.object_gap_nm(mask, box) / _NM_PER_UM
        rows.append(row)

    table = pd.DataFrame(rows)
    centroids_nm = table[["centroid_z_um", "centroid_y_um", "centroid_x_um"]].to_numpy()
    centroids_nm = centroids_nm * _NM_PER_UM
    for name, layer in ref_layers.items():
        distance_nm = layer.point_distances_nm(centroids_nm)
        table[f"dist_centroid_to_{name}_um"] = distance_nm / _NM_PER_UM
    centroids_um = centroids_nm / _NM_PER_UM
    table["nn_dist_um"] = knn_distances(centroids_um, k=1)[:, 0]
    neighbours = knn_distances(centroids_um, k=int(k_neighbours))
    table["knn_mean_dist_um"] = (
        np.full(len(table), np.nan) if np.isnan(neighbours).any() else neighbours.mean(axis=1)
    )
    if density_bandwidth_um is not None:
        table["density_per_um3"] = kernel_density(
            centroids_um, bandwidth_um=float(density_bandwidth_um)
        )
    table["label"] = table["label"].astype(np.uint64)
    table = table[columns].sort_values("label", ignore_index=True)
    return table


def _columns(
    has_intensity: bool, reference_names: list[str], density_bandwidth_um: float | None
) -> list[str]:
    columns = [
        "label",
        "n_voxels",
        "volume_um3",
        "surface_area_um2",
        "sv_ratio_per_um",
        "sphericity",
        *(f"centroid_{a}_um" for a in _AXES),
        *(f"bbox_min_{a}_vox" for a in _AXES),
        *(f"bbox_max_{a}_vox" for a in _AXES),
        *(f"bbox_size_{a}_um" for a in _AXES),
        "axis_major_length_um",
        "axis_medium_length_um",
        "axis_minor_length_um",
        "elongation",
        "touches_border",
    ]
    if has_intensity:
        columns += [f"intensity_{s}" for s in ("mean", "std", "min", "max", "median")]
    for name in reference_names:
        columns += [f"dist_surface_to_{name}_um", f"dist_centroid_to_{name}_um"]
    columns += ["nn_dist_um", "knn_mean_dist_um"]
    if density_bandwidth_um is not None:
        columns.append("density_per_um3")
    return columns
