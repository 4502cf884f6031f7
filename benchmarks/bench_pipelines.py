"""Benchmark ``vemkit segment``: nuclei end to end, blockwise mitochondria memory, cluster equality.

1. **Nuclei** on a ``N³`` phantom with real anatomy (50 nm voxels, 5-7.5 µm nuclei), stored
   as an OME-Zarr image with a pyramid (as `vemkit convert` writes it): wall time of
   ``vemkit segment nuclei`` end to end (dataset, prediction, instances, full-resolution
   labels, table, seeds, meshes) and object F1 against the phantom truth.
2. **Mitochondria** blockwise on a ``Z×Y×X`` ssTEM volume made by tiling the real VNC
   stacks (50 × 4.6 × 4.6 nm): wall time and peak RSS of ``vemkit segment mitochondria``.
3. **Cluster equality**: the nuclei run repeated on a 2-process LocalCluster must give the
   same labels up to relabelling.

Each pipeline runs as a child process (``vemkit`` CLI); its peak RSS comes from ``wait4``.
Prints Markdown.

    python benchmarks/bench_pipelines.py --nuclei-size 500 --mito-shape 256 1024 1024
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _cli(*args: str) -> tuple[dict, float, float]:
    """Run ``vemkit ARGS --json -q``; return its JSON, wall seconds and peak RSS (MiB)."""
    command = [sys.executable, "-m", "vemkit.cli.main", *args, "--json", "-q"]
    start = time.perf_counter()
    with tempfile.TemporaryFile(mode="w+") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        log.seek(0)
        output = log.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{output[-3000:]}")
    summary = json.loads(output[output.index("{") :])
    return summary, wall, usage.ru_maxrss / 1024.0


def nuclei_phantom(size: int, folder: Path, seed: int) -> tuple[Path, np.ndarray, float]:
    """Write a nuclei phantom (50 nm voxels, real anatomy) as OME-Zarr; return path + truth."""
    from vemkit.io.ome_zarr import write_ome_zarr
    from vemkit.synth import PhantomConfig, make_phantom

    config = PhantomConfig.preset("fibsem").replace(
        shape=(size, size, size),
        voxel_size=(50.0, 50.0, 50.0),
        cell_size_nm=11000.0,
        nucleus_diameter_nm=(5000.0, 7500.0),
        seed=seed,
    )
    start = time.perf_counter()
    phantom = make_phantom(config)
    seconds = time.perf_counter() - start
    path = folder / f"nuclei-phantom-{size}.zarr"
    write_ome_zarr(path, phantom.raw, voxel_size=config.voxel_size, name="raw")
    return path, phantom.nuclei, seconds


def vnc_volume(shape: tuple[int, int, int], folder: Path) -> Path | None:
    """Tile the real VNC ssTEM stacks (flipped copies) into ``shape``; None without data."""
    import tifffile

    from vemkit.datasets import data_root
    from vemkit.io.ome_zarr import write_ome_zarr

    root = data_root()
    if root is None:
        return None
    vnc = root / "drosophila_vnc_sstem"
    stacks = [
        tifffile.imread(vnc / "stack1_z00-14_raw.tif"),
        tifffile.imread(vnc / "stack2_raw.tif"),
    ]
    base = np.concatenate(stacks, axis=0)
    sections = []
    index = 0
    while sum(s.shape[0] for s in sections) < shape[0]:
        flipped = base[::-1] if index % 2 else base
        sections.append(flipped[:, :, ::-1] if index % 4 >= 2 else flipped)
        index += 1
    volume = np.concatenate(sections, axis=0)[: shape[0]]
    reps = (1, -(-shape[1] // volume.shape[1]), -(-shape[2] // volume.shape[2]))
    volume = np.tile(volume, reps)[:, : shape[1], : shape[2]]
    path = folder / "vnc-tiled.zarr"
    write_ome_zarr(
        path,
        np.ascontiguousarray(volume),
        voxel_size=(50.0, 4.6, 4.6),
        name="raw",
        chunks=(16, 512, 512),
    )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nuclei-size", type=int, default=500)
    parser.add_argument("--mito-shape", type=int, nargs=3, default=[256, 1024, 1024])
    parser.add_argument("--no-mito", action="store_true")
    parser.add_argument("--no-cluster", action="store_true")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()

    from vemkit.blockwise import same_partition
    from vemkit.io.dataset import Dataset
    from vemkit.measure import evaluate

    workdir = Path(tempfile.mkdtemp(prefix="vemkit-bench-pipelines-"))
    lines = []
    try:
        size = args.nuclei_size
        raw, truth, phantom_s = nuclei_phantom(size, workdir, args.seed)
        out = workdir / "nuclei.zarr"
        summary, wall, rss = _cli("segment", "nuclei", str(raw), "-o", str(out))
        labels = Dataset.open(out).layer("labels/nuclei").read()
        scores = evaluate(labels, truth, voxel_size=(50.0, 50.0, 50.0))
        voxels = size**3
        lines += [
            f"### Nuclei pipeline, {size}³ phantom (50 nm voxels, 5–7.5 µm nuclei)",
            "",
            f"Phantom generation (not timed below): {phantom_s:.1f} s; "
            f"{int(truth.max())} true nuclei (the phantom's labels), "
            f"{summary['n_objects']} found.",
            "",
            "| step | seconds |",
            "|---|---|",
            *(f"| {k} | {v:.1f} |" for k, v in summary["seconds"].items()),
            f"| **end to end (process wall)** | **{wall:.1f}** |",
            "",
            f"Throughput {voxels / wall / 1e6:.2f} MVoxel/s of input end to end, peak RSS "
            f"{rss:.0f} MiB, worked at {summary['working_voxel_size_nm']} nm (input level "
            f"{summary['input_level']}, pooling {summary['pooling']}). Target ≤ 60 s.",
            "",
            f"Accuracy against the phantom truth: Dice {scores['dice']:.3f}, object F1 "
            f"@0.5 {scores['f1_at']['0.5']:.3f}, @0.7 {scores['f1_at']['0.7']:.3f}.",
            "",
        ]
        if not args.no_cluster:
            out2 = workdir / "nuclei-cluster.zarr"
            summary2, wall2, _ = _cli(
                "segment", "nuclei", str(raw), "-o", str(out2), "--cluster", "local:2"
            )
            other = Dataset.open(out2).layer("labels/nuclei").read()
            same = same_partition(labels, other)
            lines += [
                f"LocalCluster of 2 processes: {wall2:.1f} s, {summary2['n_objects']} nuclei, "
                f"labels identical up to relabelling to the threaded run: **{same}**.",
                "",
            ]
        shutil.rmtree(workdir / "nuclei-cluster.zarr", ignore_errors=True)
        if not args.no_mito:
            shape = tuple(args.mito_shape)
            volume = vnc_volume(shape, workdir)
            if volume is None:
                lines += ["Mitochondria: skipped (../shared/data not found).", ""]
            else:
                out3 = workdir / "mito.zarr"
                summary3, wall3, rss3 = _cli(
                    "segment", "mitochondria", str(volume), "-o", str(out3), "--reference"
                )
                voxels = int(np.prod(shape))
                lines += [
                    f"### Mitochondria pipeline, blockwise, {'×'.join(map(str, shape))} ssTEM",
                    "",
                    "The real VNC stacks (50 × 4.6 × 4.6 nm) tiled with flips to this shape, "
                    "OME-Zarr input referenced (not copied), shipped `mito-em`, default blocks.",
                    "",
                    "| step | seconds |",
                    "|---|---|",
                    *(f"| {k} | {v:.1f} |" for k, v in summary3["seconds"].items()),
                    f"| **end to end (process wall)** | **{wall3:.1f}** |",
                    "",
                    f"{summary3['n_objects']} objects; {voxels / wall3 / 1e6:.2f} MVoxel/s end "
                    f"to end; **peak RSS {rss3:.0f} MiB** (target ≤ 2048 MiB).",
                    "",
                ]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
