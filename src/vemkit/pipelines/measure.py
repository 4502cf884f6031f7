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
from vemkit.io.atomic import atomic_output
from vemkit.io.layer import Layer
from vemkit.io.registry import open_layer
from vemkit.io.validate import require_volume, require_voxel_size
from vemkit.measure import (
    compare_groups,
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

    Returns
    -------
    table, summary
        The table, and a spatial-distribution summary of the object centroids.
    """
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
    table = measure_regions(
        values,
        voxel_size=layer.voxel_size,
        intensity=intensity,
        references=reference_arrays,
        k_neighbours=k_neighbours,
        density_bandwidth_um=density_bandwidth_um,
    )
    summary: dict[str, Any] = {"n_objects": len(table)}
    spatial = spatial_summary(table, layer)
    if spatial is not None:
        summary["spatial"] = spatial
    write_table(table, output, overwrite=overwrite)
    return table, summary


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
) -> dict[str, Any]:
    """Score a segmentation against ground truth (see :func:`vemkit.measure.evaluate`)."""
    gt_layer = _open_volume(truth, voxel_size)
    pred_layer = _open_volume(prediction, voxel_size or gt_layer.voxel_size)
    _same_grid(gt_layer, pred_layer, f"prediction {str(prediction)!r}")
    instance: bool | str = {"auto": "auto", "instance": True, "semantic": False}[mode]
    return evaluate(
        pred_layer.read(),
        gt_layer.read(),
        voxel_size=gt_layer.voxel_size,
        instance=instance,
        ignore_label=ignore_label,
    )


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
