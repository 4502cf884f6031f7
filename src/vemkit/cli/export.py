"""``vemkit export neuroglancer|nml``: hand results to webKnossos and neuroglancer."""

from __future__ import annotations

from typing import Annotated

import typer

from vemkit.cli.common import OverwriteOption, VoxelSizeOption, handle_errors, parse_voxel_size
from vemkit.errors import ConfigError

export_app = typer.Typer(
    help="Export to other viewers: neuroglancer states, webKnossos NML skeletons.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@export_app.command("neuroglancer")
@handle_errors
def neuroglancer_command(
    dataset: Annotated[str, typer.Argument(help="A vemkit OME-Zarr dataset (e.g. seg.zarr).")],
    url: Annotated[
        str,
        typer.Option(
            "--url", help="URL serving the dataset's parent folder, e.g. http://localhost:8000/."
        ),
    ],
    output: Annotated[str, typer.Option("--output", "-o", help="State file (.json).")],
    layer: Annotated[
        list[str] | None,
        typer.Option("--layer", help="Layer to show (repeatable; default raw + all labels)."),
    ] = None,
    scheme: Annotated[
        str, typer.Option(help="Data source scheme: zarr (any version) or zarr2.")
    ] = "zarr",
    viewer: Annotated[
        str | None,
        typer.Option(help="Neuroglancer viewer for the printed link (default: the public demo)."),
    ] = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Write a neuroglancer state: raw as image, labels as segmentation layers."""
    from vemkit.io.neuroglancer import DEFAULT_VIEWER, neuroglancer_url
    from vemkit.pipelines.export import export_neuroglancer

    if scheme not in ("zarr", "zarr2"):
        raise ConfigError(f"--scheme must be zarr or zarr2, got {scheme!r}")
    path, state = export_neuroglancer(
        dataset,
        output,
        base_url=url,
        layers=layer,
        scheme=scheme,  # type: ignore[arg-type]
        overwrite=overwrite,
    )
    names = ", ".join(item["name"] for item in state["layers"])
    typer.echo(f"wrote {path} (layers: {names})")
    typer.echo("serve the folder with CORS enabled (e.g. `npx http-server --cors`), then open:")
    typer.echo(neuroglancer_url(state, viewer=viewer or DEFAULT_VIEWER))


@export_app.command("nml")
@handle_errors
def nml_command(
    table: Annotated[
        str, typer.Argument(help="CSV/Parquet of points (e.g. a `vemkit measure` table).")
    ],
    output: Annotated[str, typer.Option("--output", "-o", help="Skeleton file (.nml).")],
    voxel_size: VoxelSizeOption = None,
    dataset_name: Annotated[
        str, typer.Option(help="webKnossos dataset name stored in the file.")
    ] = "vemkit",
    name_prefix: Annotated[str, typer.Option(help="Tree names: PREFIX ID.")] = "object",
    comment: Annotated[str | None, typer.Option(help="Comment on every node.")] = None,
    overwrite: OverwriteOption = False,
) -> None:
    """One webKnossos tree per row, nodes in voxels of --voxel-size (nm)."""
    from vemkit.pipelines.export import export_nml

    size = parse_voxel_size(voxel_size)
    if size is None:
        raise ConfigError(
            "--voxel-size is required: the voxel size (nm, Z,Y,X) of the webKnossos dataset "
            "the nodes refer to"
        )
    path, count = export_nml(
        table,
        output,
        voxel_size=size,
        dataset_name=dataset_name,
        name_prefix=name_prefix,
        comment=comment,
        overwrite=overwrite,
    )
    typer.echo(f"wrote {path}: {count} trees, scale {size}")
