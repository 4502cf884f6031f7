"""``vemkit evaluate PRED GT``: the scores the field reports."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from vemkit.cli.common import VoxelSizeOption, handle_errors, parse_voxel_size


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


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
    )
    if as_json:
        typer.echo(json.dumps(scores, allow_nan=False))
        return
    typer.echo(f"{prediction} vs {truth} ({scores.get('mode')})")
    for key in ("dice", "iou", "precision", "recall", "weighted_f1"):
        if key in scores:
            typer.echo(f"  {key:20s} {_fmt(scores[key])}")
    typer.echo(
        f"  objects              {scores.get('n_pred')} predicted / {scores.get('n_gt')} true"
    )
    f1 = scores.get("f1_at", {})
    typer.echo("  object F1 at IoU     " + "  ".join(f"{t}: {_fmt(v)}" for t, v in f1.items()))
    for key in (
        "hausdorff_mean_nm",
        "hausdorff_95_nm",
        "vi_split",
        "vi_merge",
        "adapted_rand_error",
    ):
        typer.echo(f"  {key:20s} {_fmt(scores.get(key))}")
