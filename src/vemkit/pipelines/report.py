"""One self-contained HTML report of a dataset: overview, measurements, plots, provenance.

The report is a single file (images embedded as base64 PNG, inline CSS, no scripts and no
external resources) that can be mailed or archived next to the data. For every label layer
it shows an orthoslice overview with the labels outlined, the object count, a summary
table (median and interquartile range of the main measurements), histograms, violin
plots, a volume vs surface-to-volume scatter with correlations and a 3D rendering
coloured by surface-to-volume ratio; then the provenance recorded in the dataset (models,
parameters) and the software versions.

Large volumes: measurements are computed at full resolution (``measure_level``, or read
from a table given by the user), but slices and 3D renders read a pyramid level of at
most ``preview_voxels`` voxels and only the ``max_meshes`` largest objects are meshed.
"""

from __future__ import annotations

import base64
import datetime
import html
import importlib.metadata
import json
import logging
import math
import os
import platform
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from vemkit.errors import ConfigError, LayerNotFoundError, VemkitError
from vemkit.geometry import VoxelSize
from vemkit.io.atomic import atomic_output, check_output_path
from vemkit.io.dataset import Dataset
from vemkit.io.layer import Layer
from vemkit.measure import composition_by_region, measure_regions, mesh_objects
from vemkit.pipelines.measure import read_table
from vemkit.progress import NullProgress, Progress
from vemkit.viz import (
    column_label,
    figure_png,
    plot_histograms,
    plot_scatter,
    plot_violins,
    render_meshes,
    save_orthoslices,
)

__all__ = [
    "PLOT_COLUMNS",
    "SUMMARY_COLUMNS",
    "LayerReport",
    "ReportResult",
    "summarize_table",
    "write_report",
]

log = logging.getLogger(__name__)

#: Columns of the summary table (those present in the measurement table are shown).
SUMMARY_COLUMNS = (
    "volume_um3",
    "surface_area_um2",
    "sv_ratio_per_um",
    "sphericity",
    "elongation",
    "axis_major_length_um",
    "axis_minor_length_um",
    "nn_dist_um",
)
#: Columns drawn as histograms and violins.
PLOT_COLUMNS = ("volume_um3", "surface_area_um2", "sv_ratio_per_um", "sphericity")
_LOG_COLUMNS = ("volume_um3", "surface_area_um2")
_REQUIRED = ("label", "volume_um3", "sv_ratio_per_um")
_EMBED_TABLE_LIMIT_BYTES = 5 * 1024**2
_MAX_CELL_ROWS = 50  # cells listed in the report table; the CSV holds all
_DPI = 96


@dataclass(frozen=True)
class LayerReport:
    """What the report found for one label layer."""

    name: str
    n_objects: int
    n_meshed: int
    preview_level: int
    table_source: str


@dataclass(frozen=True)
class ReportResult:
    """Where the report went and what it holds."""

    path: Path
    layers: list[LayerReport] = field(default_factory=list)
    seconds: float = 0.0


