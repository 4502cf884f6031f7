"""label_blockwise: stitched instance labels equal a single-block run (up to relabelling)."""

from __future__ import annotations

from pathlib import Path

import cc3d
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage as ndi
from skimage.segmentation import watershed

from vemkit.blockwise import label_blockwise, same_partition
from vemkit.errors import ConfigError, InvalidVolumeError
from vemkit.geometry import VoxelSize
from vemkit.io import Layer
from vemkit.io.formats.ome_zarr import open_ome_zarr
from vemkit.io.ome_zarr import create_ome_zarr, write_ome_zarr

VS = VoxelSize(8.0, 8.0, 8.0)


def _labels_target(shape: tuple[int, ...], dtype: str = "uint32") -> Layer:
    axes = "zyx"[-len(shape) :]
    return Layer(np.zeros(shape, dtype), VS, axes=axes, kind="labels", read_only=False)


def _blobs(shape: tuple[int, ...], seed: int, sigma: float = 1.5) -> np.ndarray:
    noise = np.random.default_rng(seed).random(shape)
    smooth = ndi.gaussian_filter(noise, sigma)
    return smooth > np.quantile(smooth, 0.8)


def components(mask: np.ndarray, *, connectivity: int) -> np.ndarray:
    if sum(n > 1 for n in mask.shape) <= 1 and mask.ndim == 3:
        # cc3d 4.1 fails on 1-voxel lines with 18/26-connectivity; on a line every
        # connectivity gives the same components
        connectivity = 6
    return cc3d.connected_components(mask, connectivity=connectivity)


class RecordingProgress:
    def __init__(self) -> None:
        self.tasks: list[list[int]] = []

    def start(self, total: int, description: str) -> None:
        self.tasks.append([total, 0])

    def advance(self, steps: int = 1) -> None:
        self.tasks[-1][1] += steps

    def finish(self) -> None:
        pass


@settings(max_examples=25, deadline=None)
@given(
    shape=st.tuples(*(st.integers(3, 14),) * 3),
    fractions=st.tuples(*(st.floats(0.2, 1.0),) * 3),
    density=st.floats(0.2, 0.7),
    connectivity=st.sampled_from([6, 18, 26]),
    seed=st.integers(0, 2**16),
)
def test_connected_components_match_a_single_block_run(
    shape: tuple[int, int, int],
    fractions: tuple[float, float, float],
    density: float,
    connectivity: int,
    seed: int,
) -> None:
    mask = np.random.default_rng(seed).random(shape) < density
    block_shape = tuple(max(1, round(n * f)) for n, f in zip(shape, fractions, strict=True))
    out = _labels_target(shape)
    label_blockwise(
        components,
        Layer(mask, VS),
        out,
        block_shape=block_shape,
        connectivity=connectivity,
        fn_kwargs={"connectivity": connectivity},
        scheduler="synchronous",
    )
    expected = cc3d.connected_components(mask, connectivity=connectivity)
    assert same_partition(out.data, expected)
    assert out.data.max() == expected.max()  # sequential ids 1..K


@pytest.mark.parametrize("connectivity", [6, 26])
@pytest.mark.parametrize("block_shape", [(16, 16, 16), (20, 24, 7), (48, 5, 60), (1, 60, 60)])
def test_blob_components_across_block_shapes(
    block_shape: tuple[int, int, int], connectivity: int
) -> None:
    mask = _blobs((48, 56, 60), seed=1)
    out = _labels_target(mask.shape)
    label_blockwise(
        components,
        Layer(mask, VS),
        out,
        block_shape=block_shape,
        connectivity=connectivity,
        fn_kwargs={"connectivity": connectivity},
    )
    expected = cc3d.connected_components(mask, connectivity=connectivity)
    assert expected.max() > 20
    assert same_partition(out.data, expected)


def test_zarr_target_progress_and_pyramid(tmp_path: Path) -> None:
    mask = _blobs((40, 48, 56), seed=2)
    source = write_ome_zarr(tmp_path / "m.zarr", mask.astype(np.uint8), voxel_size=VS, name="m")
    target = create_ome_zarr(
        tmp_path / "l.zarr",
        shape=mask.shape,
        dtype="uint32",
        voxel_size=VS,
        kind="labels",
        chunks=(10, 16, 16),
        n_levels=2,
    )
    progress = RecordingProgress()
    label_blockwise(
        components,
        source,
        target,
        block_shape=(20, 16, 32),
        fn_kwargs={"connectivity": 26},
        progress=progress,
        n_workers=2,
    )
    expected = cc3d.connected_components(mask, connectivity=26)
    assert same_partition(target.read(), expected)
    n_blocks = 2 * 3 * 2
    assert progress.tasks[:3] == [[n_blocks, n_blocks]] * 3  # label, match, relabel
    assert len(progress.tasks) == 4  # then the pyramid
    level1 = open_ome_zarr(tmp_path / "l.zarr", level=1).read()  # rebuilt from final labels
    assert set(np.unique(level1)) <= set(np.unique(target.read()))
    assert level1.max() > 0


