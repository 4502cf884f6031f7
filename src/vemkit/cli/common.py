"""What every command shares: error handling, progress, option types."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

import typer

from vemkit.errors import VemkitError
from vemkit.geometry import VoxelSize
from vemkit.progress import TqdmProgress

__all__ = [
    "OverwriteOption",
    "RecipeDeviceOption",
    "ThreadsOption",
    "VoxelSizeOption",
    "cli_progress",
    "handle_errors",
    "log_epochs_unless_tty",
    "parse_voxel_size",
    "set_threads",
]

F = TypeVar("F", bound=Callable[..., Any])

log = logging.getLogger("vemkit")

EXIT_USER_ERROR = 2


def handle_errors(command: F) -> F:
    """Turn a :class:`VemkitError` into one line on stderr and exit code 2 (no traceback)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except VemkitError as exc:
            typer.echo(f"vemkit: error: {exc}", err=True)
            raise typer.Exit(EXIT_USER_ERROR) from None
        except KeyboardInterrupt:
            typer.echo("vemkit: interrupted; partial outputs were removed", err=True)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def parse_voxel_size(text: str | None) -> VoxelSize | None:
    """Parse ``--voxel-size``; errors surface as VoxelSizeError through handle_errors."""
    return None if text is None else VoxelSize.parse(text)


def cli_progress(*, quiet: bool = False) -> TqdmProgress:
    """Make a progress bar on stderr, drawn only on interactive terminals and not with --quiet."""
    return TqdmProgress(enabled=not quiet and sys.stderr.isatty())


VoxelSizeOption = Annotated[
    str | None,
    typer.Option(
        "--voxel-size",
        help="Voxel size in nm as Z,Y,X (e.g. 50,4.6,4.6) or one number; overrides the file.",
        show_default=False,
    ),
]
OverwriteOption = Annotated[
    bool, typer.Option("--overwrite", help="Replace the output if it already exists.")
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
RecipeDeviceOption = Annotated[
    str | None, typer.Option("--device", help="cpu, cuda or cuda:N (overrides 'device:').")
]
# vemkit.ml.precision.Precision, spelled here so that the CLI starts without importing torch
PrecisionName = Literal["auto", "float32", "bfloat16"]
RecipePrecisionOption = Annotated[
    PrecisionName | None,
    typer.Option(
        "--precision",
        help="Autocast of the network (overrides 'precision:' of the recipe or settings): "
        "auto = float16 on CUDA, float32 on the CPU; bfloat16 is about 2x faster on CPUs with "
        "bfloat16 instructions.",
        show_default=False,
    ),
]
PrecisionOption = Annotated[
    PrecisionName,
    typer.Option(
        "--precision",
        help="Autocast of the network: auto = float16 on CUDA, float32 on the CPU (the model "
        "card's numbers); bfloat16 is about 2x faster on CPUs with bfloat16 instructions.",
    ),
]
ThreadsOption = Annotated[
    int | None,
    typer.Option("--threads", help="CPU threads for torch (default: torch's choice)."),
]


def set_threads(threads: int | None) -> None:
    """Apply ``--threads`` to torch (nothing when not given)."""
    if threads is None:
        return
    if threads < 1:
        from vemkit.errors import ConfigError

        raise ConfigError(f"--threads must be at least 1, got {threads}")
    import torch

    torch.set_num_threads(threads)


def log_epochs_unless_tty(*loggers: str, quiet: bool = False) -> None:
    """Without a terminal (nohup, SLURM, the job server) log one line per epoch instead of bars.

    Sets the named loggers to INFO unless ``quiet`` or stderr is a terminal.
    """
    if quiet or sys.stderr.isatty():
        return
    for name in loggers:
        if not logging.getLogger(name).isEnabledFor(logging.INFO):
            logging.getLogger(name).setLevel(logging.INFO)
