"""Plots of measurement tables and 3D mesh renderings, in physical units.

Every function builds a stand-alone :class:`matplotlib.figure.Figure` on the Agg canvas
(never through ``pyplot``, so no global figure state is created or leaked), optionally
saves it (PNG, SVG or PDF, chosen by the file suffix) and returns it.

Column names follow the measurement tables of :func:`vemkit.measure.measure_regions`;
:func:`column_label` turns them into axis labels with units (``volume_um3`` →
"volume (µm³)").
"""

from __future__ import annotations

import io
import math
import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullFormatter
from numpy.typing import NDArray

from vemkit.errors import ConfigError, UnknownFormatError

__all__ = [
    "MeshLike",
    "column_label",
    "figure_png",
    "plot_differences",
    "plot_fold_scores",
    "plot_histograms",
    "plot_scatter",
    "plot_transfer",
    "plot_violins",
    "render_meshes",
    "save_figure",
]

_SUFFIX_UNITS = (
    ("_per_um3", "µm⁻³"),
    ("_per_um2", "µm⁻²"),
    ("_per_um", "µm⁻¹"),
    ("_um3", "µm³"),
    ("_um2", "µm²"),
    ("_um", "µm"),
    ("_nm3", "nm³"),
    ("_nm2", "nm²"),
    ("_nm", "nm"),
    ("_vox", "voxels"),
)
_NAMES = {
    "sv_ratio": "surface / volume",
    "n_voxels": "voxels",
    "nn_dist": "nearest-neighbour distance",
    "knn_mean_dist": "mean k-NN distance",
    "density": "centroid density",
}
_FORMATS = {".png", ".svg", ".pdf"}


class MeshLike(Protocol):
    """A triangle mesh in nm with ``(x, y, z)`` vertices, e.g. :class:`vemkit.measure.Mesh`."""

    @property
    def vertices_nm(self) -> NDArray[Any]: ...  # noqa: D102

    @property
    def faces(self) -> NDArray[Any]: ...  # noqa: D102


def column_label(column: str) -> str:
    """Axis label with units for a measurement column name.

    Examples
    --------
    >>> column_label("volume_um3")
    'volume (µm³)'
    >>> column_label("sv_ratio_per_um")
    'surface / volume (µm⁻¹)'
    >>> column_label("sphericity")
    'sphericity'
    """
    for suffix, unit in _SUFFIX_UNITS:
        if column.endswith(suffix) and len(column) > len(suffix):
            stem = column[: -len(suffix)]
            return f"{_NAMES.get(stem, stem.replace('_', ' '))} ({unit})"
    return _NAMES.get(column, column.replace("_", " "))


