"""Facts about a layer for people: shape, voxel size, chunks, pyramid, value range."""

from __future__ import annotations

from typing import Any

import numpy as np

from vemkit.io.layer import Layer

__all__ = ["describe_layer"]

# Exact statistics are computed for layers up to this size; larger ones are sampled from
# their coarsest pyramid level (or skipped) so that `vemkit info` stays quick.
_STATS_LIMIT_BYTES = 2 * 1024**3


def _value_stats(layer: Layer) -> dict[str, Any]:
    """Value range (images) or label count (labels), exact up to a size limit."""
    import dask
    import fastremap

    source, note = layer, "exact"
    if layer.nbytes > _STATS_LIMIT_BYTES:
        from vemkit.io.formats.ome_zarr import list_levels

        is_zarr = layer.metadata.get("format") == "ome-zarr"
        location = layer.metadata.get("source") if is_zarr else None
        levels = list_levels(location) if location else []
        if len(levels) < 2:
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


def describe_layer(layer: Layer, *, stats: bool = False) -> dict[str, Any]:
    """JSON-ready facts about one layer.

    Parameters
    ----------
    layer : Layer
        Any layer; pyramid facts come from ``metadata["levels_shape"]`` and
        ``metadata["levels_voxel_size"]`` when the format has levels.
    stats : bool
        Also compute the value range (images) or the number of labels (labels); this reads
        the data (exact up to 2 GB, sampled from the coarsest level above).
    """
    meta = layer.metadata
    levels_shape = meta.get("levels_shape") or [layer.spatial_shape]
    levels_size = meta.get("levels_voxel_size") or [layer.voxel_size.as_tuple()]
    facts: dict[str, Any] = {
        "name": layer.name,
        "kind": layer.kind,
        "format": meta.get("format", "unknown"),
        "source": meta.get("source"),
        "shape": list(layer.shape),
        "axes": layer.axes,
        "dtype": str(layer.dtype),
        "nbytes": layer.nbytes,
        "voxel_size_nm": list(layer.voxel_size.as_tuple()),
        "voxel_size_from": meta.get("voxel_size_from", "unknown"),
        "physical_extent_um": [
            round(s * v / 1000.0, 4)
            for s, v in zip(
                layer.spatial_shape, layer.voxel_size.as_tuple()[-layer.spatial_ndim :], strict=True
            )
        ],
        "chunks": list(layer.chunks) if layer.chunks else None,
        "n_levels": len(levels_shape),
        "levels": [
            {"shape": list(shape), "voxel_size_nm": list(size)}
            for shape, size in zip(levels_shape, levels_size, strict=False)
        ],
    }
    if meta.get("reference"):
        facts["reference"] = True
    if meta.get("label_values"):
        facts["label_values"] = meta["label_values"]
    if stats:
        facts["values"] = _value_stats(layer)
    return facts
