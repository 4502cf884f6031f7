"""Surface distances in nm: exact known values with anisotropic voxels."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from vemkit.errors import ConfigError, InvalidVolumeError
from vemkit.geometry import VoxelSize
from vemkit.measure import hausdorff_distances, surface_distances


def _cube(shape: tuple[int, int, int], start: tuple[int, int, int], size: int) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[tuple(slice(s, s + size) for s in start)] = True
    return mask


def test_cubes_offset_along_z_exact_values() -> None:
    # Two 4^3 cubes, the second 2 slices deeper; voxels 40 x 4 x 4 nm.
    # Surface of A (56 voxels) to surface of B: bottom face 16 x 80 nm, next ring
    # 12 x 40 nm, two rings 24 x 0 nm (they lie on B's surface), top-face centre
    # 4 x 4 nm (one voxel from B's side wall). B to A is the mirror image.
    a = _cube((10, 8, 8), (2, 2, 2), 4)
    b = _cube((10, 8, 8), (4, 2, 2), 4)
    mean_nm, hd95_nm, max_nm = hausdorff_distances(a, b, voxel_size=VoxelSize(40, 4, 4))
    assert mean_nm == pytest.approx(2 * (16 * 80 + 12 * 40 + 4 * 4) / 112)
    assert hd95_nm == pytest.approx(80.0)
    assert max_nm == pytest.approx(80.0)
    a_to_b, b_to_a = surface_distances(a, b, voxel_size=(40, 4, 4))
    assert sorted(a_to_b) == pytest.approx(sorted(b_to_a))
    assert sorted(a_to_b) == pytest.approx(
        sorted([0.0] * 24 + [4.0] * 4 + [40.0] * 12 + [80.0] * 16)
    )


def test_offset_plates_in_all_axes_exact_values() -> None:
    # One-voxel-thick 6 x 6 plates (every voxel is surface): A at z=2, y 2..7,
    # x 2..7; B at z=5, y 3..8, x 4..9. The nearest voxel of the other plate is
    # straight across in z, clamped to the other plate's y/x extent.
    sz, sy, sx = 30.0, 5.0, 2.0
    a = np.zeros((8, 12, 12), bool)
    b = np.zeros((8, 12, 12), bool)
    a[2, 2:8, 2:8] = True
    b[5, 3:9, 4:10] = True
    expected = []
    for y in range(2, 8):
        for x in range(2, 8):  # A -> B
            expected.append(math.hypot(3 * sz, max(0, 3 - y) * sy, max(0, 4 - x) * sx))
    for y in range(3, 9):
        for x in range(4, 10):  # B -> A
            expected.append(math.hypot(3 * sz, max(0, y - 7) * sy, max(0, x - 7) * sx))
    mean_nm, hd95_nm, max_nm = hausdorff_distances(a, b, voxel_size=(sz, sy, sx))
    assert mean_nm == pytest.approx(np.mean(expected))
    assert hd95_nm == pytest.approx(np.percentile(expected, 95))
    assert max_nm == pytest.approx(math.sqrt(90**2 + 5**2 + 4**2))


def _brute_force(a: np.ndarray, b: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """Union of directed surface distances by explicit neighbour tests and cdist."""

    def surface_points(mask: np.ndarray) -> np.ndarray:
        padded = np.pad(mask, 1)
        inner = padded.copy()
        for axis in range(mask.ndim):
            for shift in (1, -1):
                inner &= np.roll(padded, shift, axis=axis)
        surface = mask & ~inner[tuple(slice(1, -1) for _ in mask.shape)]
        return np.argwhere(surface) * np.asarray(spacing)

    pa, pb = surface_points(a), surface_points(b)
    d = cdist(pa, pb)
    return np.concatenate([d.min(axis=1), d.min(axis=0)])


@pytest.mark.parametrize("seed", [0, 1])
def test_random_blobs_equal_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.random((7, 9, 10)) < 0.3
    b = rng.random((7, 9, 10)) < 0.2
    a[0] = True  # touches the array border: border voxels are surface
    spacing = (35.0, 6.0, 4.5)
    reference = _brute_force(a, b, spacing)
    got = hausdorff_distances(a, b, voxel_size=spacing, percentile=90)
    assert got == pytest.approx((reference.mean(), np.percentile(reference, 90), reference.max()))


def test_cropping_and_padding_do_not_change_result() -> None:
    a = _cube((6, 6, 6), (0, 1, 2), 4)  # touches the border
    b = _cube((6, 6, 6), (1, 2, 2), 3)
    small = hausdorff_distances(a, b, voxel_size=(50, 5, 5))
    big = hausdorff_distances(np.pad(a, 7), np.pad(b, 7), voxel_size=(50, 5, 5))
    assert small == pytest.approx(big)


def test_identical_masks_and_percentile_bounds() -> None:
    a = _cube((6, 6, 6), (1, 1, 1), 3)
    assert hausdorff_distances(a, a, voxel_size=10) == (0.0, 0.0, 0.0)
    b = _cube((6, 6, 6), (2, 1, 1), 3)
    both = np.concatenate(surface_distances(a, b, voxel_size=10))
    assert hausdorff_distances(a, b, voxel_size=10, percentile=100)[1] == both.max()
    assert hausdorff_distances(a, b, voxel_size=10, percentile=0)[1] == both.min()


def test_two_dimensional_masks_use_yx_voxel_size() -> None:
    a = np.zeros((5, 5), bool)
    b = np.zeros((5, 5), bool)
    a[1, 1] = True
    b[4, 1] = True
    assert hausdorff_distances(a, b, voxel_size=(1000, 7, 3)) == (21.0, 21.0, 21.0)


def test_empty_mask_policy() -> None:
    empty = np.zeros((4, 4, 4), bool)
    full = _cube((4, 4, 4), (1, 1, 1), 2)
    assert all(math.isnan(v) for v in hausdorff_distances(empty, empty, voxel_size=1))
    assert hausdorff_distances(full, empty, voxel_size=1) == (math.inf,) * 3
    assert hausdorff_distances(empty, full, voxel_size=1) == (math.inf,) * 3


def test_bad_input() -> None:
    a = np.zeros((4, 4, 4), bool)
    with pytest.raises(InvalidVolumeError, match="same shape"):
        hausdorff_distances(a, a[:2], voxel_size=1)
    with pytest.raises(InvalidVolumeError, match="dimensions"):
        hausdorff_distances(a[None], a[None], voxel_size=1)
    with pytest.raises(ConfigError, match="percentile"):
        hausdorff_distances(a, a, voxel_size=1, percentile=120)
    with pytest.raises(ValueError, match="voxel size"):
        hausdorff_distances(a, a, voxel_size=(1, 2))
