"""``vemkit train CONFIG.yaml``: train a model from a recipe and write its model card."""

from __future__ import annotations

import shlex
from typing import Annotated

import typer

from vemkit.cli.common import (
    OverwriteOption,
    QuietOption,
    RecipeDeviceOption,
    RecipePrecisionOption,
    ThreadsOption,
    cli_progress,
    handle_errors,
    log_epochs_unless_tty,
    set_threads,
)


def _fmt(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


@handle_errors
def train_command(
    config: Annotated[
        str, typer.Argument(help="Training recipe (YAML), e.g. recipes/mito-em.yaml.")
    ],
    output: Annotated[
        str | None,
        typer.Option("--output", "-o", help="Output folder (overrides 'output:' of the recipe)."),
    ] = None,
    device: RecipeDeviceOption = None,
    precision: RecipePrecisionOption = None,
    threads: ThreadsOption = None,
    overwrite: OverwriteOption = False,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Go on with an interrupted training of this recipe in the output folder "
            "(finished networks are reused, an interrupted one continues from its last epoch).",
        ),
    ] = False,
    quiet: QuietOption = False,
) -> None:
    """Train a segmentation network; writes OUTPUT/model (weights + model card) and metrics."""
    from vemkit.pipelines.train import load_train_config, run_training

    recipe, text = load_train_config(config)
    # No progress bar in a batch job (nohup, SLURM, the job server): one line per epoch.
    log_epochs_unless_tty("vemkit.ml.train", "vemkit.pipelines.train", quiet=quiet)
    if device is not None:
        recipe = recipe.model_copy(update={"device": device})
    if precision is not None:
        recipe = recipe.model_copy(update={"precision": precision})
    set_threads(threads)
    outcome = run_training(
        recipe,
        recipe_text=text,
        command=shlex.join(
            ["vemkit", "train", config]
            + (["--output", output] if output else [])
            + (["--device", device] if device else [])
            + (["--precision", precision] if precision else [])
            + (["--threads", str(threads)] if threads else [])
        ),
        output=output,
        overwrite=overwrite,
        resume=resume,
        progress=cli_progress(quiet=quiet),
    )
    training = outcome.card["training"]
    best = training["best_epoch"]
    networks = f"{len(best)} networks, " if isinstance(best, list) else ""
    best_text = "/".join(map(str, best)) if isinstance(best, list) else best
    typer.echo(
        f"trained {recipe.name} in {outcome.seconds / 60:.1f} min "
        f"({networks}{training['epochs_run']} epochs, best {best_text})"
    )
    for key, value in outcome.metrics.items():
        typer.echo(f"  held-out {key}: {_fmt(value)}")
    typer.echo(f"model: {outcome.model}  (use: vemkit predict {outcome.model} IN -o OUT.zarr)")
