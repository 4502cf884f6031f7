"""``vemkit convert IN OUT``: any readable volume to an OME-Zarr dataset or a TIFF."""

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


@handle_errors
def convert_command(
    source: Annotated[
        str, typer.Argument(help="Input volume (TIFF, folder, zip, h5, n5, mrc...).")
    ],
    output: Annotated[str, typer.Argument(help="Output OUT.zarr (OME-Zarr) or OUT.tif.")],
    voxel_size: VoxelSizeOption = None,
    reference: Annotated[
        bool,
        typer.Option("--reference", help="Reference the input instead of copying it (.zarr)."),
    ] = False,
    overwrite: OverwriteOption = False,
    quiet: QuietOption = False,
) -> None:
    """Convert a volume to a new OME-Zarr dataset with a pyramid (or a TIFF); input untouched."""
    from vemkit.pipelines.convert import convert_volume

    out = convert_volume(
        source,
        output,
        voxel_size=parse_voxel_size(voxel_size),
        mode="reference" if reference else "copy",
        overwrite=overwrite,
        progress=cli_progress(quiet=quiet),
    )
    typer.echo(f"wrote {out}")
