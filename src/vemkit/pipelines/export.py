"""Exports for other tools: webKnossos NML seed points and neuroglancer viewer states."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from vemkit.errors import ConfigError, InvalidVolumeError
from vemkit.geometry import VoxelSize
from vemkit.io.atomic import atomic_output, check_output_path
from vemkit.io.neuroglancer import Scheme, neuroglancer_state
from vemkit.io.webknossos import write_nml
from vemkit.pipelines.measure import read_table

__all__ = ["export_neuroglancer", "export_nml", "table_points_nm"]

# (column prefix, column suffix, factor to nm or None for voxels), in order of preference.
_POINT_COLUMNS: tuple[tuple[str, str, float | None], ...] = (
    ("centroid_", "_nm", 1.0),
    ("centroid_", "_um", 1000.0),
    ("", "_nm", 1.0),
    ("", "_um", 1000.0),
    ("centroid_", "_vox", None),
    ("", "_vox", None),
    ("", "", None),
)


def table_points_nm(
    table: pd.DataFrame, *, voxel_size: VoxelSize | None = None
) -> tuple[NDArray[np.float64], str]:
    """Find z, y, x point columns in a table and return the points in nm.

    Recognised (first match wins): ``centroid_{z,y,x}_nm``, ``centroid_{z,y,x}_um`` (as
    written by ``vemkit measure``), ``{z,y,x}_nm``, ``{z,y,x}_um``, and voxel columns
    ``centroid_{z,y,x}_vox``, ``{z,y,x}_vox`` or plain ``z, y, x`` (these need
    ``voxel_size``).

    Returns
    -------
    points_nm : (N, 3) ndarray of float64
    columns : str
        Which columns were used, for messages.

    Raises
    ------
    ConfigError
        No point columns, or voxel columns without a voxel size.
    """
    for prefix, suffix, factor in _POINT_COLUMNS:
        names = [f"{prefix}{axis}{suffix}" for axis in "zyx"]
        if not all(name in table.columns for name in names):
            continue
        values = table[names].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
        if factor is None:
            if voxel_size is None:
                raise ConfigError(
                    f"the table gives points in voxels ({', '.join(names)}); pass the voxel "
                    "size they refer to"
                )
            return values * np.asarray(voxel_size.as_tuple()), ", ".join(names)
        return values * factor, ", ".join(names)
    raise ConfigError(
        "the table has no point columns; expected centroid_z_um/centroid_y_um/centroid_x_um "
        "(from `vemkit measure`), z_nm/y_nm/x_nm, z_um/y_um/x_um or z/y/x in voxels; it has: "
        + ", ".join(map(str, table.columns))
    )


def _ids(table: pd.DataFrame) -> list[int] | None:
    for column in ("label", "id"):
        if column in table.columns:
            values = pd.to_numeric(table[column], errors="coerce")
            if values.notna().all() and (values > 0).all() and values.is_unique:
                return [int(v) for v in values]
    return None


def export_nml(
    table: str | os.PathLike[str] | pd.DataFrame,
    output: str | os.PathLike[str],
    *,
    voxel_size: VoxelSize,
    dataset_name: str = "vemkit",
    name_prefix: str = "object",
    comment: str | None = None,
    overwrite: bool = False,
) -> tuple[Path, int]:
    """Write the points of a table (e.g. object centroids) as a webKnossos NML skeleton.

    Parameters
    ----------
    table : path or DataFrame
        CSV/Parquet with point columns (see :func:`table_points_nm`); a ``label`` or
        ``id`` column becomes the tree ids, a ``name`` column the tree names, and
        ``volume_um3`` sets each node's radius to the equivalent sphere radius.
    output : path
        ``.nml`` file.
    voxel_size : VoxelSize
        Voxel size (nm) of the webKnossos dataset the nodes refer to.
    dataset_name : str
        webKnossos dataset name stored in the file.
    name_prefix : str
        Tree names are ``"{name_prefix} {id}"`` when the table has no ``name`` column.

    Returns
    -------
    path, n_points
    """
    check_output_path(output, overwrite=overwrite)
    df = table if isinstance(table, pd.DataFrame) else read_table(table)
    points, _ = table_points_nm(df, voxel_size=voxel_size)
    keep = np.all(np.isfinite(points), axis=1)
    if not keep.all():
        raise InvalidVolumeError(
            f"{int((~keep).sum())} rows of the table have missing coordinates; remove them first"
        )
    ids = _ids(df)
    shown = ids if ids is not None else list(range(1, len(df) + 1))
    names = (
        [str(n) for n in df["name"]]
        if "name" in df.columns
        else [f"{name_prefix} {i}" for i in shown]
    )
    radii = None
    if "radius_nm" in df.columns:
        radii = pd.to_numeric(df["radius_nm"], errors="coerce").to_numpy(np.float64)
    elif "volume_um3" in df.columns:
        volume = pd.to_numeric(df["volume_um3"], errors="coerce").to_numpy(np.float64)
        radii = np.cbrt(3.0 * np.clip(volume, 0, None) / (4.0 * math.pi)) * 1000.0
    if radii is not None and not np.all(np.isfinite(radii)):
        radii = None
    path = write_nml(
        output,
        points,
        voxel_size=voxel_size,
        ids=shown,
        names=names,
        radii_nm=radii,
        dataset_name=dataset_name,
        comment=comment,
        overwrite=overwrite,
    )
    return path, len(points)


def export_neuroglancer(
    dataset: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    base_url: str,
    layers: Sequence[str] | None = None,
    dataset_url: str | None = None,
    scheme: Scheme = "zarr",
    overwrite: bool = False,
) -> tuple[Path, dict[str, Any]]:
    """Write a neuroglancer viewer state (JSON) for a dataset served under ``base_url``.

    See :func:`vemkit.io.neuroglancer.neuroglancer_state` for the parameters.

    Returns
    -------
    path, state
    """
    target = check_output_path(output, overwrite=overwrite)
    state = neuroglancer_state(
        dataset, base_url=base_url, layers=layers, dataset_url=dataset_url, scheme=scheme
    )
    with atomic_output(target, overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    return target, state
