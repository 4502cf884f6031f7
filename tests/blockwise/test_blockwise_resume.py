"""Resuming blockwise runs: skip finished blocks, refuse stale ones, survive SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cc3d
import numpy as np
import pytest
from scipy import ndimage as ndi

from vemkit.blockwise import ResumeMismatchError, label_blockwise, map_layer, same_partition
from vemkit.errors import OutputExistsError, VemkitError
from vemkit.geometry import VoxelSize
from vemkit.io import Layer, open_layer
from vemkit.io.ome_zarr import create_ome_zarr, open_ome_zarr_writable, write_ome_zarr

VS = VoxelSize(8.0, 8.0, 8.0)
CALLS: list[tuple[int, ...]] = []
FAIL_AFTER: list[int] = []  # raise once this many blocks have been computed


def counting_mean(block: np.ndarray, *, size: int = 3) -> np.ndarray:
    if FAIL_AFTER and len(CALLS) >= FAIL_AFTER[0]:
        raise RuntimeError("simulated crash")
    CALLS.append(block.shape)
    return ndi.uniform_filter(block, size=size)


def counting_components(mask: np.ndarray) -> np.ndarray:
    if FAIL_AFTER and len(CALLS) >= FAIL_AFTER[0]:
        raise RuntimeError("simulated crash")
    CALLS.append(mask.shape)
    return cc3d.connected_components(mask, connectivity=26)


@pytest.fixture(autouse=True)
def _reset_counters() -> None:
    CALLS.clear()
    FAIL_AFTER.clear()


def _source(tmp_path: Path) -> tuple[np.ndarray, Layer]:
    raw = np.random.default_rng(0).random((24, 32, 40)).astype(np.float32)
    return raw, write_ome_zarr(tmp_path / "raw.zarr", raw, voxel_size=VS, name="raw")


def _target(tmp_path: Path, name: str, dtype: str = "float32") -> Layer:
    return create_ome_zarr(
        tmp_path / name,
        shape=(24, 32, 40),
        dtype=dtype,
        voxel_size=VS,
        chunks=(8, 16, 16),
        n_levels=1,
    )


def test_crash_then_resume_computes_only_the_rest(tmp_path: Path) -> None:
    raw, source = _source(tmp_path)
    n_blocks = 3 * 2 * 3
    FAIL_AFTER.append(7)
    with pytest.raises(RuntimeError, match="simulated crash"):
        map_layer(
            counting_mean,
            source,
            _target(tmp_path, "o.zarr"),
            block_shape=(8, 16, 16),
            halo_vox=1,
            scheduler="synchronous",
        )
    assert len(CALLS) == 7
    FAIL_AFTER.clear()
    CALLS.clear()
    target = open_ome_zarr_writable(tmp_path / "o.zarr")
    map_layer(
        counting_mean, source, target, block_shape=(8, 16, 16), halo_vox=1, scheduler="synchronous"
    )
    assert len(CALLS) == n_blocks - 7
    np.testing.assert_array_equal(target.read(), ndi.uniform_filter(raw, size=3))
    CALLS.clear()  # a finished run is a no-op
    map_layer(counting_mean, source, target, block_shape=(8, 16, 16), halo_vox=1)
    assert CALLS == []


def test_changed_parameters_refuse_to_resume(tmp_path: Path) -> None:
    raw, source = _source(tmp_path)
    target = _target(tmp_path, "o.zarr")
    FAIL_AFTER.append(3)
    with pytest.raises(RuntimeError):
        map_layer(
            counting_mean,
            source,
            target,
            block_shape=(8, 16, 16),
            halo_vox=1,
            scheduler="synchronous",
        )
    FAIL_AFTER.clear()
    changes = [
        {"fn_kwargs": {"size": 5}},
        {"halo_vox": 2},
        {"block_shape": (8, 32, 16)},
    ]
    for change in changes:
        options = {"block_shape": (8, 16, 16), "halo_vox": 1, **change}
        with pytest.raises(ResumeMismatchError, match="resume=False") as caught:
            map_layer(counting_mean, source, target, **options)
        assert isinstance(caught.value, OutputExistsError)
        assert isinstance(caught.value, VemkitError)
    with pytest.raises(ResumeMismatchError, match="fn"):
        map_layer(ndi.uniform_filter, source, target, block_shape=(8, 16, 16), halo_vox=1)
    CALLS.clear()
    map_layer(
        counting_mean,
        source,
        target,
        block_shape=(8, 16, 16),
        halo_vox=2,
        fn_kwargs={"size": 5},
        resume=False,
    )
    assert len(CALLS) == 18
    np.testing.assert_array_equal(target.read(), ndi.uniform_filter(raw, size=5))


def test_label_blockwise_resumes_every_stage(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    mask = ndi.gaussian_filter(rng.random((24, 32, 40)), 1.5) > 0.53
    source = write_ome_zarr(
        tmp_path / "mask.zarr", mask.astype(np.uint8), voxel_size=VS, name="mask"
    )
    options = {"block_shape": (8, 16, 16), "scheduler": "synchronous"}
    expected = cc3d.connected_components(mask, connectivity=26)

    # crash while labelling: the re-run labels only the remaining blocks
    FAIL_AFTER.append(5)
    with pytest.raises(RuntimeError):
        label_blockwise(
            counting_components, source, _target(tmp_path, "l.zarr", "uint32"), **options
        )
    FAIL_AFTER.clear()
    CALLS.clear()
    target = open_ome_zarr_writable(tmp_path / "l.zarr")
    label_blockwise(counting_components, source, target, **options)
    assert len(CALLS) == 18 - 5
    assert same_partition(target.read(), expected)

    # crash while writing the final labels: the re-run labels and matches nothing again
    other = _target(tmp_path, "m.zarr", "uint32")
    state = tmp_path / "state"

    class FailingWrites:
        def __init__(self, array: object, fail_after: int) -> None:
            self.array, self.writes, self.fail_after = array, 0, fail_after
            self.shape, self.dtype, self.chunks = array.shape, array.dtype, array.chunks

        def __getitem__(self, key: object) -> object:
            return self.array[key]

        def __setitem__(self, key: object, value: object) -> None:
            if self.writes >= self.fail_after:
                raise OSError("disk full")
            self.writes += 1
            self.array[key] = value

    flaky = other.with_data(FailingWrites(other.data, 4))
    with pytest.raises(OSError, match="disk full"):
        label_blockwise(counting_components, source, flaky, state_dir=state, **options)
    CALLS.clear()
    label_blockwise(counting_components, source, other, state_dir=state, **options)
    assert CALLS == []
    np.testing.assert_array_equal(other.read(), target.read())
    assert not (state / "local-ids.zarr").exists()  # scratch data removed at the end


_WORKER = """
import os, sys, time
import numpy as np
from scipy import ndimage as ndi

