"""``vemkit datasets``: the real datasets with ground truth found on this machine."""

from __future__ import annotations

import typer

from vemkit.cli.common import handle_errors


@handle_errors
def datasets_command() -> None:
    """List the shared real datasets (../shared/data or $VEMKIT_DATA)."""
    from vemkit.datasets import data_root, dataset_info, list_datasets

    root = data_root()
    if root is None:
        typer.echo("no shared datasets found; set VEMKIT_DATA to their folder")
        return
    typer.echo(f"datasets in {root}:")
    for name in list_datasets(root):
        info = dataset_info(name, root=root)
        voxel = str(info.voxel_size) if info.voxel_size else "voxel size unknown"
        typer.echo(f"  {name}: {info.modality}, {voxel}")
        for file in info.files.values():
            typer.echo(f"    {file.stem:40s} {file.role:24s} {tuple(file.shape)} {file.dtype}")
