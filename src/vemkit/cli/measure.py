"""``vemkit measure LABELS -o table.csv``: one row per object, in physical units."""

from __future__ import annotations

from typing import Annotated

import typer

from vemkit.cli.common import OverwriteOption, VoxelSizeOption, handle_errors, parse_voxel_size
from vemkit.errors import ConfigError


def _parse_refs(refs: list[str]) -> dict[str, str]:
    parsed = {}
    for ref in refs:
        name, sep, path = ref.partition("=")
        if not sep or not name or not path:
            raise ConfigError(
                f"--ref must be NAME=LABELS (e.g. nucleus=seg.zarr/labels/nuclei), got {ref!r}"
            )
        parsed[name] = path
    return parsed


@handle_errors
def measure_command(
    labels: Annotated[
        str, typer.Argument(help="Instance labels, e.g. seg.zarr/labels/mitochondria.")
    ],
    output: Annotated[str, typer.Option("--output", "-o", help="Table: .csv or .parquet.")],
    raw: Annotated[
        str | None, typer.Option(help="Intensity volume for intensity statistics.")
    ] = None,
    ref: Annotated[
        list[str] | None,
        typer.Option(help="NAME=LABELS to measure distances to (repeatable)."),
    ] = None,
    k: Annotated[int, typer.Option(help="Neighbours for the mean k-NN distance.")] = 8,
    bandwidth_um: Annotated[
        float | None, typer.Option(help="Kernel density bandwidth in µm (adds a density column).")
    ] = None,
    cells: Annotated[
        str | None,
        typer.Option(
            help="Cell labels or mask: adds a cell column and writes TABLE.cells.csv with "
            "each cell's volume fraction of these objects."
        ),
    ] = None,
    exclude: Annotated[
        str | None,
        typer.Option(help="With --cells: mask removed from each cell for the cytoplasm (nuclei)."),
    ] = None,
    voxel_size: VoxelSizeOption = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Volume, surface, S/V, sphericity, centroid, axes, intensity, distances, neighbours.

    With --cells, also each cell's volume fraction of the objects (and of its cytoplasm).
    """
    from vemkit.pipelines.measure import measure_labels

    table, summary = measure_labels(
        labels,
        output,
        raw=raw,
        references=_parse_refs(ref or []),
        voxel_size=parse_voxel_size(voxel_size),
        k_neighbours=k,
        density_bandwidth_um=bandwidth_um,
        cells=cells,
        exclude=exclude,
        overwrite=overwrite,
    )
    typer.echo(f"wrote {output}: {len(table)} objects × {table.shape[1]} columns")
    if len(table):
        volume = table["volume_um3"]
        typer.echo(
            f"  volume µm³: median {volume.median():.4g}, total {volume.sum():.4g}; "
            f"S/V median {table['sv_ratio_per_um'].median():.3g} /µm"
        )
    per_cell = summary.get("cells")
    if per_cell:
        line = f"wrote {per_cell['table']}: {per_cell['n_cells']} cells"
        if per_cell["median_volume_fraction"] is not None:
            line += f"; median volume fraction {100 * per_cell['median_volume_fraction']:.2f} %"
        if per_cell.get("median_volume_fraction_cytoplasm") is not None:
            line += f" of the cell, {100 * per_cell['median_volume_fraction_cytoplasm']:.2f} %"
            line += " of the cytoplasm"
        typer.echo(line)
    spatial = summary.get("spatial")
    if spatial:
        typer.echo(
            f"  spatial distribution: {spatial['verdict']} "
            f"(Clark–Evans R = {spatial['clark_evans']['R']:.3f}, "
            f"p = {spatial['clark_evans']['p_value']:.3g})"
        )
