"""Watershed variants: distance (nuclei), boundary (mitochondria), seeded wrapper."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from vemkit.errors import ConfigError, InvalidVolumeError, VemkitError
from vemkit.geometry import VoxelSize
from vemkit.segmentation import (
    boundary_watershed,
    distance_watershed,
    label_sizes,
    seeded_watershed,
)


def _balls(
    shape: tuple[int, int, int],
    voxel_size: VoxelSize,
    centres_nm: list[tuple[float, float, float]],
    radii_nm: list[float],
) -> tuple[np.ndarray, np.ndarray]:
    """Union mask of balls and the index of the nearest centre (the ideal split)."""
    grid = np.stack(
        np.meshgrid(
            *(np.arange(n) * s for n, s in zip(shape, voxel_size.as_tuple(), strict=True)),
            indexing="ij",
        )
    )
    dists = np.stack(
        [np.sqrt(((grid - np.reshape(c, (3, 1, 1, 1))) ** 2).sum(0)) for c in centres_nm]
    )
    inside = dists <= np.reshape(radii_nm, (-1, 1, 1, 1))
    mask = inside.any(0)
    nearest = np.argmin(dists - np.reshape(radii_nm, (-1, 1, 1, 1)), axis=0) + 1
    return mask, np.where(mask, nearest, 0)


def _signed_distance_nm(mask: np.ndarray, voxel_size: VoxelSize) -> np.ndarray:
    """Exact Euclidean signed distance on the grid, in nm, positive inside."""
    sampling = voxel_size.as_tuple()
    inside = ndi.distance_transform_edt(mask, sampling=sampling)
    outside = ndi.distance_transform_edt(~mask, sampling=sampling)
    return (inside - outside).astype(np.float32)


def _assert_matches(labels: np.ndarray, truth: np.ndarray, rel: float) -> None:
    assert labels.dtype == np.uint32
    ids, sizes = label_sizes(labels)
    assert ids.tolist() == list(range(1, int(truth.max()) + 1))
    for true_id in range(1, int(truth.max()) + 1):
        overlap = labels[truth == true_id]
        best = np.bincount(overlap).argmax()
        assert best != 0
        true_size = int((truth == true_id).sum())
        assert sizes[best - 1] == pytest.approx(true_size, rel=rel)
        iou = np.sum((labels == best) & (truth == true_id)) / np.sum(
            (labels == best) | (truth == true_id)
        )
        assert iou > 0.95


def test_distance_watershed_splits_two_touching_spheres() -> None:
    vs = VoxelSize(10, 10, 10)
    mask, truth = _balls((32, 32, 56), vs, [(155, 155, 160), (155, 155, 390)], [120, 120])
    assert ndi.label(mask)[1] == 1  # they touch
    labels = distance_watershed(_signed_distance_nm(mask, vs), voxel_size=vs, seed_threshold_nm=60)
    _assert_matches(labels, truth, rel=0.03)


def test_distance_watershed_anisotropic_voxels() -> None:
    vs = VoxelSize(30, 10, 10)
    mask, truth = _balls((16, 36, 64), vs, [(225, 175, 170), (225, 175, 440)], [150, 150])
    assert ndi.label(mask)[1] == 1
    distance = _signed_distance_nm(mask, vs)
    labels = distance_watershed(distance, voxel_size=vs, seed_threshold_nm=75)
    _assert_matches(labels, truth, rel=0.04)
    # in nm the two balls have the same volume even though z voxels are 3x longer
    _, sizes = label_sizes(labels)
    assert sizes[0] * vs.volume_nm3 == pytest.approx(4 / 3 * np.pi * 150**3, rel=0.12)


def test_distance_watershed_min_size_is_in_nm3() -> None:
    vs = VoxelSize(30, 10, 10)  # 3000 nm³ per voxel
    mask, _ = _balls((16, 32, 48), vs, [(225, 155, 150), (225, 155, 390)], [120, 40])
    distance = _signed_distance_nm(mask, vs)
    small_vox = int(ndi.label(mask)[0].__eq__(2).sum())
    small_nm3 = small_vox * vs.volume_nm3
    kept = distance_watershed(
        distance, voxel_size=vs, seed_threshold_nm=20, min_size_nm3=0.9 * small_nm3
    )
    assert kept.max() == 2
    removed = distance_watershed(
        distance, voxel_size=vs, seed_threshold_nm=20, min_size_nm3=1.1 * small_nm3
    )
    assert removed.max() == 1
    assert removed.dtype == np.uint32
    # the survivor is the big ball, renumbered to 1
    assert removed[8, 15, 15] == 1


def test_distance_watershed_labels_masked_component_without_seed() -> None:
    vs = VoxelSize(10, 10, 10)
    mask, _ = _balls((24, 24, 48), vs, [(115, 115, 120), (115, 115, 340)], [100, 40])
    distance = _signed_distance_nm(mask, vs)
    # the small ball's maximum distance (~40 nm) is below the seed threshold
    assert distance[:, :, 28:].max() < 60
    labels = distance_watershed(distance, voxel_size=vs, seed_threshold_nm=60)
    assert labels.max() == 2
    assert np.array_equal(labels > 0, mask)
    assert len(np.unique(labels[:, :, 28:][mask[:, :, 28:]])) == 1


def test_distance_watershed_min_seed_size_ignores_tiny_seeds() -> None:
    vs = VoxelSize(10, 10, 10)
    mask, _ = _balls((24, 24, 24), vs, [(115, 115, 115)], [100])
    distance = _signed_distance_nm(mask, vs)
    distance[2, 11, 11] = 500.0  # a one-voxel spike at the edge: a spurious seed
    noisy = distance_watershed(distance, voxel_size=vs, seed_threshold_nm=50)
    assert noisy.max() == 2
    clean = distance_watershed(
        distance, voxel_size=vs, seed_threshold_nm=50, min_seed_size_nm3=5 * vs.volume_nm3
    )
    assert clean.max() == 1


def test_distance_watershed_validates_inputs() -> None:
    vs = VoxelSize(10, 10, 10)
    with pytest.raises(InvalidVolumeError, match=r"distance_nm must be a 3-D.*2-D"):
        distance_watershed(np.zeros((4, 4), np.float32), voxel_size=vs)
    bad = np.zeros((4, 4, 4), np.float32)
    bad[0, 0, 0] = np.nan
    with pytest.raises(InvalidVolumeError, match="distance_nm contains 1 NaN"):
        distance_watershed(bad, voxel_size=vs)
    with pytest.raises(ConfigError, match="seed_threshold_nm"):
        distance_watershed(np.zeros((4, 4, 4)), voxel_size=vs, seed_threshold_nm=-5)
    with pytest.raises(ValueError, match=r"min_size_nm3 must be >= 0, got -1"):
        distance_watershed(np.zeros((4, 4, 4)), voxel_size=vs, min_size_nm3=-1)
    with pytest.raises(VemkitError, match="voxel size"):
        distance_watershed(np.zeros((4, 4, 4)), voxel_size=(1, 2))  # type: ignore[arg-type]


def test_distance_watershed_empty_map_gives_background() -> None:
    labels = distance_watershed(-np.ones((8, 8, 8), np.float32), voxel_size=VoxelSize(5, 5, 5))
    assert labels.dtype == np.uint32
    assert not labels.any()


def _two_blobs_with_boundary() -> tuple[np.ndarray, np.ndarray, np.ndarray, VoxelSize]:
    vs = VoxelSize(20, 10, 10)
    mask, truth = _balls((20, 40, 64), vs, [(190, 195, 190), (190, 195, 430)], [150, 150])
    contact = np.zeros_like(mask)
    # the boundary a network would predict: object outlines and the contact between them
    outline = mask & ~ndi.binary_erosion(mask)
    for axis in range(3):
        contact |= (np.diff(truth, axis=axis, prepend=0) != 0) & (truth > 0)
    boundary = ndi.gaussian_filter((outline | contact).astype(np.float32), 1.0)
    boundary /= boundary.max()
    foreground = ndi.gaussian_filter(mask.astype(np.float32), 0.7)
    return foreground, boundary, truth, vs


def test_boundary_watershed_separates_touching_blobs() -> None:
    foreground, boundary, truth, vs = _two_blobs_with_boundary()
    assert ndi.label(foreground > 0.5)[1] == 1
    labels = boundary_watershed(foreground, boundary, voxel_size=vs, boundary_threshold=0.3)
    assert labels.dtype == np.uint32
    assert labels.max() == 2
    for true_id in (1, 2):
        hit = np.bincount(labels[truth == true_id]).argmax()
        inter = np.sum((labels == hit) & (truth == true_id))
        union = np.sum((labels == hit) | (truth == true_id))
        assert inter / union > 0.85


def test_boundary_watershed_options() -> None:
    foreground, boundary, _, vs = _two_blobs_with_boundary()
    labels = boundary_watershed(
        foreground,
        boundary,
        voxel_size=vs,
        boundary_threshold=0.3,
        seed_erosion_nm=20,
        distance_weight=0.3,
        min_seed_size_nm3=1e5,
        min_size_nm3=1e6,
    )
    assert labels.max() == 2
    with pytest.raises(InvalidVolumeError, match="foreground and boundary must have the same"):
        boundary_watershed(foreground, boundary[:-1], voxel_size=vs)


def test_seeded_watershed_keeps_seed_ids_and_mask() -> None:
    elevation = np.zeros((1, 1, 9), np.float32)
    elevation[0, 0, 4] = 1.0
    seeds = np.zeros((1, 1, 9), np.uint16)
    seeds[0, 0, 0], seeds[0, 0, 8] = 3, 7
    mask = np.ones((1, 1, 9), bool)
    mask[0, 0, 6] = False
    out = seeded_watershed(elevation, seeds, mask=mask)
    assert out.dtype == np.uint32
    assert out[0, 0].tolist() == [3, 3, 3, 3, 3, 3, 0, 7, 7]


@pytest.mark.parametrize("seed", range(6))
def test_component_wise_flooding_equals_one_whole_volume_watershed(seed: int) -> None:
    """The per-component flood gives exactly what one skimage watershed + leftover CC gives."""
    import cc3d
    from skimage.segmentation import watershed

    from vemkit.blockwise import same_partition
    from vemkit.segmentation.watershed import _flood_and_label_rest

    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(1, 16)), int(rng.integers(8, 48)), int(rng.integers(8, 48)))
    field = ndi.gaussian_filter(rng.random(shape), 2)
    mask = field > np.quantile(field, rng.uniform(0.3, 0.8))
    elevation = ndi.gaussian_filter(rng.random(shape), 1).astype(np.float32)
    seed_mask = mask & (ndi.gaussian_filter(rng.random(shape), 1) > 0.5)
    seeds = cc3d.connected_components(seed_mask, connectivity=6).astype(np.uint32)

    expected = watershed(elevation, seeds, mask=mask, connectivity=1).astype(np.uint32)
    unseeded = cc3d.connected_components(mask & (expected == 0), connectivity=6)
    expected[unseeded > 0] = unseeded[unseeded > 0] + expected.max()

    labels = _flood_and_label_rest(elevation, seeds, mask)
    assert labels.dtype == np.uint32
    assert same_partition(labels, expected)
    np.testing.assert_array_equal(labels[seeds > 0], seeds[seeds > 0])
    assert not labels[~mask].any()
