"""Figures from arrays and tables: orthogonal slices, measurement plots, 3D mesh renders.

No file formats beyond images, no Dask.
"""

from vemkit.viz.orthoslices import label_colors, save_orthoslices
from vemkit.viz.plots import (
    MeshLike,
    column_label,
    figure_png,
    plot_differences,
    plot_fold_scores,
    plot_histograms,
    plot_scatter,
    plot_transfer,
    plot_violins,
    render_meshes,
    save_figure,
)

__all__ = [
    "MeshLike",
    "column_label",
    "figure_png",
    "label_colors",
    "plot_differences",
    "plot_fold_scores",
    "plot_histograms",
    "plot_scatter",
    "plot_transfer",
    "plot_violins",
    "render_meshes",
    "save_figure",
    "save_orthoslices",
]