CALLS = []

def slow_mean(block):
    CALLS.append(1)
    if os.environ.get("VEMKIT_TEST_SLOW"):
        time.sleep(0.15)
    return ndi.uniform_filter(block, size=3)

if __name__ == "__main__":
    from slow_worker import slow_mean  # the importable function, as the parent uses it
    from vemkit.blockwise import map_layer
    from vemkit.io import open_layer
    from vemkit.io.ome_zarr import open_ome_zarr_writable
    map_layer(slow_mean, open_layer(sys.argv[1]), open_ome_zarr_writable(sys.argv[2]),
              block_shape=(8, 16, 16), halo_vox=1, scheduler="synchronous")
"""


def test_resume_after_sigkill(tmp_path: Path) -> None:
    raw, _ = _source(tmp_path)
    _target(tmp_path, "o.zarr")
    module = tmp_path / "slow_worker.py"
    module.write_text(textwrap.dedent(_WORKER))
    env = {**os.environ, "VEMKIT_TEST_SLOW": "1", "PYTHONPATH": str(tmp_path)}
    child = subprocess.Popen(
        [sys.executable, str(module), str(tmp_path / "raw.zarr"), str(tmp_path / "o.zarr")],
        env=env,
    )
    markers = tmp_path / "o.zarr" / ".vemkit-blockwise" / "0" / "map"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and child.poll() is None:
        if markers.is_dir() and len(os.listdir(markers)) >= 4:
            break
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    finished = len([n for n in os.listdir(markers) if not n.startswith(".")])
    assert 4 <= finished < 18, "the worker finished before it could be killed"

    sys.path.insert(0, str(tmp_path))
    try:
        import slow_worker  # the very same function, so the fingerprint matches
    finally:
        sys.path.remove(str(tmp_path))
    target = open_ome_zarr_writable(tmp_path / "o.zarr")
    map_layer(
        slow_worker.slow_mean,
        open_layer(tmp_path / "raw.zarr"),
        target,
        block_shape=(8, 16, 16),
        halo_vox=1,
        scheduler="synchronous",
    )
    assert len(slow_worker.CALLS) == 18 - finished
    np.testing.assert_array_equal(target.read(), ndi.uniform_filter(raw, size=3))
