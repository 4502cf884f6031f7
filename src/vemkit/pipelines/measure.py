"""Measure, evaluate, mesh and compare: labels on disk → tables, scores, meshes, statistics."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from vemkit.errors import ConfigError, InvalidVolumeError, UnknownFormatError
from vemkit.geometry import VoxelSize
from vemkit.io.atomic import atomic_output, check_output_path
from vemkit.io.layer import Layer
from vemkit.io.registry import open_layer
from vemkit.io.validate import require_volume, require_voxel_size
from vemkit.measure import (
    bootstrap_class_scores,
    bootstrap_scores,
    compare_groups,
    composition_by_region,
    correlate,
    evaluate,
    measure_regions,
    mesh_objects,
    spatial_distribution,
    write_neuroglancer_precomputed,
    write_obj,
    write_ply,
    write_stl,
)
from vemkit.segmentation import connected_components

__all__ = [
    "compare_table",
    "evaluate_locations",
    "measure_labels",
    "read_table",
    "spatial_summary",
    "write_mesh_files",
    "write_meshes",
    "write_table",
]

log = logging.getLogger(__name__)

MeshFormat = Literal["obj", "ply", "stl", "neuroglancer"]
_MESH_WRITERS = {"obj": write_obj, "ply": write_ply, "stl": write_stl}


def _open_volume(location: str | os.PathLike[str], voxel_size: VoxelSize | None) -> Layer:
    return require_voxel_size(require_volume(open_layer(location, voxel_size=voxel_size)))


def _same_grid(reference: Layer, other: Layer, what: str) -> None:
    if other.shape != reference.shape:
        raise InvalidVolumeError(
            f"{what} has shape {other.shape} but the labels have {reference.shape}; give "
            "volumes on the same voxel grid"
        )


def write_table(table: pd.DataFrame, output: str | os.PathLike[str], *, overwrite: bool) -> Path:
    """Write a table as CSV or Parquet (chosen by suffix), atomically."""
    out = Path(output)
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise UnknownFormatError(
            f"cannot write a table to {str(out)!r}; use a .csv or .parquet file name"
        )
    with atomic_output(out, overwrite=overwrite) as tmp:
        if suffix == ".csv":
            table.to_csv(tmp, index=False)
        else:
            table.to_parquet(tmp, index=False)
    return out


def read_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a measurement table written by :func:`write_table`."""
    source = Path(path)
    if not source.is_file():
        from vemkit.errors import VolumeNotFoundError

        raise VolumeNotFoundError(f"no such table: {str(source)!r}")
    if source.suffix.lower() == ".csv":
        return pd.read_csv(source)
    if source.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(source)
    raise UnknownFormatError(f"cannot read table {str(source)!r}; use .csv or .parquet")