# --- tables ----------------------------------------------------------------------------------
def summarize_table(table: pd.DataFrame, columns: Sequence[str] = SUMMARY_COLUMNS) -> pd.DataFrame:
    """Median, interquartile range, mean and range of each measurement column.

    Parameters
    ----------
    table : DataFrame
        One row per object.
    columns : sequence of str
        Columns to summarise; absent ones are skipped.

    Returns
    -------
    DataFrame
        Index: column names; columns ``n, median, q1, q3, mean, min, max`` (NaN-free
        values only).
    """
    rows = {}
    for column in columns:
        if column not in table.columns:
            continue
        values = pd.to_numeric(table[column], errors="coerce").dropna().to_numpy(np.float64)
        values = values[np.isfinite(values)]
        if values.size == 0:
            rows[column] = dict.fromkeys(
                ("n", "median", "q1", "q3", "mean", "min", "max"), math.nan
            )
            rows[column]["n"] = 0
            continue
        q1, median, q3 = np.percentile(values, (25, 50, 75))
        rows[column] = {
            "n": int(values.size),
            "median": float(median),
            "q1": float(q1),
            "q3": float(q3),
            "mean": float(values.mean()),
            "min": float(values.min()),
            "max": float(values.max()),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def _check_table(table: pd.DataFrame, where: str) -> pd.DataFrame:
    missing = [c for c in _REQUIRED if c not in table.columns]
    if missing:
        raise ConfigError(
            f"measurement table {where} lacks column(s) {', '.join(missing)}; give a table "
            "written by `vemkit measure`"
        )
    return table


# --- reading previews ------------------------------------------------------------------------
def _preview(ds: Dataset, name: str, budget: int) -> tuple[NDArray[Any], VoxelSize, int]:
    """Read ``name`` at the finest pyramid level with at most ``budget`` voxels.

    Beyond the coarsest level the array is strided, so memory stays bounded even for a
    referenced raw volume without a pyramid. Returns the array, its voxel size and level.
    """
    base = ds.layer(name)
    shapes = base.metadata.get("levels_shape") or [base.spatial_shape]
    level = len(shapes) - 1
    for index, shape in enumerate(shapes):
        if math.prod(shape[-3:]) <= budget:
            level = index
            break
    layer = ds.layer(name, level) if level else base
    if layer.spatial_ndim != 3:
        raise ConfigError(f"layer {name!r} is not a 3D volume (axes {layer.axes!r})")
    if layer.ndim == 4:  # channels first: show the first channel
        data: Any = layer.data[0]
    else:
        data = layer.data
    shape = layer.spatial_shape
    stride = max(1, math.ceil((math.prod(shape) / budget) ** (1 / 3)))
    array = np.asarray(data[::stride, ::stride, ::stride])
    voxel_size = layer.voxel_size.scaled((stride,) * 3) if stride > 1 else layer.voxel_size
    return array, voxel_size, level


def _resample_nearest(
    labels: NDArray[Any], source: VoxelSize, shape: tuple[int, ...], target: VoxelSize
) -> NDArray[Any]:
    """Nearest-neighbour resampling of ``labels`` onto the grid of ``shape`` x ``target``."""
    if labels.shape == tuple(shape) and source == target:
        return labels
    index = []
    for n_out, s_out, n_in, s_in in zip(
        shape, target.as_tuple(), labels.shape, source.as_tuple(), strict=True
    ):
        centres = (np.arange(n_out) + 0.5) * s_out / s_in
        index.append(np.clip(np.floor(centres).astype(np.int64), 0, n_in - 1))
    return labels[np.ix_(*index)]


# --- HTML pieces -----------------------------------------------------------------------------
def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _number(value: Any) -> str:
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        return "–" if not math.isfinite(float(value)) else f"{float(value):.4g}"
    return _esc(value)


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, cls: str = "") -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    attr = f' class="{_esc(cls)}"' if cls else ""
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{_esc(alt)}" src="data:image/png;base64,{data}">'


def _figure(fig: Any, alt: str) -> str:
    image = _img(figure_png(fig, dpi=_DPI), alt)
    return f"<figure>{image}<figcaption>{_esc(alt)}</figcaption></figure>"


def _json_cell(value: Any) -> str:
    if isinstance(value, str | int | float | bool) or value is None:
        return _esc(value)
    return f"<pre>{_esc(json.dumps(value, indent=1, default=str))}</pre>"


