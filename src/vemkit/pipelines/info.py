"""Describe a volume, an OME-Zarr dataset or a shared dataset folder (``vemkit info``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from vemkit.datasets.catalog import layer_from_file, read_dataset_json
from vemkit.io.dataset import Dataset, is_dataset
from vemkit.io.describe import describe_layer
from vemkit.io.registry import open_layer

__all__ = ["describe_location"]


def describe_location(
    location: str | os.PathLike[str], *, voxel_size: Any = None, stats: bool = True
) -> dict[str, Any]:
    """Describe whatever ``location`` is: a volume file, an OME-Zarr dataset, a data folder.

    Returns
    -------
    dict
        ``{"location": ..., "type": "volume"|"dataset"|"shared-dataset", "layers": [...]}``
        plus dataset-level facts where they exist.
    """
    path = Path(location)
    if path.is_dir() and (path / "dataset.json").is_file():
        info = read_dataset_json(path)
        return {
            "location": str(path),
            "type": "shared-dataset",
            "name": info.name,
            "modality": info.modality,
            "voxel_size_nm": list(info.voxel_size.as_tuple()) if info.voxel_size else None,
            "license": info.license,
            "layers": [
                describe_layer(layer_from_file(info, f), stats=stats) for f in info.files.values()
            ],
        }
    if is_dataset(path):
        return {"location": str(path), "type": "dataset", **Dataset.open(path).info(stats=stats)}
    layer = open_layer(location, voxel_size=voxel_size)
    # A file of a shared dataset folder takes its voxel size and label meanings from there.
    if voxel_size is None and (path.parent / "dataset.json").is_file():
        info = read_dataset_json(path.parent)
        if path.name in info.files:
            layer = layer_from_file(info, info.files[path.name])
    return {
        "location": str(location),
        "type": "volume",
        "layers": [describe_layer(layer, stats=stats)],
    }
