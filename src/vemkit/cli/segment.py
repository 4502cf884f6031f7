"""``vemkit segment nuclei|mitochondria IN -o OUT.zarr``: the organelle pipelines."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from vemkit.cli.common import (
    OverwriteOption,
    QuietOption,
    RecipePrecisionOption,
    VoxelSizeOption,
    cli_progress,
    handle_errors,
    parse_voxel_size,
)
from vemkit.errors import ConfigError

segment_app = typer.Typer(
    help="Segment organelles blockwise: labels, measurements, seeds and meshes.",
    no_args_is_help=True,
)

SourceArgument = Annotated[
    str, typer.Argument(help="Raw volume (TIFF, OME-Zarr, h5:/path, n5, mrc, slice folder).")
]
OutputOption = Annotated[str, typer.Option("--output", "-o", help="New OME-Zarr dataset OUT.zarr.")]
ConfigOption = Annotated[
    str | None,
    typer.Option("--config", help="YAML file of settings (options given here override it)."),
]
ModelOption = Annotated[
    str | None, typer.Option("--model", help="Shipped model name or model folder.")
]
ClusterOption = Annotated[
    str | None,
    typer.Option(
        "--cluster",
        help="Where blocks run: threads (default), processes, local:N (LocalCluster of N "
        "processes), tcp://host:port, slurm:N, kubernetes:N.",
    ),
]
WorkersOption = Annotated[int | None, typer.Option("--workers", help="Threads or processes.")]
DeviceOption = Annotated[str | None, typer.Option("--device", help="cpu, cuda, cuda:N or auto.")]
BlockOption = Annotated[
    str | None, typer.Option("--block", help="Block shape Z,Y,X in working-grid voxels.")
]
TriaxisOption = Annotated[
    bool | None,
    typer.Option(
        "--triaxis/--no-triaxis",
        help="2D models: average z, y and x planes (default: on for near-isotropic data).",
        show_default=False,
    ),
]
TtaOption = Annotated[
    bool, typer.Option("--tta", help="Average predictions over flips (4x slower in 2D).")
]
ReferenceOption = Annotated[
    bool, typer.Option("--reference", help="Reference the input instead of copying it.")
]
ResumeOption = Annotated[
    bool, typer.Option("--resume", help="Finish an interrupted run into the existing output.")
]
NoMeshesOption = Annotated[bool, typer.Option("--no-meshes", help="Skip the meshes.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print a JSON summary.")]


def _block(text: str | None) -> tuple[int, int, int] | None:
    if text is None:
        return None
    try:
        values = [int(v) for v in text.replace("x", ",").split(",")]
    except ValueError:
        raise ConfigError(f"--block must be Z,Y,X integers, got {text!r}") from None
    if len(values) == 1:
        values *= 3
    if len(values) != 3 or min(values) < 1:
        raise ConfigError(f"--block must be three positive integers Z,Y,X, got {text!r}")
    return (values[0], values[1], values[2])


def _run(organelle: str, source: str, output: str, options: dict[str, Any], **flags: Any) -> None:
    from vemkit.pipelines.segment import load_segment_settings, segment_volume

    config = options.pop("config")
    voxel = parse_voxel_size(options.pop("voxel_size"))
    options["voxel_size"] = ",".join(f"{v:g}" for v in voxel.as_tuple()) if voxel else None
    options["block_shape"] = _block(options.pop("block"))
    settings = load_segment_settings(organelle, config, **options)  # type: ignore[arg-type]
    result = segment_volume(
        organelle,  # type: ignore[arg-type]
        source,
        output,
        settings,
        overwrite=flags["overwrite"],
        resume=flags["resume"],
        progress=cli_progress(quiet=flags["quiet"]),
    )
    grid = result.working_grid
    summary = {
        "output": str(result.output),
        "labels": f"{result.output}/{result.labels_layer}",
        "n_objects": result.n_objects,
        "working_voxel_size_nm": list(grid.voxel_size.as_tuple()),
        "input_level": grid.level,
        "pooling": list(grid.factors),
        "table": str(result.table) if result.table else None,
        "seeds_csv": str(result.seeds_csv) if result.seeds_csv else None,
        "seeds_nml": str(result.seeds_nml) if result.seeds_nml else None,
        "meshes": str(result.meshes) if result.meshes else None,
        "seconds": {k: round(v, 2) for k, v in result.seconds.items()},
        "spatial": result.summary.get("spatial"),
    }
    if flags["as_json"]:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    typer.echo(
        f"{result.n_objects} {organelle} -> {summary['labels']} "
        f"({result.total_seconds:.1f} s; worked at {grid.voxel_size} nm)"
    )
    for key in ("table", "seeds_csv", "seeds_nml", "meshes"):
        if summary[key]:
            typer.echo(f"  {key.replace('_', ' ')}: {summary[key]}")


@segment_app.command("nuclei")
@handle_errors
def nuclei_command(
    source: SourceArgument,
    output: OutputOption,
    config: ConfigOption = None,
    model: ModelOption = None,
    voxel_size: VoxelSizeOption = None,
    cluster: ClusterOption = None,
    workers: WorkersOption = None,
    device: DeviceOption = None,
    precision: RecipePrecisionOption = None,
    block: BlockOption = None,
    triaxis: TriaxisOption = None,
    tta: TtaOption = False,
    seed_threshold_nm: Annotated[
        float | None, typer.Option("--seed-threshold-nm", help="Seeds deeper than this (nm).")
    ] = None,
    min_size_um3: Annotated[
        float | None, typer.Option("--min-size-um3", help="Drop smaller nuclei (µm³).")
    ] = None,
    reference: ReferenceOption = False,
    no_meshes: NoMeshesOption = False,
    resume: ResumeOption = False,
    overwrite: OverwriteOption = False,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Nuclei: signed-distance model at ~100 nm, distance watershed, labels at full resolution.

    Writes OUT.zarr/labels/nuclei, the distance map, tables/nuclei.csv, seeds/nuclei.csv and
    seeds/nuclei.nml (webKnossos), and meshes/nuclei/.
    """
    options = {
        "config": config,
        "model": model,
        "voxel_size": voxel_size,
        "cluster": cluster,
        "n_workers": workers,
        "device": device,
        "precision": precision,
        "block": block,
        "triaxis": triaxis,
        "tta": True if tta else None,
        "seed_threshold_nm": seed_threshold_nm,
        "min_size_nm3": min_size_um3 * 1e9 if min_size_um3 is not None else None,
        "raw_mode": "reference" if reference else None,
        "meshes": False if no_meshes else None,
    }
    _run(
        "nuclei",
        source,
        output,
        options,
        overwrite=overwrite,
        resume=resume,
        quiet=quiet,
        as_json=as_json,
    )


