"""``vemkit predict MODEL IN -o OUT.zarr``: probability / distance maps into a new dataset."""

from __future__ import annotations

from typing import Annotated

import typer

from vemkit.cli.common import (
    OverwriteOption,
    PrecisionOption,
    QuietOption,
    VoxelSizeOption,
    cli_progress,
    handle_errors,
    parse_voxel_size,
)
from vemkit.errors import ConfigError
from vemkit.pipelines import DEFAULT_MEMORY_BUDGET_GB


@handle_errors
def predict_command(
    model: Annotated[
        str, typer.Argument(help="Shipped model name (vemkit models list) or folder.")
    ],
    source: Annotated[str, typer.Argument(help="Input volume (TIFF, OME-Zarr, h5, n5, mrc...).")],
    output: Annotated[str, typer.Option("--output", "-o", help="New OME-Zarr dataset OUT.zarr.")],
    voxel_size: VoxelSizeOption = None,
    tta: Annotated[bool, typer.Option("--tta", help="Average over flips (slower).")] = False,
    triaxis: Annotated[
        bool, typer.Option("--triaxis", help="2D models: average planes along z, y and x.")
    ] = False,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    precision: PrecisionOption = "auto",
    dtype: Annotated[str, typer.Option(help="float32, or uint8 (probability × 255).")] = "float32",
    reference: Annotated[
        bool, typer.Option("--reference", help="Reference the input instead of copying it.")
    ] = False,
    memory_budget_gb: Annotated[
        float,
        typer.Option("--memory-budget-gb", help="Refuse larger in-memory predictions (GB)."),
    ] = DEFAULT_MEMORY_BUDGET_GB,
    overwrite: OverwriteOption = False,
    quiet: QuietOption = False,
) -> None:
    """Predict maps with a model; each output channel becomes the layer MODEL_CHANNEL."""
    from vemkit.pipelines.predict import predict_volume

    if dtype not in ("float32", "uint8"):
        raise ConfigError(f"--dtype must be float32 or uint8, got {dtype!r}")
    result = predict_volume(
        model,
        source,
        output,
        voxel_size=parse_voxel_size(voxel_size),
        tta=tta,
        triaxis=triaxis,
        device=device,
        precision=precision,
        dtype="uint8" if dtype == "uint8" else "float32",
        raw_mode="reference" if reference else "copy",
        memory_budget_gb=memory_budget_gb,
        overwrite=overwrite,
        progress=cli_progress(quiet=quiet),
    )
    typer.echo(
        f"wrote {result.output}: {', '.join(result.layers)} "
        f"({result.seconds:.1f} s, {result.mvoxel_per_s:.2f} MVoxel/s)"
    )
