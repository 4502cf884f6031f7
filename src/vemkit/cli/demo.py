"""``vemkit demo``: the whole flow on a phantom, with scores against its exact truth."""

from __future__ import annotations

from typing import Annotated

import typer

from vemkit.cli.common import OverwriteOption, QuietOption, cli_progress, handle_errors


def _fmt(value: object) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


@handle_errors
def demo_command(
    output: Annotated[str, typer.Option("--output", "-o", help="New folder for the demo.")] = (
        "vemkit-demo"
    ),
    size: Annotated[int, typer.Option(help="Phantom side length in voxels.")] = 128,
    seed: Annotated[int, typer.Option(help="Phantom seed.")] = 0,
    preset: Annotated[str, typer.Option(help="fibsem, sstem or sbem.")] = "fibsem",
    train: Annotated[
        bool, typer.Option("--train/--no-train", help="Also train from sparse labels.")
    ] = True,
    epochs: Annotated[int, typer.Option(help="Training epochs for the sparse-label U-Net.")] = 10,
    every: Annotated[int, typer.Option(help="Label every Nth plane for training.")] = 10,
    overwrite: OverwriteOption = False,
    quiet: QuietOption = False,
) -> None:
    """Phantom → dataset → segmentation → scores against the phantom's exact truth."""
    from vemkit.pipelines.demo import run_demo

    result = run_demo(
        output,
        size=size,
        seed=seed,
        preset=preset,
        train=train,
        epochs=epochs,
        every_n_planes=every,
        overwrite=overwrite,
        progress=cli_progress(quiet=quiet),
    )
    typer.echo(f"vemkit demo — {preset} phantom {size}³ (seed {seed}) in {result.output_dir}/")
    for name, methods in result.scores.items():
        for method, score in methods.items():
            typer.echo(
                f"  {name:13s} {method:12s} {score['n_pred']:>4} found / {score['n_gt']} true   "
                f"Dice {_fmt(score['dice'])}   object F1@0.5 {_fmt(score['f1_at_0.5'])}   "
                f"F1@0.7 {_fmt(score['f1_at_0.7'])}"
            )
    typer.echo(
        "  (classical: thresholds and watershed, no training; sparse_unet: `vemkit segment` "
        f"with a 2D U-Net trained from every {every}th plane of the truth, scored on all "
        "planes; its datasets with tables, seeds and meshes are in segment/)"
    )
    typer.echo("  time: " + ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items()))
    typer.echo(f"  phantom + truth   {result.phantom}")
    typer.echo(f"  segmentation      {result.segmentation}")
    typer.echo(f"  picture           {result.preview}")
    typer.echo(f"  scores (JSON)     {result.summary}")
