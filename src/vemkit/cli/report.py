"""``vemkit report DATASET -o report.html``: one self-contained HTML report."""

from __future__ import annotations

from typing import Annotated

import typer

from vemkit.cli.common import OverwriteOption, QuietOption, cli_progress, handle_errors
from vemkit.errors import ConfigError


def _parse_tables(tables: list[str], labels: list[str]) -> dict[str, str]:
    parsed = {}
    for item in tables:
        name, sep, path = item.partition("=")
        if sep and name and path and not name.endswith((".csv", ".parquet", ".pq")):
            parsed[name] = path
        elif len(labels) == 1 and len(tables) == 1:
            parsed[labels[0]] = item
        else:
            raise ConfigError(
                f"--table must be NAME=TABLE (e.g. nuclei=nuclei.csv), got {item!r}; a bare "
                "path is allowed only with exactly one --labels"
            )
    return parsed


@handle_errors
def report_command(
    dataset: Annotated[str, typer.Argument(help="A vemkit OME-Zarr dataset (e.g. seg.zarr).")],
    output: Annotated[str, typer.Option("--output", "-o", help="The .html report to write.")],
    labels: Annotated[
        list[str] | None,
        typer.Option("--labels", help="Label layer to report on (repeatable; default all)."),
    ] = None,
    table: Annotated[
        list[str] | None,
        typer.Option(
            "--table", help="NAME=TABLE: reuse a `vemkit measure` CSV/Parquet (repeatable)."
        ),
    ] = None,
    group: Annotated[
        str | None, typer.Option(help="Table column to split the violin plots by.")
    ] = None,
    max_meshes: Annotated[
        int, typer.Option(help="Mesh only the largest objects, up to this many.")
    ] = 200,
    preview_voxels: Annotated[
        int, typer.Option(help="Voxel budget of slices and 3D renders (coarser level beyond).")
    ] = 2**24,
    measure_level: Annotated[
        int, typer.Option(help="Pyramid level to measure at when no table is given.")
    ] = 0,
    title: Annotated[str | None, typer.Option(help="Report title.")] = None,
    overwrite: OverwriteOption = False,
    quiet: QuietOption = False,
) -> None:
    """Overview slices, measurements, plots, 3D view and provenance in one HTML file."""
    from vemkit.pipelines.report import write_report

    result = write_report(
        dataset,
        output,
        labels=labels,
        tables=_parse_tables(table or [], labels or []),
        group=group,
        measure_level=measure_level,
        preview_voxels=preview_voxels,
        max_meshes=max_meshes,
        title=title,
        overwrite=overwrite,
        progress=cli_progress(quiet=quiet),
    )
    typer.echo(f"wrote {result.path} ({result.seconds:.1f} s)")
    for layer in result.layers:
        typer.echo(f"  {layer.name}: {layer.n_objects} objects, {layer.n_meshed} in the 3D view")
