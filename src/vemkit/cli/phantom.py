"""``vemkit phantom OUT.zarr``: an EM-like phantom with exact ground truth."""

from __future__ import annotations

from typing import Annotated

import typer

from vemkit.cli.common import (
    OverwriteOption,
    QuietOption,
    VoxelSizeOption,
    cli_progress,
    handle_errors,
    parse_voxel_size,
)
from vemkit.errors import ConfigError


def _parse_size(text: str) -> int | tuple[int, int, int]:
    parts = [p for p in text.replace("x", ",").split(",") if p.strip()]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise ConfigError(f"--size must be N or Z,Y,X voxels, got {text!r}") from None
    if len(values) not in (1, 3) or min(values) < 16:
        raise ConfigError(f"--size must be N or Z,Y,X with every side ≥ 16 voxels, got {text!r}")
    return values[0] if len(values) == 1 else (values[0], values[1], values[2])


@handle_errors
def phantom_command(
    output: Annotated[str, typer.Argument(help="New OME-Zarr dataset, e.g. phantom.zarr.")],
    size: Annotated[str, typer.Option(help="N (cube) or Z,Y,X in voxels.")] = "256",
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same phantom.")] = 0,
    preset: Annotated[
        str, typer.Option(help="Modality to imitate: fibsem, sstem or sbem.")
    ] = "fibsem",
    voxel_size: VoxelSizeOption = None,
    overwrite: OverwriteOption = False,
    quiet: QuietOption = False,
) -> None:
    """Write a phantom: image raw + labels/nuclei, labels/mitochondria, labels/cells."""
    from vemkit.pipelines.phantom import LABEL_LAYERS, write_phantom_dataset

    dataset = write_phantom_dataset(
        output,
        size=_parse_size(size),
        seed=seed,
        preset=preset,
        voxel_size=parse_voxel_size(voxel_size),
        overwrite=overwrite,
        progress=cli_progress(quiet=quiet),
    )
    raw = dataset.layer("raw")
    typer.echo(
        f"wrote {output}: raw {raw.shape} at {raw.voxel_size}; labels "
        + ", ".join(f"labels/{n}" for n in LABEL_LAYERS)
    )
