"""Dask clusters: scheduler strings, missing extras, a 2-process LocalCluster run."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cc3d
import numpy as np
import pytest
from scipy import ndimage as ndi

from vemkit.blockwise import get_client, label_blockwise, map_layer
from vemkit.errors import ConfigError, MissingDependencyError
from vemkit.geometry import VoxelSize
from vemkit.io import Layer
from vemkit.io.ome_zarr import create_ome_zarr, write_ome_zarr

VS = VoxelSize(8.0, 8.0, 8.0)


class RecordingProgress:
    def __init__(self) -> None:
        self.tasks: list[list[int]] = []

    def start(self, total: int, description: str) -> None:
        self.tasks.append([total, 0])

    def advance(self, steps: int = 1) -> None:
        self.tasks[-1][1] += steps

    def finish(self) -> None:
        pass


def test_local_schedulers_need_no_client() -> None:
    for name in (None, "threads", "synchronous"):
        with get_client(name) as client:
            assert client is None


@pytest.mark.parametrize("name", ["gpu", "local:x", "local:0", "slurm:-1", ""])
def test_unknown_scheduler_strings(name: str) -> None:
    with pytest.raises(ConfigError, match="unknown scheduler"), get_client(name):
        pass


@pytest.mark.parametrize(
    ("name", "module"), [("slurm:2", "dask_jobqueue"), ("kubernetes", "dask_kubernetes")]
)
def test_missing_cluster_extra_says_what_to_install(name: str, module: str) -> None:
    if importlib.util.find_spec(module) is not None:
        pytest.skip(f"{module} is installed")
    with (
        pytest.raises(MissingDependencyError, match=r"pip install 'vemkit\[cluster\]'"),
        get_client(name),
    ):
        pass


def test_local_cluster_matches_threads(tmp_path: Path) -> None:
    raw = np.random.default_rng(0).random((32, 40, 48)).astype(np.float32)
    mask = ndi.gaussian_filter(raw, 1.5) > 0.52
    raw_layer = write_ome_zarr(tmp_path / "raw.zarr", raw, voxel_size=VS, name="raw")
    mask_layer = write_ome_zarr(
        tmp_path / "mask.zarr", mask.astype(np.uint8), voxel_size=VS, name="mask"
    )

    def run(scheduler: object, name: str, progress: RecordingProgress | None = None) -> tuple:
        mean = create_ome_zarr(
            tmp_path / f"mean-{name}.zarr",
            shape=raw.shape,
            dtype="float32",
            voxel_size=VS,
            chunks=(16, 20, 16),
        )
        map_layer(
            ndi.uniform_filter,
            raw_layer,
            mean,
            block_shape=(16, 20, 16),
            halo_vox=2,
            fn_kwargs={"size": 5},
            scheduler=scheduler,
            progress=progress,
        )
        labels = create_ome_zarr(
            tmp_path / f"labels-{name}.zarr",
            shape=raw.shape,
            dtype="uint32",
            voxel_size=VS,
            kind="labels",
            chunks=(16, 20, 16),
        )
        label_blockwise(
            cc3d.connected_components,
            mask_layer,
            labels,
            block_shape=(16, 20, 16),
            fn_kwargs={"connectivity": 26},
            scheduler=scheduler,
            progress=progress,
        )
        return mean.read(), labels.read()

    expected_mean, expected_labels = run("threads", "threads")
    progress = RecordingProgress()
    with get_client("local:2", memory_limit="1GB") as client:
        assert len(client.nthreads()) == 2
        mean, labels = run(client, "cluster", progress)
        with pytest.raises(ConfigError, match="memory"):
            map_layer(
                ndi.uniform_filter,
                raw_layer,
                Layer(np.zeros_like(raw), VS, read_only=False),
                block_shape=16,
                fn_kwargs={"size": 3},
                scheduler=client,
            )
    np.testing.assert_array_equal(mean, expected_mean)
    np.testing.assert_array_equal(mean, ndi.uniform_filter(raw, size=5))
    # the numbering follows the blocks' order, not the scheduler's: identical, not just
    # the same partition
    np.testing.assert_array_equal(labels, expected_labels)
    assert labels.max() == cc3d.connected_components(mask, connectivity=26).max()
    n_blocks = 2 * 2 * 3
    block_tasks = [task for task in progress.tasks if task[0] == n_blocks]
    assert block_tasks == [[n_blocks, n_blocks]] * 4  # map, then label / match / relabel
