"""``vemkit crossval RECIPE --folds K``: k-fold cross-validation of a recipe along z."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated, Any

import typer

from vemkit.cli.common import (
    OverwriteOption,
    QuietOption,
    RecipeDeviceOption,
    ThreadsOption,
    cli_progress,
    handle_errors,
    log_epochs_unless_tty,
    set_threads,
)


def _score(entry: dict[str, Any] | None) -> str:
    if not entry or entry.get("low") is None:
        return "-"
    return f"{entry['value']:.3f} [{entry['low']:.3f}, {entry['high']:.3f}]"


def _label(metric: str) -> str:
    """``object_f1@0.5`` -> ``object F1@0.5``, ``foreground_iou`` -> ``foreground IoU``."""
    return metric.replace("_iou", " IoU").replace("_f1", " F1").replace("_", " ")


def _cell(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else "-" if value is None else str(value)


@handle_errors
def crossval_command(
    config: Annotated[
        str, typer.Argument(help="Training recipe (YAML), e.g. recipes/mito-em.yaml.")
    ],
    folds: Annotated[int, typer.Option("--folds", "-k", help="Number of folds along z.")] = 4,
    output: Annotated[
        str | None,
        typer.Option(
            "--output", "-o", help="Output folder (default: the recipe's output + '-crossval')."
        ),
    ] = None,
    device: RecipeDeviceOption = None,
    threads: ThreadsOption = None,
    overwrite: OverwriteOption = False,
    tta: Annotated[
        bool,
        typer.Option(
            "--tta",
            help="Predict validation and test sections averaged over flips (reuses trained "
            "folds; settings are chosen again on validation).",
        ),
    ] = False,
    quiet: QuietOption = False,
) -> None:
    """Cross-validate a recipe: train K models, each tested on sections it never saw.

    The recipe's train, validation and test sources must be z ranges of one labelled
    volume. Every section is predicted once, by the fold that left it out, and all are
    scored together (OUTPUT/crossval.json). Rerun the same command to resume.
    """
    from vemkit.pipelines.crossval import CROSSVAL_FILE, run_crossval, summarise_crossval
    from vemkit.pipelines.train import load_train_config

    recipe, _ = load_train_config(config)
    log_epochs_unless_tty(
        "vemkit.ml.train", "vemkit.pipelines.train", "vemkit.pipelines.crossval", quiet=quiet
    )
    if device is not None:
        recipe = recipe.model_copy(update={"device": device})
    set_threads(threads)
    folder = output or f"{recipe.output_folder()}-crossval"
    command = shlex.join(
        ["vemkit", "crossval", config, "--folds", str(folds)]
        + (["--output", output] if output else [])
        + (["--device", device] if device else [])
        + (["--threads", str(threads)] if threads else [])
        + (["--tta"] if tta else [])
    )
    result = run_crossval(
        recipe,
        folds=folds,
        output=folder,
        recipe_path=config,
        command=command,
        overwrite=overwrite,
        tta=tta,
        progress=cli_progress(quiet=quiet),
    )
    report = result.report
    first, stop = report["sections"]
    reused = sum(f["reused"] for f in report["per_fold"])
    typer.echo(
        f"{report['folds']}-fold cross-validation of {recipe.name} over sections "
        f"{first}-{stop - 1}{' with --tta' if tta else ''} in {result.seconds / 60:.1f} min"
        + (f" ({reused} folds trained before, reused)" if reused else "")
    )
    key = next(
        (k for k in ("foreground_iou", "boundary_iou", "weighted_f1") if k in report["pooled"]),
        None,
    )
    header = f"  {'fold':>4}  {'test':>7}  {'best epoch':>10}  {key or '':>15}"
    has_objects = "object_f1_at" in report["pooled"]
    if has_objects:
        header += f"  {'F1@0.5':>7}  {'objects':>7}"
    typer.echo(header)
    for fold in report["per_fold"]:
        scores = fold["scores"]
        a, b = fold["test"]
        line = f"  {fold['fold']:>4}  {f'{a}-{b - 1}':>7}  {_cell(fold['best_epoch']):>10}"
        line += f"  {_cell(scores.get(key)):>15}"
        if has_objects:
            line += f"  {_cell((scores.get('object_f1_at') or {}).get('0.5')):>7}"
            line += f"  {scores.get('n_gt', '-'):>7}"
        typer.echo(line)
    pooled = report["pooled"]
    metrics = summarise_crossval(report)["metrics"]
    intervals = pooled.get("confidence_intervals") or {}
    masks = pooled.get("mask_confidence_intervals") or {}
    blocks = f"95% CI over {intervals.get('n_blocks', masks.get('n_blocks'))} blocks"
    typer.echo(f"  all folds together ({blocks}):")
    if key:
        entry = metrics[key]
        value = _score(entry) if entry["low"] is not None else _cell(entry["value"])
        typer.echo(f"    {_label(key)}: {value}")
    if has_objects:
        typer.echo(f"    instances' foreground IoU: {_score(intervals.get('iou'))}")
        for name, entry in metrics.items():
            if name.startswith("object_f1@"):
                typer.echo(f"    {_label(name)}: {_score(entry)}")
        typer.echo(f"  objects: {pooled['n_pred']} predicted, {pooled['n_gt']} true")
    choice = summarise_crossval(report).get("pooled_validation_choice")
    if choice:
        per_fold = report["pooled_validation_choice"]["per_fold"]
        counts = sorted({f["chosen_on_sections"] for f in per_fold})
        several = f"{counts[0]} to {counts[-1]}" if len(counts) > 1 else str(counts[0])
        typer.echo(
            "  each fold's settings chosen on the other folds' validation sections "
            f"({several} sections instead of "
            f"{sum(b - a for a, b in report['per_fold'][0]['validation'])}):"
        )
        for name, entry in choice["metrics"].items():
            typer.echo(f"    {_label(name)}: {_score(entry)}")
        settings = ", ".join(f"{k} {v}" for k, v in choice["recipe_settings"].items())
        chosen_on = report["pooled_validation_choice"]["recipe_settings_chosen_on_sections"]
        typer.echo(f"  settings chosen on all {chosen_on} validation sections: {settings}")
    typer.echo(f"report: {Path(folder) / CROSSVAL_FILE}")