_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1150px;padding:0 1em;color:#1d2733;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:2px solid #d5dde6;padding-bottom:.2em;
margin-top:2em}h3{margin-top:1.4em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #d5dde6;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#eef2f6}td.num,table.num td{text-align:right;font-variant-numeric:tabular-nums}
table.num td:first-child{text-align:left}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #e3e8ee}
figcaption{font-size:.85em;color:#5b6b7c}
pre{margin:0;white-space:pre-wrap;font-size:.85em}
.meta{color:#5b6b7c;font-size:.9em}.note{background:#fff8e1;padding:.4em .8em;
border-left:4px solid #f0b400}
nav a{margin-right:1em}
"""


# --- sections --------------------------------------------------------------------------------
def _dataset_section(ds: Dataset, info: dict[str, Any]) -> str:
    rows = []
    for layer in info["layers"]:
        if "error" in layer:
            rows.append([_esc(layer["name"]), "", "", "", "", _esc(layer["error"])])
            continue
        rows.append(
            [
                _esc(layer["name"]),
                _esc(layer.get("kind", "")),
                _esc(" × ".join(str(s) for s in layer.get("shape", []))),
                _esc(layer.get("dtype", "")),
                _esc(" × ".join(f"{v:g}" for v in layer.get("voxel_size_nm", []))),
                _esc(_plural(int(layer.get("n_levels", 1)), "level")),
            ]
        )
    raw = next((item for item in info["layers"] if item.get("name") == "raw"), None)
    facts = [
        ["dataset", _esc(ds.path)],
        ["storage", _esc(info.get("mode"))],
    ]
    if info.get("source"):
        facts.append(["raw source", _esc(info["source"])])
    if raw is not None and "error" not in raw:
        facts += [
            ["raw shape (z, y, x)", _esc(" × ".join(str(s) for s in raw["shape"]))],
            [
                "voxel size (z, y, x)",
                _esc(f"{' × '.join(f'{v:g}' for v in raw['voxel_size_nm'])} nm"),
            ],
            [
                "physical extent (z, y, x)",
                _esc(f"{' × '.join(f'{v:g}' for v in raw['physical_extent_um'])} µm"),
            ],
        ]
    if info.get("created"):
        facts.append(["created", _esc(info["created"])])
    return (
        '<section id="dataset"><h2>Dataset</h2>'
        + _table(["", ""], facts)
        + "<h3>Layers</h3>"
        + _table(["layer", "kind", "shape", "dtype", "voxel size (nm)", "pyramid"], rows)
        + "</section>"
    )


def _summary_html(table: pd.DataFrame) -> str:
    summary = summarize_table(table)
    rows = [
        [
            _esc(column_label(str(name))),
            _number(int(row["n"])),
            _number(row["median"]),
            f"{_number(row['q1'])} – {_number(row['q3'])}",
            _number(row["mean"]),
            f"{_number(row['min'])} – {_number(row['max'])}",
        ]
        for name, row in summary.iterrows()
    ]
    return _table(["measurement", "n", "median", "IQR (q1 – q3)", "mean", "range"], rows, cls="num")


def _csv_link(table: pd.DataFrame, name: str) -> str:
    text = table.to_csv(index=False).encode("utf-8")
    if len(text) > _EMBED_TABLE_LIMIT_BYTES:
        return (
            f'<p class="meta">The full table ({len(text) / 1e6:.1f} MB) is too large to embed; '
            "write it with <code>vemkit measure</code>.</p>"
        )
    data = base64.b64encode(text).decode("ascii")
    return (
        f'<p class="meta"><a download="{_esc(name)}_measurements.csv" '
        f'href="data:text/csv;base64,{data}">Download the full measurement table (CSV, '
        f"{len(table)} rows)</a></p>"
    )


def _layer_section(
    ds: Dataset,
    name: str,
    table: pd.DataFrame,
    table_source: str,
    raw_preview: tuple[NDArray[Any], VoxelSize, int] | None,
    *,
    preview_voxels: int,
    max_meshes: int,
    group: str | None,
    anchor: str,
) -> tuple[str, LayerReport]:
    labels, label_vs, level = _preview(ds, f"labels/{name}", preview_voxels)
    parts = [f'<section id="{_esc(anchor)}"><h2>Labels: {_esc(name)}</h2>']
    n_objects = len(table)
    parts.append(
        f"<p><strong>{n_objects:,}</strong> {'object' if n_objects == 1 else 'objects'} "
        f'<span class="meta">(measurements: {_esc(table_source)}; slices and 3D render from '
        f"pyramid level {level}, voxel size {_esc(label_vs)})</span></p>"
    )
    # Orthoslices through the largest object, on raw's preview grid.
    if raw_preview is not None:
        raw, raw_vs, _ = raw_preview
        overlay = _resample_nearest(labels, label_vs, raw.shape, raw_vs)
    else:
        raw, raw_vs, overlay = (labels > 0).astype(np.float32), label_vs, labels
    center = None
    if n_objects:
        biggest = table.loc[table["volume_um3"].idxmax()]
        cols = ("centroid_z_um", "centroid_y_um", "centroid_x_um")
        if all(c in table.columns for c in cols):
            center = tuple(
                int(np.clip(float(biggest[c]) * 1000.0 / s, 0, n - 1))
                for c, s, n in zip(cols, raw_vs.as_tuple(), raw.shape, strict=True)
            )
    with tempfile.TemporaryDirectory(prefix="vemkit-report-") as tmp:
        png_path = Path(tmp) / "slices.png"
        save_orthoslices(png_path, raw, {name: overlay}, voxel_size=raw_vs, center=center, dpi=_DPI)
        parts.append(
            "<figure>"
            + _img(png_path.read_bytes(), f"{name}: orthogonal slices")
            + "<figcaption>Orthogonal slices through the largest object, label outlines in "
            "colour.</figcaption></figure>"
        )
    n_meshed = 0
    if n_objects == 0:
        parts.append('<p class="note">No objects in this layer.</p></section>')
        return "".join(parts), LayerReport(name, 0, 0, level, table_source)
    parts.append("<h3>Summary</h3>" + _summary_html(table) + _csv_link(table, name))
    columns = [c for c in PLOT_COLUMNS if c in table.columns]
    logs = [c for c in _LOG_COLUMNS if c in columns and _is_skewed(table[c])]
    parts.append("<h3>Distributions</h3>")
    parts.append(
        _figure(
            plot_histograms(table, columns, log_columns=logs, ncols=4),
            f"{name}: histograms of {', '.join(column_label(c) for c in columns)}",
        )
    )
    by = group if group is not None and group in table.columns else None
    parts.append(
        _figure(
            plot_violins(table, columns, by=by, log_columns=logs, ncols=4),
            f"{name}: violin plots" + (f" by {by}" if by else ""),
        )
    )
    parts.append("<h3>Volume vs surface-to-volume ratio</h3>")
    parts.append(
        _figure(
            plot_scatter(
                table,
                "volume_um3",
                "sv_ratio_per_um",
                color="sphericity" if "sphericity" in table.columns else None,
                logx="volume_um3" in logs,
            ),
            f"{name}: surface-to-volume ratio against volume, coloured by sphericity",
        )
    )
    # 3D render of the largest objects at the preview level.
    largest = table.nlargest(max_meshes, "volume_um3")["label"].astype(np.int64).tolist()
    present = set(np.unique(labels).tolist())
    subset = [label for label in largest if label in present]
    meshes = mesh_objects(labels, voxel_size=label_vs, labels_subset=subset) if subset else {}
    n_meshed = len(meshes)
    values = dict(
        zip(
            table["label"].astype(np.int64).tolist(), table["sv_ratio_per_um"].tolist(), strict=True
        )
    )
    parts.append("<h3>3D view</h3>")
    caption = (
        f"{name}: the {n_meshed} largest objects"
        + (f" (of {n_objects})" if n_objects > n_meshed else "")
        + ", coloured by surface-to-volume ratio (µm⁻¹)"
    )
    parts.append(
        _figure(render_meshes(meshes, values, title=f"{name} (pyramid level {level})"), caption)
    )
    parts.append("</section>")
    return "".join(parts), LayerReport(name, n_objects, n_meshed, level, table_source)


def _is_skewed(values: pd.Series) -> bool:
    positive = pd.to_numeric(values, errors="coerce").dropna()
    positive = positive[positive > 0]
    return len(positive) >= 2 and float(positive.max() / positive.min()) > 20.0


def _versions() -> list[list[str]]:
    import vemkit

    rows = [["vemkit", vemkit.__version__], ["python", platform.python_version()]]
    for package in ("numpy", "scipy", "scikit-image", "zarr", "pandas", "matplotlib", "torch"):
        try:
            rows.append([package, importlib.metadata.version(package)])
        except importlib.metadata.PackageNotFoundError:
            rows.append([package, "not installed"])
    rows.append(["platform", platform.platform()])
    return [[_esc(a), _esc(b)] for a, b in rows]


def _provenance_section(info: dict[str, Any], settings: Mapping[str, Any]) -> str:
    parts = ['<section id="provenance"><h2>Provenance</h2>']
    entries = info.get("provenance") or []
    if not entries:
        parts.append('<p class="meta">The dataset records no processing steps.</p>')
    for index, entry in enumerate(entries, start=1):
        if not isinstance(entry, Mapping):
            parts.append(f"<p>{_json_cell(entry)}</p>")
            continue
        title = entry.get("step", f"step {index}")
        when = entry.get("time", "")
        parts.append(f'<h3>{index}. {_esc(title)} <span class="meta">{_esc(when)}</span></h3>')
        rows = [[_esc(k), _json_cell(v)] for k, v in entry.items() if k not in ("step", "time")]
        parts.append(_table(["parameter", "value"], rows))
    parts.append("<h3>This report</h3>")
    parts.append(
        _table(["setting", "value"], [[_esc(k), _json_cell(v)] for k, v in settings.items()])
    )
    parts.append("<h3>Software</h3>" + _table(["package", "version"], _versions()))
    parts.append("</section>")
    return "".join(parts)


def _resolve_labels(ds: Dataset, labels: Sequence[str] | None) -> list[str]:
    available = [n[len("labels/") :] for n in ds.layer_names() if n.startswith("labels/")]
    if not labels:
        if not available:
            raise LayerNotFoundError(
                f"dataset {str(ds.path)!r} has no label layers to report on; segment it first "
                "(e.g. `vemkit segment`)"
            )
        return available
    chosen = []
    for name in labels:
        leaf = name.strip("/").removeprefix("labels/")
        if leaf not in available:
            raise LayerNotFoundError(
                f"dataset {str(ds.path)!r} has no label layer {name!r}; it has: "
                f"{', '.join(available) or 'none'}"
            )
        chosen.append(leaf)
    return chosen


def cell_composition(ds: Dataset, names: Sequence[str], level: int = 0) -> pd.DataFrame | None:
    """Per-cell volume percentages of every other label layer (None without a cells layer).

    One row per (cell, organelle): ``percent_of_cell`` and, when the dataset has a
    ``nuclei`` layer, ``percent_of_cytoplasm`` (the cell minus its nuclei) for the
    organelles other than the nuclei; ``n_objects`` counts the objects touching the cell.
    """
    others = [n for n in names if n != "cells"]
    if "cells" not in names or not others:
        return None
    cells_layer = ds.layer("labels/cells", level)
    cells = cells_layer.read()
    arrays = {}  # each layer read once; the nuclei serve as organelle and as exclusion
    for name in others:
        layer = ds.layer(f"labels/{name}", level)
        if layer.shape != cells.shape:
            log.warning("labels/%s is not on the grid of labels/cells; left out", name)
            continue
        arrays[name] = layer.read()
    nuclei = arrays["nuclei"] != 0 if "nuclei" in arrays else None
    rows = []
    for name, values in arrays.items():
        exclude = nuclei if name != "nuclei" else None
        table, _ = composition_by_region(
            values, cells, voxel_size=cells_layer.voxel_size, exclude=exclude
        )
        part = pd.DataFrame(
            {
                "cell": table["region"],
                "organelle": name,
                "cell_volume_um3": table["region_volume_um3"],
                "percent_of_cell": 100.0 * table["volume_fraction"],
                "n_objects": table["n_objects"],
            }
        )
        if "volume_fraction_cytoplasm" in table:
            part["percent_of_cytoplasm"] = 100.0 * table["volume_fraction_cytoplasm"]
        rows.append(part)
    return pd.concat(rows, ignore_index=True) if rows else None


def _cells_section(composition: pd.DataFrame, level: int) -> str:
    wide = composition.pivot_table(
        index="cell",
        columns="organelle",
        values=[c for c in ("percent_of_cell", "percent_of_cytoplasm") if c in composition],
    )
    organelles = list(dict.fromkeys(composition["organelle"]))
    volumes = composition.groupby("cell")["cell_volume_um3"].first()
    headers = ["cell", "volume (µm³)"]
    columns = []
    for name in organelles:
        for what, label in (
            ("percent_of_cell", "% of cell"),
            ("percent_of_cytoplasm", "% of cytoplasm"),
        ):
            if (what, name) in wide.columns and wide[(what, name)].notna().any():
                headers.append(f"{name} {label}")
                columns.append((what, name))
    shown = wide.index[:_MAX_CELL_ROWS]
    rows = [
        [_number(int(cell)), _number(volumes[cell])]
        + [_number(wide.loc[cell, column]) for column in columns]
        for cell in shown
    ]
    more = len(wide.index) - len(shown)
    plotted = [c for c in ("percent_of_cell", "percent_of_cytoplasm") if c in composition]
    return (
        '<section id="cells"><h2>Cell composition</h2>'
        f"<p>Volume of each organelle inside each of the {len(wide.index):,} cells of "
        "<code>labels/cells</code>"
        + (", and inside its cytoplasm (the cell without its nuclei)" if len(plotted) > 1 else "")
        + f' <span class="meta">(pyramid level {level})</span>.</p>'
        + _table(headers, rows, cls="num")
        + (f'<p class="meta">… and {more} more cells in the CSV.</p>' if more > 0 else "")
        + _csv_link(composition, "cell_composition")
        + _figure(
            plot_violins(composition, plotted, by="organelle", ncols=2),
            "Per-cell volume percentages by organelle",
        )
        + "</section>"
    )


def write_report(
    dataset: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    labels: Sequence[str] | None = None,
    tables: Mapping[str, str | os.PathLike[str] | pd.DataFrame] | None = None,
    group: str | None = None,
    measure_level: int = 0,
    preview_voxels: int = 2**24,
    max_meshes: int = 200,
    title: str | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> ReportResult:
    """Write a self-contained HTML report of a dataset and its label layers.

    Parameters
    ----------
    dataset : path
        A vemkit OME-Zarr dataset.
    output : path
        The ``.html`` file to write (atomically).
    labels : sequence of str, optional
        Label layers to report on (``"nuclei"`` or ``"labels/nuclei"``); default all.
    tables : mapping of label name to path or DataFrame, optional
        Existing measurement tables (CSV/Parquet from ``vemkit measure``) to use instead of
        measuring again.
    group : str, optional
        Table column to split the violin plots by (e.g. a condition column).
    measure_level : int
        Pyramid level to measure at when no table is given (0 = full resolution).
    preview_voxels : int
        Largest number of voxels read for slices and 3D renders (a coarser pyramid level
        is used beyond it).
    max_meshes : int
        Only the largest objects, up to this many, are meshed for the 3D render.
    title : str, optional
        Report title (default: the dataset's name).
    overwrite : bool
        Replace an existing report.
    progress : Progress, optional
        One step per label layer (measurements, plots, meshes) and one for the rest.

    Returns
    -------
    ReportResult

    Raises
    ------
    OutputExistsError
        ``output`` exists and ``overwrite`` is false (checked before any work).
    LayerNotFoundError
        A requested label layer does not exist, or the dataset has none.
    ConfigError
        Bad options, or a given table lacks the measurement columns.
    """
    start = time.perf_counter()
    if max_meshes < 0:
        raise ConfigError(f"max_meshes must be >= 0, got {max_meshes}")
    if preview_voxels < 1:
        raise ConfigError(f"preview_voxels must be positive, got {preview_voxels}")
    target = check_output_path(output, overwrite=overwrite)
    ds = Dataset.open(dataset)
    names = _resolve_labels(ds, labels)
    given_tables = {k.strip("/").removeprefix("labels/"): v for k, v in (tables or {}).items()}
    unknown = sorted(set(given_tables) - set(names))
    if unknown:
        raise ConfigError(
            f"tables were given for {', '.join(unknown)}, which the report does not cover "
            f"(label layers: {', '.join(names)})"
        )
    info = ds.info()
    raw_preview = None
    try:
        raw_preview = _preview(ds, "raw", preview_voxels) if "raw" in ds.layer_names() else None
    except VemkitError as error:
        log.warning("raw cannot be read (%s); slices show the labels only", error)
    sections: list[str] = []
    layer_reports: list[LayerReport] = []
    all_tables = []
    reporter = progress if progress is not None else NullProgress()
    reporter.start(len(names) + 1, "writing report")
    try:
        for index, name in enumerate(names):
            given = given_tables.get(name)
            if isinstance(given, pd.DataFrame):
                table, source = _check_table(given, f"for {name!r}"), "table given"
            elif given is not None:
                table = _check_table(read_table(given), repr(str(given)))
                source = f"read from {Path(given).name}"
            else:
                layer: Layer = ds.layer(f"labels/{name}", measure_level)
                log.info("measuring %s at level %d", name, measure_level)
                table = measure_regions(layer.read(), voxel_size=layer.voxel_size)
                source = f"measured at pyramid level {measure_level}, voxel size {layer.voxel_size}"
            section, report = _layer_section(
                ds,
                name,
                table,
                source,
                raw_preview,
                preview_voxels=preview_voxels,
                max_meshes=max_meshes,
                group=group,
                anchor=f"labels-{index}",
            )
            sections.append(section)
            layer_reports.append(report)
            if len(table):
                all_tables.append(table.assign(layer=name))
            reporter.advance(1)
        if len(all_tables) >= 2:
            combined = pd.concat(all_tables, ignore_index=True)
            columns = [c for c in PLOT_COLUMNS if c in combined.columns]
            logs = [c for c in _LOG_COLUMNS if c in columns and _is_skewed(combined[c])]
            sections.append(
                '<section id="comparison"><h2>Comparison of label layers</h2>'
                + _figure(
                    plot_violins(combined, columns, by="layer", log_columns=logs, ncols=2),
                    "Measurements by label layer",
                )
                + "</section>"
            )
        composition = cell_composition(ds, names, measure_level)
        if composition is not None and len(composition) == 0:
            composition = None
        if composition is not None:
            sections.append(_cells_section(composition, measure_level))
        settings = {
            "labels": names,
            "measurement tables": {
                k: str(v) for k, v in given_tables.items() if not isinstance(v, pd.DataFrame)
            }
            or "measured for this report",
            "measure level": measure_level,
            "preview voxel budget": preview_voxels,
            "meshed objects (largest)": max_meshes,
        }
        heading = title or ds.path.name
        now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        nav = "".join(f'<a href="#labels-{i}">{_esc(n)}</a>' for i, n in enumerate(names))
        if composition is not None:
            nav += '<a href="#cells">cell composition</a>'
        document = (
            "<!DOCTYPE html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_esc(heading)} – vemkit report</title><style>{_CSS}</style></head><body>"
            f"<header><h1>{_esc(heading)}</h1>"
            f'<p class="meta">vemkit report, generated {_esc(now)}</p>'
            f'<nav><a href="#dataset">dataset</a>{nav}<a href="#provenance">provenance</a></nav>'
            "</header><main>"
            + _dataset_section(ds, info)
            + "".join(sections)
            + _provenance_section(info, settings)
            + "</main></body></html>\n"
        )
        with atomic_output(target, overwrite=overwrite) as tmp:
            tmp.write_text(document, encoding="utf-8")
        reporter.advance(1)
    finally:
        reporter.finish()  # also when a layer fails: no dangling progress bar
    return ReportResult(target, layer_reports, time.perf_counter() - start)