def measure_labels(
    labels: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    raw: str | os.PathLike[str] | None = None,
    references: Mapping[str, str | os.PathLike[str]] | None = None,
    voxel_size: VoxelSize | None = None,
    k_neighbours: int = 8,
    density_bandwidth_um: float | None = None,
    cells: str | os.PathLike[str] | None = None,
    exclude: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Measure every object of a label volume and write one row per object.

    Parameters
    ----------
    labels : path
        Instance labels (e.g. ``seg.zarr/labels/mitochondria``).
    output : path
        ``.csv`` or ``.parquet`` table.
    raw : path, optional
        Intensity volume for intensity statistics.
    references : mapping of name to path, optional
        Label/mask volumes to measure distances to, e.g. ``{"nucleus": "seg.zarr/labels/nuclei"}``;
        each adds ``dist_surface_to_NAME_um`` and ``dist_centroid_to_NAME_um``.
    voxel_size : VoxelSize, optional
        Overrides the voxel size of every input (nm).
    cells : path, optional
        Cell labels (or a cell mask). Adds a ``cell`` column (the cell holding most of
        each object, 0 for none) and writes a per-cell table next to ``output``
        (``NAME.cells.csv`` for ``NAME.csv``): cell volume, organelle volume, volume
        fraction and object count per cell.
    exclude : path, optional
        With ``cells``: a mask removed from each cell to get its cytoplasm (usually the
        nuclei); adds the cytoplasm volume and the volume fraction within it.
    overwrite : bool
        Replace existing outputs.

    Returns
    -------
    table, summary
        The table, and a summary: the spatial distribution of the object centroids and,
        with ``cells``, the per-cell table's path and median volume fractions.
    """
    if exclude is not None and cells is None:
        raise ConfigError("--exclude removes a mask from the cells; give --cells too")
    cell_table: pd.DataFrame | None = None
    cell_output = _cells_table_path(output)
    check_output_path(output, overwrite=overwrite)
    if cells is not None:
        check_output_path(cell_output, overwrite=overwrite)
    layer = _open_volume(labels, voxel_size)
    if layer.kind != "labels" and not np.issubdtype(layer.dtype, np.integer):
        raise InvalidVolumeError(f"{str(labels)!r} holds {layer.dtype} values, not labels")
    values = layer.read()
    intensity: NDArray[Any] | None = None
    if raw is not None:
        raw_layer = _open_volume(raw, voxel_size or layer.voxel_size)
        _same_grid(layer, raw_layer, f"raw {str(raw)!r}")
        intensity = raw_layer.read()
    reference_arrays = {}
    for name, location in (references or {}).items():
        ref = _open_volume(location, voxel_size or layer.voxel_size)
        _same_grid(layer, ref, f"reference {name!r}")
        reference_arrays[name] = ref.read() > 0
    if cells is not None:
        cell_layer = _open_volume(cells, voxel_size or layer.voxel_size)
        _same_grid(layer, cell_layer, f"cells {str(cells)!r}")
        excluded = None
        if exclude is not None:
            exclude_layer = _open_volume(exclude, voxel_size or layer.voxel_size)
            _same_grid(layer, exclude_layer, f"exclude {str(exclude)!r}")
            excluded = exclude_layer.read() != 0
        cell_values = cell_layer.read()
        if not (cell_values.dtype == bool or np.issubdtype(cell_values.dtype, np.integer)):
            raise InvalidVolumeError(f"cells {str(cells)!r} holds {cell_values.dtype}, not labels")
        cell_table, object_cell = composition_by_region(
            values, cell_values, voxel_size=layer.voxel_size, exclude=excluded
        )
        cell_table = cell_table.rename(columns={"region": "cell"})
    table = measure_regions(
        values,
        voxel_size=layer.voxel_size,
        intensity=intensity,
        references=reference_arrays,
        k_neighbours=k_neighbours,
        density_bandwidth_um=density_bandwidth_um,
    )
    summary: dict[str, Any] = {"n_objects": len(table)}
    if cell_table is not None:
        # measure_regions lists the objects in ascending id order, as object_cell does
        table.insert(1, "cell", object_cell)
        summary["cells"] = {
            "table": str(cell_output),
            "n_cells": len(cell_table),
            "median_volume_fraction": float(cell_table["volume_fraction"].median())
            if len(cell_table)
            else None,
        }
        if "volume_fraction_cytoplasm" in cell_table and len(cell_table):
            summary["cells"]["median_volume_fraction_cytoplasm"] = float(
                cell_table["volume_fraction_cytoplasm"].median()
            )
    spatial = spatial_summary(table, layer)
    if spatial is not None:
        summary["spatial"] = spatial
    if cell_table is not None:
        write_table(cell_table, cell_output, overwrite=overwrite)
    write_table(table, output, overwrite=overwrite)
    return table, summary


def _cells_table_path(output: str | os.PathLike[str]) -> Path:
    """``table.csv`` → ``table.cells.csv`` (same format)."""
    out = Path(output)
    return out.with_name(f"{out.stem}.cells{out.suffix}")


def spatial_summary(table: pd.DataFrame, layer: Layer) -> dict[str, Any] | None:
    """Spatial distribution of the object centroids over the layer's volume (None below 3)."""
    if len(table) < 3:
        return None
    centroids = table[["centroid_z_um", "centroid_y_um", "centroid_x_um"]].to_numpy()
    extent = np.asarray(layer.spatial_shape) * np.asarray(layer.voxel_size.as_tuple()) / 1e3
    return spatial_distribution(centroids, region_volume_um3=float(np.prod(extent)))


def evaluate_locations(
    prediction: str | os.PathLike[str],
    truth: str | os.PathLike[str],
    *,
    voxel_size: VoxelSize | None = None,
    mode: Literal["auto", "instance", "semantic"] = "auto",
    ignore_label: int | None = None,
    confidence_resamples: int = 0,
) -> dict[str, Any]:
    """Score a segmentation against ground truth (see :func:`vemkit.measure.evaluate`).

    With ``confidence_resamples > 0`` the result also holds ``confidence_intervals``:
    95% block-bootstrap intervals of foreground IoU, Dice and object F1 (see
    :func:`vemkit.measure.bootstrap_scores`); objects are the instance labels, or the
    connected components of a binary mask. Of a multi-class map: of the macro Dice
    (``dice``, = ``macro_f1``), the support-weighted F1 and each class's F1
    (``per_class``; :func:`vemkit.measure.bootstrap_class_scores`).
    """
    gt_layer = _open_volume(truth, voxel_size)
    pred_layer = _open_volume(prediction, voxel_size or gt_layer.voxel_size)
    _same_grid(gt_layer, pred_layer, f"prediction {str(prediction)!r}")
    instance: bool | str = {"auto": "auto", "instance": True, "semantic": False}[mode]
    pred, gt = pred_layer.read(), gt_layer.read()
    scores = evaluate(
        pred,
        gt,
        voxel_size=gt_layer.voxel_size,
        instance=instance,
        ignore_label=ignore_label,
    )
    if confidence_resamples > 0:
        labels = [k for k in scores["confusion"]["labels"] if k not in (0, ignore_label)]
        if scores["mode"] == "semantic" and len(labels) > 1:
            intervals = bootstrap_class_scores(  # the classes evaluate() scored
                pred,
                gt,
                [int(k) for k in labels],
                spacing=gt_layer.voxel_size.as_tuple(),
                n_resamples=confidence_resamples,
                ignore_label=ignore_label,
            )
            intervals["dice"] = intervals["macro_f1"]  # voxel F1 = Dice, per class and mean
            scores["confidence_intervals"] = intervals
            return scores
        ignore = ignore_label
        if scores["mode"] == "semantic":
            # objects of a mask are its face-connected components, as in evaluate()
            known = np.ones(gt.shape, bool) if ignore is None else gt != ignore
            pred = connected_components((pred != 0) & known, connectivity=6)
            objects = connected_components((gt != 0) & known, connectivity=6)
            if ignore is not None:
                ignore = int(objects.max()) + 1
                objects[~known] = ignore
            gt = objects
        scores["confidence_intervals"] = bootstrap_scores(
            pred,
            gt,
            thresholds=scores["thresholds"],
            spacing=gt_layer.voxel_size.as_tuple(),
            n_resamples=confidence_resamples,
            ignore_label=ignore,
        )
    return scores


def write_meshes(
    labels: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    mesh_format: MeshFormat = "obj",
    voxel_size: VoxelSize | None = None,
    step: int = 1,
    smoothing_iterations: int = 0,
    simplify_ratio: float | None = None,
    properties: pd.DataFrame | None = None,
    overwrite: bool = False,
) -> tuple[Path, int]:
    """Mesh every object and write one file per object (or a neuroglancer source) to a folder.

    Returns
    -------
    folder, n_meshes
    """
    if mesh_format not in (*_MESH_WRITERS, "neuroglancer"):
        raise ConfigError(f"unknown mesh format {mesh_format!r}; use obj, ply, stl or neuroglancer")
    layer = _open_volume(labels, voxel_size)
    meshes = mesh_objects(
        layer.read(),
        voxel_size=layer.voxel_size,
        step=step,
        smoothing_iterations=smoothing_iterations,
        simplify_ratio=simplify_ratio,
    )
    out = Path(output)
    if mesh_format == "neuroglancer":
        write_neuroglancer_precomputed(
            meshes, out, segment_properties=properties, overwrite=overwrite
        )
        return out, len(meshes)
    write_mesh_files(meshes, out, mesh_format=mesh_format, overwrite=overwrite)
    return out, len(meshes)


def write_mesh_files(
    meshes: Mapping[int, Any],
    output: str | os.PathLike[str],
    *,
    mesh_format: Literal["obj", "ply", "stl"],
    overwrite: bool = False,
) -> Path:
    """Write one ``LABEL.FORMAT`` file per mesh into a new folder, atomically."""
    writer = _MESH_WRITERS[mesh_format]
    out = Path(output)
    with atomic_output(out, overwrite=overwrite) as tmp:
        tmp.mkdir()
        for label, mesh in meshes.items():
            writer(mesh, tmp / f"{label}.{mesh_format}")
    return out


def compare_table(
    table: str | os.PathLike[str],
    *,
    value: str,
    group: str | None = None,
    against: str | None = None,
    method: Literal["pearson", "spearman"] = "spearman",
) -> dict[str, Any]:
    """Group comparison of ``value`` by ``group``, or correlation of ``value`` with ``against``."""
    df = read_table(table)
    for column in (value, group, against):
        if column is not None and column not in df.columns:
            raise ConfigError(
                f"table {str(table)!r} has no column {column!r}; it has: {', '.join(df.columns)}"
            )
    if (group is None) == (against is None):
        raise ConfigError("give exactly one of --group (compare groups) or --against (correlate)")
    if group is not None:
        return compare_groups(df, value, group)
    assert against is not None
    return correlate(df, value, against, method=method)
