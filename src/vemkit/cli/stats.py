"""``vemkit stats TABLE``: group comparisons and correlations of measurement columns."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from vemkit.cli.common import handle_errors


@handle_errors
def stats_command(
    table: Annotated[str, typer.Argument(help="Measurement table (.csv or .parquet).")],
    value: Annotated[str, typer.Option(help="Column to analyse, e.g. volume_um3.")],
    group: Annotated[
        str | None, typer.Option(help="Column of group names: t-test/Mann–Whitney/Kruskal–Wallis.")
    ] = None,
    against: Annotated[str | None, typer.Option(help="Second column: correlation.")] = None,
    method: Annotated[str, typer.Option(help="pearson or spearman (correlation).")] = "spearman",
) -> None:
    """Compare a measurement between groups (with Conover–Holm post-hoc) or correlate two."""
    from vemkit.pipelines.measure import compare_table

    result = compare_table(table, value=value, group=group, against=against, method=method)  # type: ignore[arg-type]
    typer.echo(json.dumps(result, indent=2, default=str))
