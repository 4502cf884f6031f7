"""``vemkit info PATH``: what a volume or dataset holds."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from vemkit.cli.common import VoxelSizeOption, handle_errors, parse_voxel_size


def _voxel_line(facts: dict[str, Any]) -> str:
    if facts["voxel_size_from"] == "unknown":
        return "    voxel size unknown (not in the file): pass --voxel-size Z,Y,X in nm"
    sizes = " × ".join(f"{v:g}" for v in facts["voxel_size_nm"])
    extent = " × ".join(f"{v:g}" for v in facts["physical_extent_um"])
    return (
        f"    voxel size {sizes} nm (z, y, x) from {facts['voxel_size_from']}; extent {extent} µm"
    )


def _format_layer(facts: dict[str, Any]) -> list[str]:
    if "error" in facts:
        return [f"  {facts['name']}: {facts['error']}"]
    lines = [
        f"  {facts['name']} ({facts['kind']}, {facts['format']})",
        f"    shape {tuple(facts['shape'])} axes {facts['axes']} dtype {facts['dtype']} "
        f"({facts['nbytes'] / 1e6:.1f} MB)",
        _voxel_line(facts),
    ]
    if facts.get("chunks"):
        lines.append(f"    chunks {tuple(facts['chunks'])}")
    levels = facts.get("levels") or []
    for i, level in enumerate(levels if len(levels) > 1 else []):
        lines.append(
            f"    level {i}: shape {tuple(level['shape'])}, voxel size "
            + " × ".join(f"{v:g}" for v in level["voxel_size_nm"])
            + " nm"
        )
    values = facts.get("values")
    if values:
        if "n_labels" in values:
            n = values["n_labels"]
            lines.append(f"    {n} label{'s' if n != 1 else ''} (max id {values['max_label']})")
        elif "min" in values:
            lines.append(
                f"    values {values['min']:g} … {values['max']:g}, mean {values['mean']:.4g}"
            )
        if values.get("note") not in (None, "exact"):
            lines.append(f"    ({values['note']})")
    if facts.get("label_values"):
        meanings = ", ".join(f"{k}={v}" for k, v in facts["label_values"].items())
        lines.append(f"    label values: {meanings}")
    return lines


@handle_errors
def info_command(
    path: Annotated[str, typer.Argument(help="Volume, OME-Zarr dataset or dataset folder.")],
    voxel_size: VoxelSizeOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    stats: Annotated[
        bool, typer.Option("--stats/--no-stats", help="Compute value ranges / label counts.")
    ] = True,
) -> None:
    """Show shape, dtype, voxel size, chunks, pyramid levels, value range and layers."""
    from vemkit.pipelines.info import describe_location

    facts = describe_location(path, voxel_size=parse_voxel_size(voxel_size), stats=stats)
    if as_json:
        typer.echo(json.dumps(facts, indent=2, default=str))
        return
    header = f"{facts['location']}: {facts['type']}"
    if facts.get("modality"):
        header += f" — {facts['name']} ({facts['modality']})"
    typer.echo(header)
    for layer in facts["layers"]:
        typer.echo("\n".join(_format_layer(layer)))
    if facts.get("mode"):
        typer.echo(
            f"  raw: {facts['mode']}" + (f" of {facts['source']}" if facts.get("source") else "")
        )
    if facts.get("license"):
        typer.echo(f"  license: {facts['license']}")
