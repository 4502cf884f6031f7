"""Figures from arrays (orthogonal slices with label overlays); no file formats, no Dask."""

from vemkit.viz.orthoslices import label_colors, save_orthoslices

__all__ = ["label_colors", "save_orthoslices"]