def test_two_dimensional_images() -> None:
    mask = _blobs((61, 70), seed=3)
    for connectivity in (4, 8):
        out = _labels_target(mask.shape)
        label_blockwise(
            components,
            Layer(mask, VS, axes="yx"),
            out,
            block_shape=(9, 16),
            connectivity=connectivity,
            fn_kwargs={"connectivity": connectivity},
            scheduler="synchronous",
        )
        assert same_partition(out.data, cc3d.connected_components(mask, connectivity=connectivity))


def _dumbbells(shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """Separated spheres and touching sphere pairs (r = 3 voxels), plus a little noise."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape)
    mask = np.zeros(shape, bool)
    centres: list[np.ndarray] = []
    for _ in range(400):
        centre = rng.uniform(0, shape)
        direction = rng.normal(size=3)
        pair = [centre] + (
            [centre + 5.5 * direction / np.linalg.norm(direction)] if rng.random() < 0.6 else []
        )
        if any(np.linalg.norm(p - q) < 10.5 for p in pair for q in centres):
            continue
        centres.extend(pair)
        for p in pair:
            mask |= sum((g - c) ** 2 for g, c in zip(grid, p, strict=True)) <= 3.0**2
    return (mask + 0.01 * rng.random(shape)).astype(np.float32)


def distance_watershed(raw: np.ndarray) -> np.ndarray:
    """Split touching spheres: markers where the distance map exceeds 2 voxels.

    The raw values break ties in the flooding order, so each object's result depends only
    on the object itself (skimage's tie-breaking otherwise depends on the whole array).
    """
    mask = raw > 0.5
    distance = ndi.distance_transform_edt(mask)
    markers = cc3d.connected_components(distance > 2.0, connectivity=26)
    return watershed(-distance - raw, markers, mask=mask).astype(np.uint32)


@pytest.mark.parametrize("block_shape", [(20, 24, 24), (14, 17, 48)])
def test_watershed_with_halo_larger_than_objects(block_shape: tuple[int, int, int]) -> None:
    raw = _dumbbells((40, 48, 48), seed=3)
    expected = distance_watershed(raw)
    assert expected.max() > cc3d.connected_components(raw > 0.5).max()  # some were split
    out = _labels_target(raw.shape)
    label_blockwise(
        distance_watershed, Layer(raw, VS), out, block_shape=block_shape, halo_vox=13
    )  # merge="auto" -> "overlap"
    assert same_partition(out.data, expected)


def test_same_partition() -> None:
    a = np.array([[1, 1, 0], [2, 3, 3]])
    assert same_partition(a, a * 7 + 1 - (a == 0))
    assert same_partition(a.astype(np.uint64), np.array([[9, 9, 0], [4, 5, 5]], np.uint8))
    assert not same_partition(a, np.array([[1, 1, 0], [2, 2, 2]]))  # merged
    assert not same_partition(a, np.array([[1, 2, 0], [3, 4, 4]]))  # split
    assert not same_partition(a, np.array([[1, 1, 1], [2, 3, 3]]))  # background differs
    assert not same_partition(a, a[:, :2])
    assert same_partition(np.zeros((0, 2)), np.zeros((0, 2)))
    assert same_partition(np.array([[1, 2]]), np.array([[4, 3]]))  # no background at all
    assert not same_partition(np.array([[1, 2]]), np.array([[4, 4]]))
    assert same_partition(np.zeros((2, 2), np.uint8), np.zeros((2, 2), np.uint64))


def test_label_errors() -> None:
    mask = _blobs((16, 16, 16), seed=0)
    source = Layer(mask, VS)
    with pytest.raises(InvalidVolumeError, match=r"must be\s+integers"):
        label_blockwise(
            lambda m: m.astype(float),
            source,
            _labels_target(mask.shape),
            block_shape=8,
            scheduler="synchronous",
        )
    with pytest.raises(InvalidVolumeError, match="negative"):
        label_blockwise(
            lambda m: -m.astype(np.int32),
            source,
            _labels_target(mask.shape),
            block_shape=8,
            scheduler="synchronous",
        )
    with pytest.raises(InvalidVolumeError, match="halo too"):
        label_blockwise(
            lambda m: m[1:-1, 1:-1, 1:-1].astype(np.uint8),
            source,
            _labels_target(mask.shape),
            block_shape=8,
            halo_vox=1,
            scheduler="synchronous",
        )
    with pytest.raises(ConfigError, match="unsigned integer"):
        label_blockwise(components, source, _labels_target(mask.shape, "int32"), block_shape=8)
    with pytest.raises(ConfigError, match="halo along every axis"):
        label_blockwise(
            components,
            source,
            _labels_target(mask.shape),
            block_shape=8,
            halo_vox=(0, 2, 2),
            merge="overlap",
        )
    with pytest.raises(ConfigError, match="connectivity"):
        label_blockwise(
            components, source, _labels_target(mask.shape), block_shape=8, connectivity=8
        )
    noise = np.indices((20, 20, 20)).sum(axis=0) % 2 == 0  # 4000 isolated voxels
    with pytest.raises(ConfigError, match="uint64"):
        label_blockwise(
            components,
            Layer(noise, VS),
            _labels_target(noise.shape, "uint8"),
            block_shape=10,
            fn_kwargs={"connectivity": 6},
            connectivity=6,
            scheduler="synchronous",
        )