def _new_figure(figsize: tuple[float, float]) -> Figure:
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | os.PathLike[str], *, dpi: int = 110) -> None:
    """Save ``fig`` as PNG, SVG or PDF (by suffix), atomically.

    Raises
    ------
    UnknownFormatError
        For another suffix.
    """
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix not in _FORMATS:
        raise UnknownFormatError(
            f"cannot save a figure as {suffix or 'no suffix'!r}; use .png, .svg or .pdf"
        )
    # written beside the target and renamed over it: a crash leaves the old figure or none
    target = Path(path)
    tmp = target.with_name(f".{target.stem}.tmp-{uuid.uuid4().hex[:8]}{target.suffix}")
    try:
        fig.savefig(os.fspath(tmp), dpi=dpi)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def figure_png(fig: Figure, *, dpi: int = 110) -> bytes:
    """Render ``fig`` to PNG bytes (e.g. to embed in HTML)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _finish(fig: Figure, path: str | os.PathLike[str] | None, dpi: int) -> Figure:
    if path is not None:
        save_figure(fig, path, dpi=dpi)
    return fig


def _values(table: pd.DataFrame, column: str) -> NDArray[np.float64]:
    if column not in table.columns:
        have = ", ".join(map(str, table.columns))
        raise ConfigError(f"table has no column {column!r}; it has: {have}")
    values = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=np.float64)
    return values[np.isfinite(values)]


def _grid(n: int, ncols: int | None) -> tuple[int, int]:
    cols = ncols or min(n, 3)
    return math.ceil(n / cols), cols


def plot_histograms(
    table: pd.DataFrame,
    columns: Sequence[str],
    path: str | os.PathLike[str] | None = None,
    *,
    bins: int = 30,
    log_columns: Sequence[str] = (),
    ncols: int | None = None,
    title: str | None = None,
    color: str = "#3b75af",
    dpi: int = 110,
) -> Figure:
    """One histogram per column, with the median marked.

    Parameters
    ----------
    table : DataFrame
        One row per object.
    columns : sequence of str
        Numeric columns; NaN values are left out.
    path : path, optional
        Save the figure there (``.png``, ``.svg`` or ``.pdf``).
    bins : int
        Number of bins.
    log_columns : sequence of str
        Columns drawn on logarithmic bins (for skewed sizes such as volumes).
    ncols : int, optional
        Panels per row (default up to 3).

    Returns
    -------
    Figure
    """
    if not columns:
        raise ConfigError("give at least one column to plot")
    rows, cols = _grid(len(columns), ncols)
    fig = _new_figure((4.0 * cols, 3.0 * rows))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, column in zip(axes, columns, strict=False):
        values = _values(table, column)
        use_log = column in log_columns and values.size > 0 and np.all(values > 0)
        if values.size:
            # Few objects: fewer, wider bins (about 2 sqrt(n)) instead of isolated spikes.
            n_bins = min(bins, max(5, int(2 * math.sqrt(values.size))))
            edges: Any = n_bins
            if use_log:
                lo, hi = values.min(), values.max()
                edges = np.geomspace(lo, hi if hi > lo else lo * 1.01, n_bins + 1)
                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(NullFormatter())
            ax.hist(values, bins=edges, color=color, alpha=0.85, edgecolor="white", linewidth=0.4)
            median = float(np.median(values))
            ax.axvline(median, color="#d62728", lw=1.2, ls="--", label=f"median {median:.3g}")
            ax.legend(frameon=False, fontsize=8)
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        else:
            ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel(column_label(column))
        ax.set_ylabel("objects")
    for ax in axes[len(columns) :]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    return _finish(fig, path, dpi)


def plot_fold_scores(
    folds: Sequence[str],
    scores: Mapping[str, Sequence[float | None]],
    path: str | os.PathLike[str] | None = None,
    *,
    pooled: Mapping[str, tuple[float, float | None, float | None]] | None = None,
    targets: Mapping[str, float] | None = None,
    title: str | None = None,
    dpi: int = 110,
) -> Figure:
    """Scores of each cross-validation fold (dots), with the pooled score and its interval.

    Parameters
    ----------
    folds : sequence of str
        Fold names for the x axis (e.g. the sections each fold tested).
    scores : mapping of str to sequence of float
        Per metric, one score per fold (``None``: not measured).
    path : path, optional
        Save the figure there (``.png``, ``.svg`` or ``.pdf``).
    pooled : mapping of str to (value, low, high), optional
        Per metric, the score of all folds together and its 95% interval, drawn as a
        line and a band.
    targets : mapping of str to float, optional
        Per metric, a target drawn as a dotted line.

    Returns
    -------
    Figure
    """
    if not scores:
        raise ConfigError("give at least one metric to plot")
    for name, values in scores.items():
        if len(values) != len(folds):
            raise ConfigError(f"{name!r} has {len(values)} scores for {len(folds)} folds")
    colors = ("#3b75af", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")
    fig = _new_figure((1.2 + 0.8 * len(folds) + 2.6, 3.2))
    ax = fig.subplots()
    x = np.arange(len(folds), dtype=float)
    width = 0.3 / len(scores)
    for k, (name, values) in enumerate(scores.items()):
        color = colors[k % len(colors)]
        offset = (k - (len(scores) - 1) / 2) * width
        heights = [np.nan if v is None else float(v) for v in values]
        ax.plot(x + offset, heights, "o", color=color, ms=7, label=f"{name}, per fold")
        if pooled and name in pooled:
            value, low, high = pooled[name]
            ax.axhline(value, color=color, lw=1.4, label=f"{name}, all folds: {value:.3f}")
            if low is not None and high is not None:
                ax.axhspan(low, high, color=color, alpha=0.12, lw=0)
        if targets and name in targets:
            ax.axhline(targets[name], color=color, lw=1.0, ls=":", label=f"target {targets[name]}")
    ax.set_xticks(x, list(folds))
    ax.set_xlabel("fold (held-out sections)")
    ax.set_ylabel("score")
    finite = [float(v) for values in scores.values() for v in values if v is not None]
    low_end = min([*finite, *(p[1] for p in (pooled or {}).values() if p[1] is not None)] or [0])
    ax.set_ylim(max(0.0, min(0.5, low_end - 0.05)), 1.0)
    ax.set_xlim(-0.5, len(folds) - 0.5)
    ax.grid(axis="y", color="#dddddd", lw=0.6)
    ax.legend(frameon=False, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if title:
        ax.set_title(title, fontsize=10)
    return _finish(fig, path, dpi)


def plot_differences(
    differences: Mapping[str, tuple[float, float, float]],
    path: str | os.PathLike[str] | None = None,
    *,
    title: str | None = None,
    xlabel: str = "difference (B - A)",
    dpi: int = 110,
) -> Figure:
    """Forest plot: a difference per metric with its interval, against a line at zero.

    Parameters
    ----------
    differences : mapping of str to (difference, low, high)
        Per metric (top to bottom), the difference and its 95% interval.
    path : path, optional
        Save the figure there (``.png``, ``.svg`` or ``.pdf``).
    title, xlabel : str, optional
        Figure title and x-axis label.

    Returns
    -------
    Figure
    """
    if not differences:
        raise ConfigError("give at least one difference to plot")
    names = list(differences)
    fig = _new_figure((6.4, 1.0 + 0.42 * len(names)))
    ax = fig.subplots()
    y = np.arange(len(names), dtype=float)[::-1]
    for yy, name in zip(y, names, strict=True):
        value, low, high = differences[name]
        color = "#2ca02c" if low > 0 else "#d62728" if high < 0 else "#3b75af"
        ax.plot([low, high], [yy, yy], color=color, lw=2.2, solid_capstyle="butt")
        ax.plot([value], [yy], "o", color=color, ms=6)
        ax.annotate(
            f"{value:+.3f} [{low:+.3f}, {high:+.3f}]",
            (high, yy),
            xytext=(6, 0),
            textcoords="offset points",
            va="center",
            fontsize=7,
        )
    ax.axvline(0.0, color="#555555", lw=0.9)
    ax.set_yticks(y, names)
    ax.set_ylim(-0.7, len(names) - 0.3)
    spans = [abs(v) for d in differences.values() for v in d]
    reach = max([*spans, 1e-3])  # not 0: two identical results still get an axis
    ax.set_xlim(-1.15 * reach, 1.9 * reach)  # room for the labels on the right
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", color="#dddddd", lw=0.6)
    if title:
        ax.set_title(title, fontsize=10)
    return _finish(fig, path, dpi)


def plot_transfer(
    rows: Mapping[str, Mapping[str, tuple[float, float | None, float | None]]],
    path: str | os.PathLike[str] | None = None,
    *,
    title: str | None = None,
    xlabel: str = "score",
    dpi: int = 110,
) -> Figure:
    """Scores of test regions under several conditions (e.g. in-domain and unseen).

    Parameters
    ----------
    rows : mapping of str to mapping of str to (value, low, high)
        Per test region (top to bottom), per condition its score and 95% interval
        (``None`` ends: no interval).
    path : path, optional
        Save the figure there (``.png``, ``.svg`` or ``.pdf``).
    title, xlabel : str, optional
        Figure title and x-axis label.

    Returns
    -------
    Figure
    """
    if not rows:
        raise ConfigError("give at least one row to plot")
    conditions = list(dict.fromkeys(c for row in rows.values() for c in row))
    colors = ("#d62728", "#3b75af", "#2ca02c", "#9467bd")
    fig = _new_figure((7.6, 1.3 + 0.5 * len(rows)))
    ax = fig.subplots()
    y = np.arange(len(rows), dtype=float)[::-1]
    step = 0.3 / max(len(conditions) - 1, 1)
    values: list[float] = []
    for k, condition in enumerate(conditions):
        color = colors[k % len(colors)]
        shift = (len(conditions) - 1) / 2 * step - k * step
        for yy, row in zip(y, rows.values(), strict=True):
            if condition not in row:
                continue
            value, low, high = row[condition]
            values.append(value)
            if low is not None and high is not None:
                ax.plot([low, high], [yy + shift] * 2, color=color, lw=2.0)
                values += [low, high]
            ax.plot([value], [yy + shift], "o", color=color, ms=6)
        ax.plot([], [], "o-", color=color, label=condition)
    ax.set_yticks(y, list(rows))
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlim(max(0.0, min(values) - 0.05), min(1.0, max(values) + 0.03) + 0.02)
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", color="#dddddd", lw=0.6)
    ax.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if title:
        ax.set_title(title, fontsize=9)
    return _finish(fig, path, dpi)


def plot_violins(
    table: pd.DataFrame,
    columns: Sequence[str],
    path: str | os.PathLike[str] | None = None,
    *,
    by: str | None = None,
    log_columns: Sequence[str] = (),
    ncols: int | None = None,
    title: str | None = None,
    max_points: int = 400,
    seed: int = 0,
    dpi: int = 110,
) -> Figure:
    """Violin plots per column, one violin per group of ``by`` (or one for all objects).

    The individual objects are drawn as jittered points (at most ``max_points`` per
    group) and the median as a white bar; groups with fewer than two distinct values
    get points only.

    Parameters
    ----------
    table : DataFrame
        One row per object.
    columns : sequence of str
        Numeric columns.
    path : path, optional
        Save the figure there.
    by : str, optional
        Grouping column (e.g. a condition, or ``"layer"`` to compare organelles).
    log_columns : sequence of str
        Columns drawn on a logarithmic axis (the violins are estimated in log space).
    seed : int
        Seed of the jitter (figures are reproducible).

    Returns
    -------
    Figure
    """
    if not columns:
        raise ConfigError("give at least one column to plot")
    if by is not None and by not in table.columns:
        raise ConfigError(f"table has no column {by!r} to group by")
    groups: list[tuple[str, pd.DataFrame]]
    if by is None:
        groups = [("all objects", table)]
    else:
        groups = [(str(key), part) for key, part in table.groupby(by, sort=True, observed=True)]
    rows, cols = _grid(len(columns), ncols)
    width = max(3.2, 1.1 * len(groups) + 1.5)
    fig = _new_figure((width * cols, 3.2 * rows))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    rng = np.random.default_rng(seed)
    for ax, column in zip(axes, columns, strict=False):
        use_log = column in log_columns
        # groups without a value in this column (e.g. nuclei have no "% of cytoplasm")
        # get no slot on its axis
        present = []
        for name, part in groups:
            values = _values(part, column)
            if use_log:
                values = values[values > 0]
            if values.size:
                present.append((name, values))
        for position, (_, values) in enumerate(present, start=1):
            shown = np.log10(values) if use_log else values
            if np.unique(shown).size >= 2:
                body = ax.violinplot(shown, positions=[position], showextrema=False, widths=0.8)
                for patch in body["bodies"]:
                    patch.set_facecolor("#8fb4d9")
                    patch.set_edgecolor("#3b75af")
                    patch.set_alpha(0.8)
            sample = shown if shown.size <= max_points else rng.choice(shown, max_points, False)
            jitter = rng.uniform(-0.12, 0.12, sample.size)
            ax.scatter(position + jitter, sample, s=6, color="#1f3b5c", alpha=0.6, lw=0)
            median = float(np.median(shown))
            ax.hlines(median, position - 0.25, position + 0.25, color="white", lw=2.5)
            ax.hlines(median, position - 0.25, position + 0.25, color="#d62728", lw=1.0)
        ax.set_xticks(range(1, len(present) + 1), [name for name, _ in present])
        if by is not None:
            ax.set_xlabel(column_label(by))
        label = column_label(column)
        ax.set_ylabel(f"log₁₀ {label}" if use_log else label)
    for ax in axes[len(columns) :]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    return _finish(fig, path, dpi)


def _correlations(x: NDArray[np.float64], y: NDArray[np.float64]) -> tuple[float, float]:
    from scipy import stats

    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan, math.nan
    pearson = float(stats.pearsonr(x, y).statistic)
    spearman = float(stats.spearmanr(x, y).statistic)
    return pearson, spearman


def plot_scatter(
    table: pd.DataFrame,
    x: str,
    y: str,
    path: str | os.PathLike[str] | None = None,
    *,
    color: str | None = None,
    logx: bool = False,
    logy: bool = False,
    cmap: str = "viridis",
    title: str | None = None,
    dpi: int = 110,
) -> Figure:
    """Scatter plot of ``y`` against ``x`` with Pearson r and Spearman ρ in the title.

    Parameters
    ----------
    table : DataFrame
        One row per object.
    x, y : str
        Numeric columns; rows where either is NaN are left out.
    path : path, optional
        Save the figure there.
    color : str, optional
        Column to colour the points by: numeric (colour bar) or categorical (legend).
    logx, logy : bool
        Logarithmic axes (the correlations are computed on the values as given;
        Spearman's ρ does not depend on the scale).

    Returns
    -------
    Figure
        The title reads ``"Pearson r = …, Spearman ρ = … (n = …)"``, after ``title``.
    """
    for column in (x, y, color):
        if column is not None and column not in table.columns:
            raise ConfigError(f"table has no column {column!r}")
    xs = pd.to_numeric(table[x], errors="coerce").to_numpy(dtype=np.float64)
    ys = pd.to_numeric(table[y], errors="coerce").to_numpy(dtype=np.float64)
    keep = np.isfinite(xs) & np.isfinite(ys)
    if logx:
        keep &= xs > 0
    if logy:
        keep &= ys > 0
    fig = _new_figure((5.6, 4.4))
    ax = fig.add_subplot()
    if color is None:
        ax.scatter(xs[keep], ys[keep], s=24, color="#3b75af", alpha=0.75, lw=0)
    elif pd.api.types.is_numeric_dtype(table[color]) and not pd.api.types.is_bool_dtype(
        table[color]
    ):
        cs = pd.to_numeric(table[color], errors="coerce").to_numpy(dtype=np.float64)[keep]
        points = ax.scatter(xs[keep], ys[keep], c=cs, cmap=cmap, s=24, alpha=0.85, lw=0)
        fig.colorbar(points, ax=ax, label=column_label(color))
    else:
        categories = table[color].astype(str).to_numpy()[keep]
        for name in sorted(set(categories)):
            chosen = categories == name
            ax.scatter(xs[keep][chosen], ys[keep][chosen], s=24, alpha=0.8, lw=0, label=name)
        ax.legend(title=column_label(color), frameon=False, fontsize=8)
    if logx:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
    if logy:
        ax.set_yscale("log")
        ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(column_label(x))
    ax.set_ylabel(column_label(y))
    pearson, spearman = _correlations(xs[keep], ys[keep])
    stats_text = (
        f"Pearson r = {pearson:.3f}, Spearman ρ = {spearman:.3f} (n = {int(keep.sum())})"
        if math.isfinite(pearson)
        else f"correlation not defined (n = {int(keep.sum())})"
    )
    ax.set_title(f"{title}\n{stats_text}" if title else stats_text, fontsize=10)
    return _finish(fig, path, dpi)


def _cluster_vertices(
    vertices: NDArray[np.float64], faces: NDArray[np.int64], cell: float
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Simplify a mesh by vertex clustering on a grid of ``cell`` nm (drops collapsed faces)."""
    keys = np.floor(vertices / cell).astype(np.int64)
    _, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    merged = np.zeros((counts.size, 3))
    np.add.at(merged, inverse, vertices)
    merged /= counts[:, None]
    new_faces = inverse[faces]
    keep = (
        (new_faces[:, 0] != new_faces[:, 1])
        & (new_faces[:, 1] != new_faces[:, 2])
        & (new_faces[:, 0] != new_faces[:, 2])
    )
    return merged, new_faces[keep]


def _simplify_all(
    meshes: Sequence[tuple[NDArray[np.float64], NDArray[np.int64]]], max_faces: int
) -> list[tuple[NDArray[np.float64], NDArray[np.int64]]]:
    total = sum(len(f) for _, f in meshes)
    if total <= max_faces:
        return list(meshes)
    all_vertices = np.concatenate([v for v, _ in meshes])
    extent = float(np.max(np.ptp(all_vertices, axis=0))) or 1.0
    # Face count of a clustered surface scales like 1/cell²; start from that estimate and
    # coarsen until the budget holds.
    median_edge = float(
        np.median([np.linalg.norm(v[f[:, 0]] - v[f[:, 1]], axis=1).mean() for v, f in meshes])
    )
    cell = max(median_edge * math.sqrt(total / max_faces), extent * 1e-4)
    for _ in range(12):
        simplified = [_cluster_vertices(v, f, cell) for v, f in meshes]
        if sum(len(f) for _, f in simplified) <= max_faces:
            return simplified
        cell *= 1.4
    return simplified


def render_meshes(
    meshes: Mapping[int, MeshLike],
    values: Mapping[int, float] | None = None,
    path: str | os.PathLike[str] | None = None,
    *,
    cmap: str = "viridis",
    value_label: str = "surface / volume (µm⁻¹)",
    max_faces: int = 60_000,
    elev: float = 25.0,
    azim: float = -60.0,
    title: str | None = None,
    dpi: int = 110,
) -> Figure:
    """Shaded 3D rendering of per-object meshes, coloured by a per-object value.

    Parameters
    ----------
    meshes : mapping of int to mesh
        Meshes keyed by label, vertices ``(x, y, z)`` in nm (as returned by
        :func:`vemkit.measure.mesh_objects`).
    values : mapping of int to float, optional
        One value per label (e.g. ``sv_ratio_per_um``), mapped through ``cmap`` with a
        colour bar labelled ``value_label``. Labels without a finite value are grey.
        None: every object gets its own colour and there is no colour bar.
    path : path, optional
        Save the figure there.
    max_faces : int
        Triangle budget of the whole scene: larger scenes are simplified by vertex
        clustering first (matplotlib draws each triangle as a polygon).
    elev, azim : float
        Camera elevation and azimuth in degrees.

    Returns
    -------
    Figure
        Axes in µm, with equal physical scaling.
    """
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    labels = [label for label, mesh in meshes.items() if len(mesh.faces)]
    raw = [
        (
            np.asarray(meshes[label].vertices_nm, dtype=np.float64) / 1000.0,
            np.asarray(meshes[label].faces, dtype=np.int64),
        )
        for label in labels
    ]
    simplified = _simplify_all(raw, max_faces) if raw else []
    fig = _new_figure((6.4, 5.2))
    ax = fig.add_subplot(projection="3d")
    colormap = colormaps[cmap]
    finite = [
        float(values[label])
        for label in labels
        if values is not None and label in values and math.isfinite(float(values[label]))
    ]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
    if lo == hi:  # one value (or all equal): centre it in a unit range
        lo, hi = lo - 0.5, hi + 0.5
    norm = Normalize(lo, hi)
    light = np.array([0.4, -0.5, 0.77])
    light /= np.linalg.norm(light)
    polygons, colors = [], []
    tab = colormaps["tab20"]
    for index, (label, (vertices, faces)) in enumerate(zip(labels, simplified, strict=True)):
        if not len(faces):
            continue
        if values is None:
            base = np.asarray(tab(index % 20)[:3])
        else:
            value = float(values.get(label, math.nan))
            grey = np.full(3, 0.6)
            base = np.asarray(colormap(norm(value))[:3]) if math.isfinite(value) else grey
        tri = vertices[faces]
        normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        lengths = np.linalg.norm(normals, axis=1, keepdims=True)
        normals = normals / np.where(lengths > 0, lengths, 1.0)
        shade = 0.45 + 0.55 * np.clip(normals @ light, 0.0, 1.0)
        polygons.append(tri)
        colors.append(np.clip(base[None, :] * shade[:, None], 0, 1))
    if polygons:
        all_tri = np.concatenate(polygons)
        collection = Poly3DCollection(all_tri, facecolors=np.concatenate(colors), linewidths=0)
        ax.add_collection3d(collection)
        lo = all_tri.reshape(-1, 3).min(axis=0)
        hi = all_tri.reshape(-1, 3).max(axis=0)
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
        ax.set_zlim(lo[2], hi[2])
        ax.set_box_aspect(tuple(np.maximum(hi - lo, 1e-3 * max(hi - lo))))
    else:
        ax.text2D(0.5, 0.5, "no objects", ha="center", va="center", transform=ax.transAxes)
    ax.view_init(elev=elev, azim=azim)
    ax.set_xlabel("x (µm)")
    ax.set_ylabel("y (µm)")
    ax.set_zlabel("z (µm)")
    if values is not None and finite:
        mappable = ScalarMappable(norm=norm, cmap=colormap)
        fig.colorbar(mappable, ax=ax, shrink=0.7, pad=0.1, label=value_label)
    if title:
        ax.set_title(title, fontsize=10)
    return _finish(fig, path, dpi)
