"""``vemkit mesh LABELS -o DIR``: one mesh per object (OBJ/PLY/STL or neuroglancer)."""

from __future__ import annotations

from typing import Annotated

import typer

from vemkit.cli.common import OverwriteOption, VoxelSizeOption, handle_errors, parse_voxel_size


@handle_errors
def mesh_command(
    labels: Annotated[str, typer.Argument(help="Instance labels, e.g. seg.zarr/labels/nuclei.")],
    output: Annotated[str, typer.Option("--output", "-o", help="New folder for the meshes.")],
    mesh_format: Annotated[
        str, typer.Option("--format", help="obj, ply, stl or neuroglancer.")
    ] = "obj",
    step: Annotated[int, typer.Option(help="Marching-cubes step (level of detail).")] = 1,
    smooth: Annotated[int, typer.Option(help="Laplacian smoothing iterations.")] = 0,
    simplify: Annotated[
        float | None, typer.Option(help="Keep this fraction of triangles (needs zmesh).")
    ] = None,
    properties: Annotated[
        str | None, typer.Option(help="Measurement table to attach (neuroglancer).")
    ] = None,
    voxel_size: VoxelSizeOption = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Mesh every object in nm (xyz order, as viewers expect)."""
    from vemkit.pipelines.measure import read_table, write_meshes

    folder, count = write_meshes(
        labels,
        output,
        mesh_format=mesh_format,  # type: ignore[arg-type]
        voxel_size=parse_voxel_size(voxel_size),
        step=step,
        smoothing_iterations=smooth,
        simplify_ratio=simplify,
        properties=read_table(properties) if properties else None,
        overwrite=overwrite,
    )
    typer.echo(f"wrote {count} meshes ({mesh_format}) to {folder}")
