"""Describe a volume, an OME-Zarr dataset or a shared dataset folder (``vemkit info``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from vemkit.datasets.catalog import layer_from_file, read_dataset_json
from vemkit.io.dataset import Dataset, is_dataset
from vemkit.io.layer import Layer
from vemkit.io.registry import open_layer

__all__ = ["describe_layer", "describe_location"]

# Exact statistics are computed for layers up to this size; larger ones use their
# coarsest pyramid level (or are skipped) so that `info` stays quick.
_STATS_LIMIT_BYTES = 2 * 1024**3


def _value_stats(layer: Layer) -> dict[str, Any]:
    """Value range (images) or label count (labels), exact up to a size limit."""
    import dask
    import fastremap

    source, note = layer, "exact"
    if layer.nbytes > _STATS_LIMIT_BYTES:
        levels = layer.metadata.get("pyramid_layers") or []
        if not levels:
            return {"note": f"skipped: {layer.nbytes / 1e9:.1f} GB and no pyramid to sample"}
        source, note = levels[-1], "estimated from the coarsest pyramid level"
    data = source.to_dask()
    if source.kind == "labels":
        blocks = data.to_delayed().ravel()
        uniques = dask.compute(*[dask.delayed(fastremap.unique)(b) for b in blocks])
        ids = np.unique(np.concatenate(uniques))
        return {
            "n_labels": int(np.count_nonzero(ids)),
            "max_label": int(ids.max()) if ids.size else 0,
            "note": note,
        }
    lo, hi, mean = dask.compute(data.min(), data.max(), data.astype(np.float64).mean())
    return {"min": lo.item(), "max": hi.item(), "mean": float(mean), "note": note}


def describe_layer(layer: Layer, *, stats: bool = True) -> dict[str, Any]:
    """Facts about one layer: shape, dtype, voxel size, chunks, pyramid, value range."""
    meta = layer.metadata
    facts: dict[str, Any] = {
        "name": layer.name,
        "kind": layer.kind,
        "format": meta.get("format", "unknown"),
        "source": meta.get("source"),
        "shape": list(layer.shape),
        "axes": layer.axes,
        "dtype": str(layer.dtype),
        "size_mb": round(layer.nbytes / 1e6, 3),
        "voxel_size_nm": list(layer.voxel_size.as_tuple()),
        "voxel_size_from": meta.get("voxel_size_from", "unknown"),
        "physical_extent_um": [
            round(s * v / 1000.0, 4)
            for s, v in zip(layer.spatial_shape[-3:], layer.voxel_size.as_tuple()[-3:], strict=False)
        ],
        "chunks": list(layer.chunks) if layer.chunks else None,
    }
    levels = meta.get("levels")
    if levels:
        facts["pyramid_levels"] = levels
    if meta.get("label_values"):
        facts["label_values"] = meta["label_values"]
    if stats:
        facts["values"] = _value_stats(layer)
    return facts


def describe_location(
    location: str | os.PathLike[str],
    *,
    voxel_size: Any = None,
    stats: bool = True,
) -> dict[str, Any]:
    """Describe whatever ``location`` is: a volume file, an OME-Zarr dataset, a data folder.

    Returns
    -------
    dict
        ``{"location": ..., "type": "volume"|"dataset"|"shared-dataset", "layers": [...]}``
        plus dataset facts where they exist.
    """
    path = Path(location)
    if path.is_dir() and (path / "dataset.json").is_file():
        info = read_dataset_json(path)
        layers = [
            describe_layer(layer_from_file(info, f), stats=stats)
            for f in info.files.values()
        ]
        return {
            "location": str(path),
            "type": "shared-dataset",
            "name": info.name,
            "modality": info.modality,
            "voxel_size_nm": list(info.voxel_size.as_tuple()) if info.voxel_size else None,
            "license": info.license,
            "layers": layers,
        }
    if is_dataset(path):
        dataset = Dataset.open(path)
        return {
            "location": str(path),
            "type": "dataset",
            "layers": [
                describe_layer(dataset.layer(name), stats=stats)
                for name in dataset.layer_names()
            ],
        }
    layer = open_layer(location, voxel_size=voxel_size)
    # Use the catalogue's voxel size for a file of a shared dataset folder.
    if voxel_size is None and (path.parent / "dataset.json").is_file():
        info = read_dataset_json(path.parent)
        if path.name in info.files:
            layer = layer_from_file(info, info.files[path.name])
    return {
        "location": str(location),
        "type": "volume",
        "layers": [describe_layer(layer, stats=stats)],
    }
