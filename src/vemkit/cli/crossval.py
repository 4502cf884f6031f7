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
    if not entry or entry.get("value") is None:
        return "-"
    if entry.get("low") is None:
        return f"{entry['value']:.3f}"
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

    The recipe's test sources must be z ranges of labelled volumes it also trains on;
    several such volumes are folded side by side and scored each on its own. Every
    section is predicted once, by the fold that left it out, and all are scored together
    (OUTPUT/crossval.json, OUTPUT/crossval.png). Rerun the same command to resume.
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
    summary = summarise_crossval(report)
    reused = sum(f["reused"] for f in report["per_fold"])
    if "volumes" in report:
        where = f"{len(report['volumes'])} volumes"
        # (name, this volume's entry of each fold, its pooled scores, its pooled metrics)
        volumes = [
            (v["volume"], [f["volumes"][b] for f in report["per_fold"]], v["pooled"], m)
            for b, (v, m) in enumerate(zip(report["volumes"], summary["volumes"], strict=True))
        ]
    else:
        first, stop = report["sections"]
        where = f"sections {first}-{stop - 1}"
        volumes = [("", report["per_fold"], report["pooled"], summary)]
    typer.echo(
        f"{report['folds']}-fold cross-validation of {recipe.name} over {where}"
        f"{' with --tta' if tta else ''} in {result.seconds / 60:.1f} min"
        + (f" ({reused} folds trained before, reused)" if reused else "")
    )
    for name, folds_of_volume, pooled, entry in volumes:
        if name:
            typer.echo(f" {name}:")
        _print_volume(report, folds_of_volume, pooled, entry["metrics"])
    for item in report.get("left_out") or []:
        name = f"{item['dataset']}/{item['image']}" if item.get("dataset") else item["image"]
        typer.echo(f" left out (the recipe never trains on its volume): {name}")
    choice = summary.get("pooled_validation_choice")
    if choice:
        per_fold = report["pooled_validation_choice"]["per_fold"]
        counts = sorted({f["chosen_on_sections"] for f in per_fold})
        several = f"{counts[0]} to {counts[-1]}" if len(counts) > 1 else str(counts[0])
        own = report["per_fold"][0]["validation_sections"]
        typer.echo(
            "  each fold's settings chosen on the other folds' validation sections "
            f"({several} sections instead of {own}):"
        )
        mean = "mean over the volumes: " if "volumes" in choice else ""
        for label, metrics in [(mean, choice["metrics"])] + [
            (f"{v['volume']}: ", v["metrics"]) for v in choice.get("volumes", [])
        ]:
            for key, value in metrics.items():
                typer.echo(f"    {label}{_label(key)}: {_score(value)}")
        settings = ", ".join(f"{k} {v}" for k, v in choice["recipe_settings"].items())
        chosen_on = report["pooled_validation_choice"]["recipe_settings_chosen_on_sections"]
        typer.echo(f"  settings chosen on all {chosen_on} validation sections: {settings}")
    typer.echo(f"report: {Path(folder) / CROSSVAL_FILE}")


def _print_volume(
    report: dict[str, Any],
    folds: list[dict[str, Any]],
    pooled: dict[str, Any],
    metrics: dict[str, Any],
) -> None:
    """Print one volume's table of folds and its pooled scores."""
    key = next(
        (k for k in ("foreground_iou", "boundary_iou", "weighted_f1") if k in pooled),
        None,
    )
    header = f"  {'fold':>4}  {'test':>7}  {'best epoch':>10}  {key or '':>15}"
    has_objects = "object_f1_at" in pooled
    if has_objects:
        header += f"  {'F1@0.5':>7}  {'objects':>7}"
    typer.echo(header)
    for index, (fold, entry) in enumerate(zip(report["per_fold"], folds, strict=True)):
        scores = entry["scores"]
        a, b = entry["test"]
        line = f"  {index:>4}  {f'{a}-{b - 1}':>7}  {_cell(fold['best_epoch']):>10}"
        line += f"  {_cell(scores.get(key)):>15}"
        if has_objects:
            line += f"  {_cell((scores.get('object_f1_at') or {}).get('0.5')):>7}"
            line += f"  {scores.get('n_gt', '-'):>7}"
        typer.echo(line)
    intervals = pooled.get("confidence_intervals") or {}
    masks = pooled.get("mask_confidence_intervals") or {}
    blocks = f"95% CI over {intervals.get('n_blocks', masks.get('n_blocks'))} blocks"
    typer.echo(f"  all folds together ({blocks}):")
    for name, entry in metrics.items():
        if not name.startswith("object_f1@"):
            typer.echo(f"    {_label(name)}: {_score(entry)}")
    if has_objects:
        typer.echo(f"    instances' foreground IoU: {_score(intervals.get('iou'))}")
        for name, entry in metrics.items():
            if name.startswith("object_f1@"):
                typer.echo(f"    {_label(name)}: {_score(entry)}")
        typer.echo(f"  objects: {pooled['n_pred']} predicted, {pooled['n_gt']} true")
