"""Volume composition of a region: how much of a cell each organelle occupies."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import fastremap
import numpy as np
import pandas as pd
from numpy.typing import NDArray

from vemkit.errors import ConfigError, InvalidVolumeError
from vemkit.geometry import VoxelSize

__all__ = ["volume_fractions"]

_NM3_PER_UM3 = 1.0e9


def volume_fractions(
    labels_by_name: Mapping[str, NDArray[Any]],
    *,
    region_mask: NDArray[Any],
    voxel_size: VoxelSize | Sequence[float] | float,
) -> pd.DataFrame:
    """Volume fraction of each structure within a region (a cell, its cytoplasm, ...).

    Only the part of each structure inside ``region_mask`` counts. Choosing the region
    is the caller's business; the usual ones are the whole cell and the cytoplasm,
    i.e. the cell without its nucleus::

        cell = cell_labels == cell_id
        cytoplasm = cell & (nuclei == 0)
        volume_fractions({"mitochondria": mitos}, region_mask=cytoplasm, voxel_size=vs)

    (HeLa mitochondria occupy about 10 % of the cytoplasm, Posakony et al. 1977.)

    Parameters
    ----------
    labels_by_name : mapping of str to (Z, Y, X) ndarray
        Structures by name, each a label array or a mask (any non-zero voxel belongs to
        the structure).
    region_mask : (Z, Y, X) ndarray
        The region; non-zero voxels belong to it.
    voxel_size : VoxelSize or (z, y, x) sequence or float
        Voxel size in nm.

    Returns
    -------
    pandas.DataFrame
        One row per name, in the mapping's order, with columns ``name``,
        ``volume_um3`` (structure volume inside the region), ``region_volume_um3``,
        ``volume_fraction`` (in [0, 1]; NaN if the region is empty) and ``n_objects``
        (distinct non-zero labels with at least one voxel inside the region; 1 for a
        non-empty mask).

    Raises
    ------
    InvalidVolumeError
        If an array is not 3-D or differs in shape from ``region_mask``.
    ConfigError
        If ``labels_by_name`` is empty or a name is not a non-empty string.

    Examples
    --------
    >>> cell = np.zeros((4, 10, 10), bool); cell[:, :, :] = True
    >>> mito = np.zeros((4, 10, 10), np.uint8); mito[:, :2, :5] = 1; mito[:, 8:, :] = 2
    >>> table = volume_fractions({"mito": mito}, region_mask=cell, voxel_size=10)
    >>> table[["volume_fraction", "n_objects"]].values.tolist()
    [[0.3, 2.0]]
    """
    if not labels_by_name:
        raise ConfigError("labels_by_name is empty; give at least one structure")
    region = np.asarray(region_mask) != 0
    if region.ndim != 3:
        raise InvalidVolumeError(
            f"region_mask must be a 3-D (z, y, x) array, got {region.ndim} dimensions"
        )
    voxel_um3 = VoxelSize.coerce(voxel_size).volume_nm3 / _NM3_PER_UM3
    region_voxels = int(np.count_nonzero(region))
    region_um3 = region_voxels * voxel_um3
    rows = []
    for name, labels in labels_by_name.items():
        if not isinstance(name, str) or not name:
            raise ConfigError(f"structure names must be non-empty strings, got {name!r}")
        array = np.asarray(labels)
        if array.shape != region.shape:
            raise InvalidVolumeError(
                f"{name!r} has shape {array.shape} but region_mask has {region.shape}"
            )
        inside = array[region]
        ids = fastremap.unique(inside) if inside.size else np.zeros(0, dtype=array.dtype)
        n_objects = int(np.count_nonzero(ids))
        voxels = int(np.count_nonzero(inside))
        rows.append(
            {
                "name": name,
                "volume_um3": voxels * voxel_um3,
                "region_volume_um3": region_um3,
                "volume_fraction": voxels / region_voxels if region_voxels else float("nan"),
                "n_objects": n_objects,
            }
        )
    return pd.DataFrame(rows)
