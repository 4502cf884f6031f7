"""``vemkit evaluate PRED GT``: the scores the field reports."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from vemkit.cli.common import VoxelSizeOption, handle_errors, parse_voxel_size


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def _interval(entry: dict[str, Any] | None) -> str:
    if not entry or entry.get("low") is None:
        return ""
    return f"  (95% CI {entry['low']:.3f}–{entry['high']:.3f})"


@handle_errors
def evaluate_command(
    prediction: Annotated[str, typer.Argument(help="Predicted labels or mask.")],
    truth: Annotated[str, typer.Argument(help="Ground-truth labels or mask.")],
    mode: Annotated[
        str, typer.Option(help="auto, instance or semantic (multi-class maps need semantic).")
    ] = "auto",
    ignore_label: Annotated[
        int | None, typer.Option(help="Ground-truth value that marks unannotated voxels.")
    ] = None,
    voxel_size: VoxelSizeOption = None,
    ci: Annotated[
        bool,
        typer.Option(
            "--ci",
            help="Add 95% block-bootstrap confidence intervals of IoU, Dice and object F1 "
            "(how much the scores could move on another region like this one).",
        ),
    ] = False,
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples for --ci.", min=100)] = 2000,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Dice, IoU, precision, recall, object F1 over IoU thresholds, Hausdorff, VI, ARE."""
    from vemkit.pipelines.measure import evaluate_locations

    if mode not in ("auto", "instance", "semantic"):
        from vemkit.errors import ConfigError

        raise ConfigError(f"--mode must be auto, instance or semantic, got {mode!r}")
    scores = evaluate_locations(
        prediction,
        truth,
        voxel_size=parse_voxel_size(voxel_size),
        mode=mode,  # type: ignore[arg-type]
        ignore_label=ignore_label,
        confidence_resamples=resamples if ci else 0,
    )
    if as_json:
        typer.echo(json.dumps(scores, allow_nan=False))
        return
    typer.echo(f"{prediction} vs {truth} ({scores.get('mode')})")
    intervals = scores.get("confidence_intervals") or {}
    for key in ("dice", "iou", "precision", "recall", "weighted_f1"):
        if key in scores:
            typer.echo(f"  {key:20s} {_fmt(scores[key])}{_interval(intervals.get(key))}")
    typer.echo(
        f"  objects              {scores.get('n_pred')} predicted / {scores.get('n_gt')} true"
    )
    f1 = scores.get("f1_at", {})
    typer.echo("  object F1 at IoU     " + "  ".join(f"{t}: {_fmt(v)}" for t, v in f1.items()))
    for t, interval in (intervals.get("f1_at") or {}).items():
        typer.echo(f"  object F1 at {t:<7s} {_fmt(f1.get(t))}{_interval(interval)}")
    for name, interval in (intervals.get("per_class") or {}).items():
        typer.echo(
            f"  {'class ' + name + ' F1':20s} {_fmt(interval['value'])}{_interval(interval)}"
        )
    for key in (
        "hausdorff_mean_nm",
        "hausdorff_95_nm",
        "vi_split",
        "vi_merge",
        "adapted_rand_error",
    ):
        typer.echo(f"  {key:20s} {_fmt(scores.get(key))}")
    if intervals:
        typer.echo(
            f"  CI: {intervals['method']}, {intervals['n_blocks']} blocks "
            f"{'x'.join(map(str, intervals['blocks']))}, {intervals['n_resamples']} resamples"
        )
