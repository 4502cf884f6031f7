"""Run both ``vemkit segment`` pipelines on every 3D raw volume in ../shared/data.

Each volume is segmented twice per organelle — in one process (threads) and on a Dask
LocalCluster of 2 single-threaded worker processes — and the labels are compared
(identical up to relabelling). The cluster is started once and every run connects to it
by its ``tcp://`` address (``--cluster tcp://…``), as a user with a running cluster would;
its workers keep the model loaded between runs.
Volumes without a documented voxel size are listed as skipped. Prints a Markdown table.

    python benchmarks/bench_shared_data.py [--no-cluster]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-cluster", action="store_true", help="threads only")
    parser.add_argument("--organelle", action="append", choices=["nuclei", "mitochondria"])
    args = parser.parse_args()

    from vemkit.blockwise import same_partition
    from vemkit.datasets import data_root, dataset_info, list_datasets
    from vemkit.io.dataset import Dataset
    from vemkit.pipelines.segment import load_segment_settings, segment_volume

    if data_root() is None:
        print("../shared/data not found: skipped")
        return
    organelles = args.organelle or ["nuclei", "mitochondria"]
    rows = []
    workdir = Path(tempfile.mkdtemp(prefix="vemkit-bench-shared-"))
    clusters = ["threads"]
    local_cluster = None
    if not args.no_cluster:
        import distributed

        local_cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        )
        clusters.append(local_cluster.scheduler_address)
    try:
        for name in list_datasets():
            info = dataset_info(name)
            for file in info.files.values():
                if file.role not in ("raw", "raw_unlabelled") or len(file.shape) != 3:
                    continue
                where = f"{name}/{file.name}"
                if info.voxel_size is None:
                    rows.append(f"| {where} | – | skipped: no documented voxel size | | | |")
                    continue
                voxel = ",".join(f"{v:g}" for v in info.voxel_size.as_tuple())
                for organelle in organelles:
                    results = {}
                    for index, cluster in enumerate(clusters):
                        out = workdir / f"{name}-{file.name}-{organelle}-{index}.zarr"
                        settings = load_segment_settings(
                            organelle, voxel_size=voxel, cluster=cluster, meshes=False
                        )
                        start = time.perf_counter()
                        result = segment_volume(organelle, file.path, out, settings)
                        seconds = time.perf_counter() - start
                        labels = Dataset.open(out).layer(result.labels_layer).read()
                        results[index] = (result.n_objects, seconds, labels)
                    n, seconds, labels = results[0]
                    if 1 in results:
                        n2, seconds2, labels2 = results[1]
                        same = same_partition(labels, labels2) and n == n2
                        cluster_text = f"{seconds2:.1f} s | {'yes' if same else '**NO**'}"
                    else:
                        cluster_text = "– | –"
                    rows.append(
                        f"| {where} {tuple(file.shape)} | {organelle} | {n} objects | "
                        f"{seconds:.1f} s | {cluster_text} |"
                    )
                    for path in workdir.iterdir():
                        shutil.rmtree(path, ignore_errors=True)
                    print(rows[-1], file=sys.stderr, flush=True)  # progress
    finally:
        if local_cluster is not None:
            local_cluster.close()
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    print("| volume | pipeline | result | threads | LocalCluster (2 processes) | identical |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
