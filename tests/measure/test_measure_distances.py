"""Surface-to-surface and centroid-to-surface distances with anisotropic voxels."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from vemkit.errors import InvalidVolumeError
from vemkit.measure import (
    gap_distance_map,
    measure_regions,
    object_to_mask_distances,
    point_to_mask_distances,
)

VOXEL = (50.0, 10.0, 10.0)


def _two_cubes():
    """Cube A: z 2-5, y 2-5, x 2-5; cube B: z 10-13, y 2-5, x 20-23 (voxel indices)."""
    labels = np.zeros((16, 8, 26), np.uint8)
    labels[2:6, 2:6, 2:6] = 1
    reference = np.zeros_like(labels, dtype=bool)
    reference[10:14, 2:6, 20:24] = True
    return labels, reference


def test_two_cubes_known_distances() -> None:
    labels, reference = _two_cubes()
    row = measure_regions(labels, voxel_size=VOXEL, references={"b": reference}).iloc[0]
    # Gap between the boxes: 4 sections of 50 nm along z, 14 columns of 10 nm along x.
    assert row["dist_surface_to_b_um"] == pytest.approx(math.hypot(200.0, 140.0) / 1000)
    # A's centroid (3.5, 3.5, 3.5) voxels = (175, 35, 35) nm; B's faces at z = 475 nm
    # and x = 195 nm, and y = 35 nm lies within B's y extent.
    assert row["dist_centroid_to_b_um"] == pytest.approx(math.hypot(300.0, 160.0) / 1000)
    assert object_to_mask_distances(labels, reference, voxel_size=VOXEL) == {
        1: pytest.approx(math.hypot(200.0, 140.0))
    }


@pytest.mark.parametrize(
    ("b_slices", "expected_nm"),
    [
        ((slice(6, 8), slice(2, 6), slice(2, 6)), 0.0),  # face contact along z
        ((slice(6, 8), slice(6, 8), slice(6, 8)), 0.0),  # corner contact
        ((slice(4, 8), slice(3, 5), slice(3, 5)), 0.0),  # overlap
        ((slice(7, 9), slice(2, 6), slice(2, 6)), 50.0),  # one empty section between
        ((slice(2, 6), slice(2, 6), slice(9, 12)), 30.0),  # three empty columns along x
    ],
)
def test_touching_overlapping_and_near_cubes(b_slices, expected_nm) -> None:
    labels = np.zeros((12, 10, 14), np.uint8)
    labels[2:6, 2:6, 2:6] = 3
    reference = np.zeros_like(labels, dtype=bool)
    reference[b_slices] = True
    row = measure_regions(labels, voxel_size=VOXEL, references={"ref": reference}).iloc[0]
    assert row["dist_surface_to_ref_um"] == pytest.approx(expected_nm / 1000, abs=1e-12)


def test_gap_map_matches_brute_force_box_distances() -> None:
    rng = np.random.default_rng(7)
    reference = rng.random((6, 7, 8)) < 0.04
    reference[0, 0, 0] = True
    spacing = np.asarray((45.0, 7.0, 11.0))
    gap = gap_distance_map(reference, voxel_size=tuple(spacing))
    ref_idx = np.argwhere(reference)
    for index in itertools.product(*(range(n) for n in reference.shape)):
        d = np.maximum(np.abs(ref_idx - np.asarray(index)) - 1, 0) * spacing
        assert gap[index] == pytest.approx(np.sqrt((d**2).sum(axis=1)).min(), abs=1e-3)


def test_point_distances_match_brute_force() -> None:
    rng = np.random.default_rng(11)
    reference = np.zeros((8, 12, 12), bool)
    reference[3:5, 4:9, 2:6] = True
    reference[6, 10, 10] = True
    spacing = np.asarray((40.0, 9.0, 7.0))
    points = rng.uniform(0, 1, (200, 3)) * (np.asarray(reference.shape) - 1) * spacing
    got = point_to_mask_distances(points, reference, voxel_size=tuple(spacing))
    centres = np.argwhere(reference) * spacing
    for point, value in zip(points, got, strict=True):
        offsets = np.maximum(np.abs(centres - point) - spacing / 2, 0)
        assert value == pytest.approx(np.sqrt((offsets**2).sum(axis=1)).min(), abs=1e-6)


def test_distance_to_plasma_membrane_via_complement() -> None:
    # A 1-voxel mitochondrion inside a cell; "outside" = the cell's complement.
    cell = np.zeros((10, 30, 30), bool)
    cell[1:9, 1:29, 1:29] = True
    labels = np.zeros(cell.shape, np.uint8)
    labels[4:6, 14:16, 5:7] = 1
    row = measure_regions(labels, voxel_size=VOXEL, references={"outside": ~cell}).iloc[0]
    # Nearest membrane: x side, columns 1-4 free between the mito (x 5-6) and x = 0.
    assert row["dist_surface_to_outside_um"] == pytest.approx(0.04)
    # Centroid x = 5.5 voxels = 55 nm; the outside box at x = 0 ends at 5 nm.
    assert row["dist_centroid_to_outside_um"] == pytest.approx(0.05)


def test_empty_reference_and_centroid_inside() -> None:
    labels = np.zeros((6, 6, 6), np.uint8)
    labels[1:4, 1:4, 1:4] = 2
    reference = np.zeros(labels.shape, bool)
    row = measure_regions(labels, voxel_size=10, references={"none": reference}).iloc[0]
    assert math.isnan(row["dist_surface_to_none_um"])
    assert math.isnan(row["dist_centroid_to_none_um"])
    assert math.isnan(object_to_mask_distances(labels, reference, voxel_size=10)[2])
    reference[:, :, :] = True
    row = measure_regions(labels, voxel_size=10, references={"all": reference}).iloc[0]
    assert row["dist_surface_to_all_um"] == 0.0
    assert row["dist_centroid_to_all_um"] == 0.0


def test_object_distances_agree_with_dense_map_on_random_scene() -> None:
    rng = np.random.default_rng(5)
    labels = np.zeros((20, 40, 40), np.uint16)
    for label in range(1, 15):
        z, y, x = rng.integers(0, [17, 36, 36])
        labels[z : z + 3, y : y + 4, x : x + 4] = label
    reference = np.zeros(labels.shape, bool)
    reference[8:12, 15:25, 15:25] = True
    labels[reference] = 0
    table = measure_regions(labels, voxel_size=(30, 8, 8), references={"n": reference})
    gap = gap_distance_map(reference, voxel_size=(30, 8, 8))
    for row in table.itertuples():
        expected = gap[labels == row.label].min() / 1000
        assert row.dist_surface_to_n_um == pytest.approx(expected, abs=1e-9)


def test_shape_mismatch_raises() -> None:
    with pytest.raises(InvalidVolumeError, match="same shape"):
        object_to_mask_distances(np.zeros((2, 2, 2), np.uint8), np.zeros((2, 2, 3)), voxel_size=1)
    with pytest.raises(InvalidVolumeError, match="3-D"):
        gap_distance_map(np.zeros((2, 2)), voxel_size=1)
