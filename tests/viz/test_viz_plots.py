"""Measurement plots and mesh renders: valid images, labelled axes with units."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from vemkit.errors import ConfigError, UnknownFormatError
from vemkit.geometry import VoxelSize
from vemkit.measure import mesh_objects
from vemkit.viz import (
    column_label,
    figure_png,
    plot_histograms,
    plot_scatter,
    plot_violins,
    render_meshes,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def table():
    rng = np.random.default_rng(1)
    volume = rng.lognormal(-3, 1, 24)
    return pd.DataFrame(
        {
            "label": np.arange(1, 25),
            "volume_um3": volume,
            "surface_area_um2": 4.8 * volume ** (2 / 3),
            "sv_ratio_per_um": 4.8 * volume ** (-1 / 3),
            "sphericity": rng.uniform(0.6, 1.0, 24),
            "condition": ["control", "treated"] * 12,
        }
    )


def _assert_png(path):
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 1000


def test_column_label_units():
    assert column_label("volume_um3") == "volume (µm³)"
    assert column_label("surface_area_um2") == "surface area (µm²)"
    assert column_label("sv_ratio_per_um") == "surface / volume (µm⁻¹)"
    assert column_label("nn_dist_um") == "nearest-neighbour distance (µm)"
    assert column_label("sphericity") == "sphericity"


def test_histograms_png_and_labels(tmp_path, table):
    columns = ["volume_um3", "surface_area_um2", "sv_ratio_per_um"]
    fig = plot_histograms(table, columns, tmp_path / "h.png", log_columns=["volume_um3"], dpi=40)
    assert isinstance(fig, Figure)
    _assert_png(tmp_path / "h.png")
    xlabels = [ax.get_xlabel() for ax in fig.axes]
    assert xlabels == ["volume (µm³)", "surface area (µm²)", "surface / volume (µm⁻¹)"]
    assert all(ax.get_ylabel() == "objects" for ax in fig.axes)
    assert fig.axes[0].get_xscale() == "log"


def test_violins_by_group_and_svg(tmp_path, table):
    fig = plot_violins(table, ["sv_ratio_per_um"], tmp_path / "v.svg", by="condition", dpi=40)
    text = (tmp_path / "v.svg").read_text(encoding="utf-8")
    assert "<svg" in text
    ax = fig.axes[0]
    assert ax.get_ylabel() == "surface / volume (µm⁻¹)"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["control", "treated"]
    # a one-object group gets points only, no crash
    plot_violins(table.head(3), ["volume_um3"], by="condition")


def test_a_group_without_values_in_a_column_gets_no_slot(table):
    partial = table.copy()
    partial.loc[partial["condition"] == "control", "sphericity"] = np.nan
    fig = plot_violins(partial, ["volume_um3", "sphericity"], by="condition")
    ticks = [[t.get_text() for t in ax.get_xticklabels()] for ax in fig.axes[:2]]
    assert ticks == [["control", "treated"], ["treated"]]


def test_scatter_correlations_in_title(tmp_path, table):
    fig = plot_scatter(
        table, "volume_um3", "sv_ratio_per_um", tmp_path / "s.png", color="sphericity", logx=True
    )
    _assert_png(tmp_path / "s.png")
    ax = fig.axes[0]
    assert "Pearson r = " in ax.get_title()
    assert "Spearman ρ = -1.000" in ax.get_title()  # S/V is a decreasing function of V
    assert ax.get_xlabel() == "volume (µm³)"
    assert fig.axes[1].get_ylabel() == "sphericity"  # colour bar
    small = plot_scatter(table.head(2), "volume_um3", "sphericity")
    assert "not defined" in small.axes[0].get_title()


def test_render_meshes_coloured_with_colorbar(tmp_path):
    labels = np.zeros((16, 24, 24), np.uint32)
    zz, yy, xx = np.ogrid[:16, :24, :24]
    labels[(zz - 8) ** 2 + (yy - 8) ** 2 + (xx - 8) ** 2 <= 16] = 3
    labels[(zz - 8) ** 2 + (yy - 16) ** 2 + (xx - 16) ** 2 <= 25] = 5
    meshes = mesh_objects(labels, voxel_size=VoxelSize(20, 10, 10))
    fig = render_meshes(meshes, {3: 40.0, 5: 30.0}, tmp_path / "r.png", max_faces=500, dpi=40)
    _assert_png(tmp_path / "r.png")
    ax3d = fig.axes[0]
    assert (ax3d.get_xlabel(), ax3d.get_ylabel(), ax3d.get_zlabel()) == (
        "x (µm)",
        "y (µm)",
        "z (µm)",
    )
    assert fig.axes[1].get_ylabel() == "surface / volume (µm⁻¹)"
    assert sum(len(c.get_paths()) for c in ax3d.collections) <= 500
    assert figure_png(render_meshes({})).startswith(PNG_MAGIC)


def test_plot_errors(tmp_path, table):
    with pytest.raises(ConfigError, match="no column"):
        plot_histograms(table, ["nope"])
    with pytest.raises(ConfigError, match="group"):
        plot_violins(table, ["volume_um3"], by="nope")
    with pytest.raises(UnknownFormatError):
        plot_histograms(table, ["volume_um3"], tmp_path / "h.gif")


def test_fold_scores_plot(tmp_path):
    from vemkit.viz import plot_fold_scores

    fig = plot_fold_scores(
        ["0-3", "4-7", "8-11"],
        {"foreground IoU": [0.8, 0.85, 0.9], "object F1@0.5": [0.7, None, 0.9]},
        tmp_path / "folds.png",
        pooled={"foreground IoU": (0.85, 0.8, 0.9), "object F1@0.5": (0.8, None, None)},
        targets={"object F1@0.5": 0.85},
        title="cv",
    )
    assert (tmp_path / "folds.png").stat().st_size > 1000
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0-3", "4-7", "8-11"]
    per_fold = [line for line in ax.lines if line.get_label().endswith("per fold")]
    assert list(per_fold[0].get_ydata()) == [0.8, 0.85, 0.9]
    assert len(ax.lines) == 5  # 2 x per fold, 2 pooled lines, 1 target
    assert len(ax.patches) == 1  # one interval band (the F1 has no interval)
    with pytest.raises(ConfigError, match="2 scores for 3 folds"):
        plot_fold_scores(["a", "b", "c"], {"IoU": [0.5, 0.6]})
