"""Benchmark ``vemkit segment``: nuclei end to end, blockwise mitochondria memory, cluster equality.

1. **Nuclei** on a ``N³`` scene of synthetic nuclei in real EM (50 nm voxels), stored
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
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

#: Runs a command and prints its peak RSS. Linux's ru_maxrss of a child includes the RSS its
#: parent had when it forked; this small wrapper (forked from the big benchmark process, then
#: exec'd) forks the real command, so only the command's own memory is measured.
_RSS_WRAPPER = (
    "import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
    "print('PEAK_RSS_KIB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
    "sys.exit(code)"
)


def _cli(*args: str) -> tuple[dict, float, float]:
    """Run ``vemkit ARGS --json -q``; return its JSON, wall seconds and peak RSS (MiB)."""
    command = [sys.executable, "-m", "vemkit.cli.main", *args, "--json", "-q"]
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", _RSS_WRAPPER, *command],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - start
    output = result.stdout
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{(output + result.stderr)[-3000:]}")
    rss_line = next(line for line in output.splitlines() if line.startswith("PEAK_RSS_KIB"))
    body = output[: output.index("PEAK_RSS_KIB")]
    summary = json.loads(body[body.index("{") :])
    return summary, wall, int(rss_line.split()[1]) / 1024.0


def nuclei_phantom(size: int, folder: Path, seed: int) -> tuple[Path, np.ndarray, float, Any]:
    """Write a synthetic nuclei scene (50 nm voxels) over real EM as OME-Zarr.

    Returns the path, the true nuclei, the generation seconds and the scene's plan.

    The nuclei (envelope, heterochromatin, nucleolus; 3-15 µm) are painted into the
    NeuroProof FIB-SEM volume, which nuclei-em never saw in training, with a seed outside
    the model's training, validation and held-out seeds.
    """
    from vemkit.geometry import VoxelSize
    from vemkit.io.ome_zarr import write_ome_zarr
    from vemkit.pipelines.nuclei_data import (
        UNSEEN_BACKGROUNDS,
        load_background,
        make_nuclei_sample,
    )

    voxel_size = VoxelSize(50.0, 50.0, 50.0)
    start = time.perf_counter()
    texture = load_background(UNSEEN_BACKGROUNDS[0], voxel_size=voxel_size)
    sample = make_nuclei_sample(
        texture, shape=(size, size, size), seed=50_000 + seed, voxel_size=voxel_size
    )
    seconds = time.perf_counter() - start
    path = folder / f"nuclei-scene-{size}.zarr"
    write_ome_zarr(path, sample.raw, voxel_size=voxel_size, name="raw")
    return path, sample.nuclei, seconds, sample.plan


def false_positives(labels: np.ndarray, truth: np.ndarray, plan: Any) -> list[str]:
    """Say what each found object that matches no true nucleus (IoU < 0.5) lies on.

    Its centroid is looked up in the scene's unlabelled distractors (vessel lumens, cell
    bodies cut outside their nucleus); anything else is plain background texture.
    """
    from scipy import ndimage

    from vemkit.measure.matching import overlap_table

    # best IoU of every found object with a true nucleus, from one pass over the voxels
    table = overlap_table(labels, truth)
    inter = table.counts
    iou = inter / (table.pred_sizes[table.pred_index] + table.gt_sizes[table.gt_index] - inter)
    nucleus = table.gt_ids[table.gt_index] != 0
    best = np.zeros(table.pred_ids.size)
    np.maximum.at(best, table.pred_index[nucleus], iou[nucleus])
    best_of = dict(zip(table.pred_ids.tolist(), best.tolist(), strict=True))
    voxel = np.asarray(plan.voxel_size.as_tuple(), dtype=float)
    found = []
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None or best_of.get(index, 0.0) >= 0.5:
            continue
        mine = labels[box] == index
        centroid = (np.array(ndimage.center_of_mass(mine)) + [s.start for s in box]) * voxel
        where = "background texture"
        for distractor in plan.distractors:
            if distractor.shape.depth_at(centroid)[0] > 0:
                where = f"a {distractor.kind} distractor"
        volume = mine.sum() * voxel.prod() / 1e9
        found.append(f"{volume:.0f} µm³ on {where}")
    return found


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
        raw, truth, phantom_s, plan = nuclei_phantom(size, workdir, args.seed)
        out = workdir / "nuclei.zarr"
        summary, wall, rss = _cli("segment", "nuclei", str(raw), "-o", str(out))
        labels = Dataset.open(out).layer("labels/nuclei").read()
        scores = evaluate(labels, truth, voxel_size=(50.0, 50.0, 50.0))
        wrong = false_positives(labels, truth, plan)
        voxels = size**3
        lines += [
            f"### Nuclei pipeline, {size}³ synthetic nuclei in real EM (50 nm voxels)",
            "",
            "Nuclei of 3–15 µm painted into the NeuroProof FIB-SEM volume (never seen by "
            "nuclei-em in training), stored as OME-Zarr with a pyramid.",
            "",
            f"Scene generation (not timed below): {phantom_s:.1f} s; "
            f"{len(np.unique(truth)) - 1} true nuclei, "
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
            f"@0.5 {scores['f1_at']['0.5']:.3f}, @0.7 {scores['f1_at']['0.7']:.3f}. "
            f"Found objects that match no true nucleus: {len(wrong)}"
            + (f" ({'; '.join(wrong)})." if wrong else "."),
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
