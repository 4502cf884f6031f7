"""Volumes in physical units: the Layer, one reader registry, OME-Zarr datasets, TIFF export.

Examples
--------
>>> from vemkit.io import open_layer, Dataset  # doctest: +SKIP
>>> raw = open_layer("stack.tif", voxel_size="50,4.6,4.6")  # doctest: +SKIP
>>> ds = Dataset.create("stack.zarr", raw)  # doctest: +SKIP
"""

from vemkit.io.atomic import atomic_output
from vemkit.io.dataset import Dataset, is_dataset
from vemkit.io.describe import describe_layer
from vemkit.io.layer import Layer, LayerKind
from vemkit.io.ome_zarr import write_ome_zarr
from vemkit.io.pyramid import downsample_image, downsample_labels, pick_level
from vemkit.io.registry import open_layer, parse_location
from vemkit.io.tiff_writer import write_tiff
from vemkit.io.validate import (
    require_finite,
    require_nonempty,
    require_volume,
    require_voxel_size,
)

__all__ = [
    "Dataset",
    "Layer",
    "LayerKind",
    "atomic_output",
    "describe_layer",
    "downsample_image",
    "downsample_labels",
    "is_dataset",
    "open_layer",
    "parse_location",
    "pick_level",
    "require_finite",
    "require_nonempty",
    "require_volume",
    "require_voxel_size",
    "write_ome_zarr",
    "write_tiff",
]
