"""Pyramid factors, mean / mode downsampling (NumPy and Dask) and level choice."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from vemkit.geometry import VoxelSize
from vemkit.io.pyramid import (
    downsample_dask,
    downsample_factors,
    downsample_image,
    downsample_labels,
    downsampled_shape,
    pick_level,
)

# --- factors -------------------------------------------------------------------------------


def test_factors_anisotropic_halve_fine_axes_until_they_catch_up() -> None:
    factors = downsample_factors((50.0, 4.6, 4.6), (200, 2048, 2048))
    assert factors[:3] == [(1, 2, 2)] * 3  # y, x: 4.6 -> 9.2 -> 18.4 -> 36.8 nm
    assert factors[3] == (2, 2, 2)  # 50 < 2 × 36.8: now all axes
    shape = (200, 2048, 2048)
    for f in factors:
        shape = downsampled_shape(shape, f)
    assert max(shape) <= 64


def test_factors_isotropic_and_small_volumes() -> None:
    assert downsample_factors((8.0, 8.0, 8.0), (256, 256, 256)) == [(2, 2, 2)] * 2
    assert downsample_factors(VoxelSize(8, 8, 8), (64, 64, 64)) == []
    # exactly 2x anisotropy: z is left alone once, then everything is isotropic
    assert downsample_factors((8.0, 4.0, 4.0), (128, 256, 256)) == [(1, 2, 2), (2, 2, 2)]


def test_factors_n_levels_and_singleton_axes() -> None:
    assert downsample_factors((8.0, 8.0, 8.0), (16, 16, 16), n_levels=3) == [(2, 2, 2)] * 2
    assert downsample_factors((8.0, 8.0, 8.0), (16, 16, 16), n_levels=1) == []
    # a single slice is never downsampled along z
    factors = downsample_factors((8.0, 8.0, 8.0), (1, 300, 300))
    assert all(f[0] == 1 for f in factors)
    # n_levels beyond a 1-voxel volume stops early
    assert len(downsample_factors((1.0, 1.0, 1.0), (2, 2, 2), n_levels=10)) == 1
    with pytest.raises(ValueError, match="n_levels"):
        downsample_factors((1.0, 1.0, 1.0), (2, 2, 2), n_levels=0)


# --- image mean ----------------------------------------------------------------------------


def test_image_mean_of_2x2x2_blocks() -> None:
    rng = np.random.default_rng(0)
    values = rng.random((4, 6, 8)).astype(np.float32)
    result = downsample_image(values, (2, 2, 2))
    expected = values.reshape(2, 2, 3, 2, 4, 2).mean(axis=(1, 3, 5))
    assert result.dtype == np.float32
    np.testing.assert_allclose(result, expected, rtol=1e-6)


def test_image_integers_round_and_keep_dtype() -> None:
    values = np.array([[[1, 2], [3, 3]], [[250, 255], [255, 255]]], dtype=np.uint8)
    result = downsample_image(values, (1, 2, 2))
    assert result.dtype == np.uint8
    assert result.tolist() == [[[2]], [[254]]]  # 9 / 4 = 2.25 -> 2; 1015 / 4 = 253.75 -> 254


def test_image_odd_shape_is_padded_and_edge_averages_existing_voxels() -> None:
    values = np.arange(3 * 5 * 4, dtype=np.float64).reshape(3, 5, 4)
    result = downsample_image(values, (2, 2, 2))
    assert result.shape == (2, 3, 2)
    assert result[1, 2, 1] == values[2:3, 4:5, 2:4].mean()  # partial corner block
    assert result[0, 0, 0] == values[0:2, 0:2, 0:2].mean()


def test_image_factor_one_axis_is_untouched() -> None:
    values = np.arange(2 * 4 * 4, dtype=np.uint16).reshape(2, 4, 4)
    result = downsample_image(values, (1, 2, 2))
    assert result.shape == (2, 2, 2)
    np.testing.assert_array_equal(downsample_image(values, (1, 1, 1)), values)


# --- labels mode ---------------------------------------------------------------------------


def test_labels_mode_picks_the_majority() -> None:
    block = np.zeros((2, 2, 2), dtype=np.uint32)
    block.flat[:] = [5, 5, 5, 0, 0, 7, 7, 7]  # 5 and 7 three times each: first (5) wins
    assert downsample_labels(block, (2, 2, 2)).item() == 5
    block.flat[:] = [0, 0, 9, 9, 9, 3, 3, 0]  # 0 and 9 three times; 0 comes first
    assert downsample_labels(block, (2, 2, 2)).item() == 0
    block.flat[:] = [1, 2, 2, 2, 2, 3, 3, 3]
    assert downsample_labels(block, (2, 2, 2)).item() == 2


def test_labels_mode_keeps_large_uint64_values_and_dtype() -> None:
    big = np.uint64(2**62 + 1)
    values = np.full((4, 4, 4), big, dtype=np.uint64)
    values[0, 0, 0] = 3
    result = downsample_labels(values, (2, 2, 2))
    assert result.dtype == np.uint64
    assert (result == big).all()


def test_labels_odd_shape_votes_among_existing_voxels() -> None:
    values = np.zeros((1, 3, 3), dtype=np.uint16)
    values[0, 2, :] = [4, 4, 8]  # last row: a partial block in y
    result = downsample_labels(values, (1, 2, 2))
    assert result.shape == (1, 2, 2)
    # block (y=2, x=0..1) holds only [4, 4] (the padding does not vote)
    assert result[0, 1, 0] == 4
    assert result[0, 1, 1] == 8
    assert result[0, 0, 0] == 0


def test_labels_never_invents_values() -> None:
    rng = np.random.default_rng(1)
    values = rng.integers(0, 4, size=(9, 10, 11)).astype(np.uint32) * 1000
    result = downsample_labels(values, (2, 2, 2))
    assert set(np.unique(result)) <= set(np.unique(values))


# --- dask ----------------------------------------------------------------------------------


@pytest.mark.parametrize("factors", [(2, 2, 2), (1, 2, 2)])
@pytest.mark.parametrize("kind", ["image", "labels"])
def test_dask_matches_numpy_on_irregular_chunks(kind: str, factors: tuple[int, ...]) -> None:
    rng = np.random.default_rng(2)
    values = rng.integers(0, 5, size=(13, 17, 19)).astype(np.uint16)
    lazy = da.from_array(values, chunks=(3, 5, 7))
    result = downsample_dask(lazy, factors, kind=kind)  # type: ignore[arg-type]
    reference = (downsample_image if kind == "image" else downsample_labels)(values, factors)
    assert result.shape == reference.shape
    assert result.dtype == values.dtype
    np.testing.assert_array_equal(result.compute(scheduler="synchronous"), reference)


# --- level choice --------------------------------------------------------------------------


def test_pick_level_log_distance() -> None:
    levels = [(50.0, 5.0, 5.0), (50.0, 10.0, 10.0), (50.0, 20.0, 20.0), (100.0, 40.0, 40.0)]
    assert pick_level(levels, (50.0, 5.0, 5.0)) == 0
    assert pick_level(levels, (50.0, 9.0, 9.0)) == 1
    assert pick_level(levels, VoxelSize(100, 40, 40)) == 3
    assert pick_level(levels, (400.0, 400.0, 400.0)) == 3
    # 2x too fine and 2x too coarse cost the same: the finer level wins the tie
    assert pick_level([(10.0, 10.0, 10.0), (40.0, 40.0, 40.0)], (20.0, 20.0, 20.0)) == 0
    assert pick_level([VoxelSize(8, 8, 8), VoxelSize(16, 16, 16)], (15, 15, 15)) == 1
    with pytest.raises(ValueError, match="no pyramid levels"):
        pick_level([], (1.0, 1.0, 1.0))
