"""Benchmark blockwise connected components on a random-blob volume stored as OME-Zarr.

Generates the volume block by block (``map_layer`` with a generator function, so the
volume never sits in memory), labels it with ``label_blockwise`` + cc3d (26-connected,
halo 0, adjacency merge), builds the label pyramid, and reports wall time per stage and
the peak resident memory of the process. ``--check`` then compares with one cc3d call on
the whole volume (needs the volume and its labels in memory: run it only at small sizes).

Examples
--------
The lead's run::

    python benchmarks/bench_blockwise.py --shape 256 1024 1024 --block 64 256 256

A quick one::

    python benchmarks/bench_blockwise.py --shape 128 512 512 --check
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import cc3d
import numpy as np

from vemkit.blockwise import get_client, label_blockwise, map_layer, same_partition
from vemkit.geometry import BlockGrid, Box, VoxelSize
from vemkit.io.formats.ome_zarr import open_ome_zarr
from vemkit.io.ome_zarr import build_pyramid, create_ome_zarr

logger = logging.getLogger("bench_blockwise")
VOXEL_SIZE = VoxelSize(8.0, 8.0, 8.0)


def random_spheres(
    shape: tuple[int, int, int], *, density: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Centres (n, 3) and radii (n,) of spheres covering about ``density`` of the volume."""
    rng = np.random.default_rng(seed)
    mean_volume = 4 / 3 * math.pi * np.mean(np.arange(3, 13) ** 3)
    n = max(1, round(density * math.prod(shape) / mean_volume))
    centres = rng.uniform(0, shape, size=(n, 3)).astype(np.float32)
    radii = rng.integers(3, 13, size=n).astype(np.float32)
    return centres, radii


def render_spheres(*, box: Box, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Blob mask (uint8) of the spheres inside ``box`` (a block of the volume)."""
    start = np.array(box.offset, dtype=np.float32)
    stop = np.array(box.stop, dtype=np.float32)
    near = np.all((centres + radii[:, None] >= start) & (centres - radii[:, None] < stop), axis=1)
    block = np.zeros(box.shape, dtype=np.uint8)
    for centre, radius in zip(centres[near], radii[near], strict=True):
        lo = np.maximum(np.floor(centre - radius).astype(int), box.offset)
        hi = np.minimum(np.ceil(centre + radius).astype(int) + 1, box.stop)
        if np.any(hi <= lo):
            continue
        zz, yy, xx = np.ogrid[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        inside = (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2
        local = tuple(slice(a - o, b - o) for a, b, o in zip(lo, hi, box.offset, strict=True))
        block[local] |= (inside <= radius**2).astype(np.uint8)
    return block


def peak_rss_mib() -> tuple[float, float]:
    """Peak resident set size in MiB of this process and of its largest ended child.

    Worker processes of a local cluster count once the cluster is closed.
    """
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, children


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[256, 1024, 1024])
    parser.add_argument("--block", type=int, nargs=3, default=[64, 256, 256])
    parser.add_argument("--density", type=float, default=0.15, help="foreground fraction")
    parser.add_argument("--scheduler", default="threads")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the written volumes")
    parser.add_argument("--check", action="store_true", help="compare with one cc3d call")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    shape = tuple(args.shape)
    block = tuple(args.block)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="vemkit-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    try:
        # one client for every step (a "processes" cluster starts once, not per call)
        with get_client(args.scheduler, n_workers=args.workers) as client:
            scheduler = client if client is not None else args.scheduler
            options: dict[str, Any] = {"scheduler": scheduler, "n_workers": args.workers}
            result = _run(args, shape, block, workdir, options, timings)
        own, children = peak_rss_mib()
        result["peak_rss_mib"] = round(own, 1)
        result["peak_rss_worker_mib"] = round(children, 1) if client is not None else None
        if args.check:
            source = open_ome_zarr(workdir / "blobs.zarr")
            start = time.perf_counter()
            reference = cc3d.connected_components(source.read(), connectivity=26)
            result["single_cc3d_s"] = round(time.perf_counter() - start, 2)
            labels = open_ome_zarr(workdir / "labels.zarr").read()
            result["same_partition"] = bool(same_partition(labels, reference))
        print(json.dumps(result))
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


def _run(  # noqa: PLR0917
    args: argparse.Namespace,
    shape: tuple[int, ...],
    block: tuple[int, ...],
    workdir: Path,
    options: dict[str, Any],
    timings: dict[str, float],
) -> dict[str, Any]:
    centres, radii = random_spheres(shape, density=args.density, seed=args.seed)
    blobs = create_ome_zarr(
        workdir / "blobs.zarr",
        shape=shape,
        dtype="uint8",
        voxel_size=VOXEL_SIZE,
        chunks=block,
        n_levels=1,
        overwrite=True,
    )
    start = time.perf_counter()
    map_layer(
        render_spheres,
        [],
        blobs,
        block_shape=block,
        with_box=True,
        fn_kwargs={"centres": centres, "radii": radii},
        resume=False,
        **options,
    )
    timings["generate_s"] = time.perf_counter() - start
    source = open_ome_zarr(workdir / "blobs.zarr")
    start = time.perf_counter()
    label_blockwise(
        cc3d.connected_components,
        source,
        workdir / "labels.zarr",
        block_shape=block,
        connectivity=26,
        fn_kwargs={"connectivity": 26},
        dtype="uint32",
        resume=False,
        pyramid=False,
        **options,
    )
    timings["label_blockwise_s"] = time.perf_counter() - start
    start = time.perf_counter()
    build_pyramid(workdir / "labels.zarr")
    timings["label_pyramid_s"] = time.perf_counter() - start
    labels = open_ome_zarr(workdir / "labels.zarr")
    n_objects = max(int(labels.read(b).max()) for b in BlockGrid(labels.box, block))
    voxels = math.prod(shape)
    result: dict[str, Any] = {
        "shape": list(shape),
        "block": list(block),
        "scheduler": args.scheduler,
        "workers": args.workers,
        "spheres": len(radii),
        "objects": n_objects,
        **{k: round(v, 2) for k, v in timings.items()},
        "label_mvox_per_s": round(voxels / timings["label_blockwise_s"] / 1e6, 2),
        "volume_mib": round(voxels / 2**20, 1),
    }
    return result


if __name__ == "__main__":
    main()
