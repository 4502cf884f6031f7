"""The ``vemkit`` command."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

import vemkit
from vemkit.cli import (
    convert,
    crossval,
    datasets,
    demo,
    evaluate,
    export,
    info,
    measure,
    mesh,
    models,
    phantom,
    predict,
    report,
    segment,
    stats,
    train,
)

app = typer.Typer(
    name="vemkit",
    help="Segment and measure organelles in 3D volume EM. Inputs are never modified.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"vemkit {vemkit.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log details.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show version.")
    ] = False,
) -> None:
    """vemkit: segment and measure organelles in large 3D volume EM."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


app.command("info")(info.info_command)
app.command("convert")(convert.convert_command)
app.command("phantom")(phantom.phantom_command)
app.command("demo")(demo.demo_command)
app.command("datasets")(datasets.datasets_command)
app.command("evaluate")(evaluate.evaluate_command)
app.command("measure")(measure.measure_command)
app.command("mesh")(mesh.mesh_command)
app.command("stats")(stats.stats_command)
app.command("train")(train.train_command)
app.command("crossval")(crossval.crossval_command)
app.command("crossval-compare")(crossval.crossval_compare_command)
app.command("predict")(predict.predict_command)
app.add_typer(segment.segment_app, name="segment")
app.add_typer(models.models_app, name="models")
app.command("report")(report.report_command)
app.add_typer(export.export_app, name="export")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