@segment_app.command("mitochondria")
@handle_errors
def mitochondria_command(
    source: SourceArgument,
    output: OutputOption,
    config: ConfigOption = None,
    model: ModelOption = None,
    voxel_size: VoxelSizeOption = None,
    cluster: ClusterOption = None,
    workers: WorkersOption = None,
    device: DeviceOption = None,
    precision: RecipePrecisionOption = None,
    block: BlockOption = None,
    triaxis: TriaxisOption = None,
    tta: TtaOption = False,
    foreground_threshold: Annotated[
        float | None, typer.Option("--foreground-threshold", help="Default: the model card's.")
    ] = None,
    boundary_threshold: Annotated[
        float | None, typer.Option("--boundary-threshold", help="Default: the model card's.")
    ] = None,
    min_size_um3: Annotated[
        float | None, typer.Option("--min-size-um3", help="Drop smaller objects (µm³).")
    ] = None,
    instances: Annotated[
        str | None,
        typer.Option(
            "--instances",
            help="boundary_watershed_3d (separates touching mitochondria), "
            "boundary_watershed_2d or connected_components_3d. Default: the model card's.",
        ),
    ] = None,
    reference: ReferenceOption = False,
    no_meshes: NoMeshesOption = False,
    resume: ResumeOption = False,
    overwrite: OverwriteOption = False,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Mitochondria: foreground + boundary model at full resolution, boundary watershed.

    Writes OUT.zarr/labels/mitochondria, the probability maps, tables/mitochondria.csv and
    meshes/mitochondria/.
    """
    options = {
        "config": config,
        "model": model,
        "voxel_size": voxel_size,
        "cluster": cluster,
        "n_workers": workers,
        "device": device,
        "precision": precision,
        "block": block,
        "triaxis": triaxis,
        "tta": True if tta else None,
        "foreground_threshold": foreground_threshold,
        "boundary_threshold": boundary_threshold,
        "min_size_nm3": min_size_um3 * 1e9 if min_size_um3 is not None else None,
        "instances": instances,
        "raw_mode": "reference" if reference else None,
        "meshes": False if no_meshes else None,
    }
    _run(
        "mitochondria",
        source,
        output,
        options,
        overwrite=overwrite,
        resume=resume,
        quiet=quiet,
        as_json=as_json,
    )
