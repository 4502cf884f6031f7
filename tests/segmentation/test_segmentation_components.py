"""Connected components, relabelling, size filter, hole filling, morphology in nm."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage as ndi

from vemkit.errors import ConfigError, InvalidVolumeError
from vemkit.geometry import VoxelSize
from vemkit.segmentation import (
    binary_closing_nm,
    binary_dilation_nm,
    binary_erosion_nm,
    binary_opening_nm,
    connected_components,
    ellipsoid_footprint,
    fill_holes,
    label_sizes,
    relabel_sequential,
    remove_small_objects,
)
from vemkit.segmentation import components as components_module


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two label images describe the same objects (up to renumbering)."""
    if not np.array_equal(a > 0, b > 0):
        return False
    pairs = np.unique(np.stack([a[a > 0], b[b > 0]]), axis=1)
    return len(np.unique(pairs[0])) == pairs.shape[1] == len(np.unique(pairs[1]))


@pytest.mark.parametrize(
    ("second", "expected"),
    [
        ((1, 1, 1), {6: 2, 18: 2, 26: 1}),  # corner contact
        ((0, 1, 1), {6: 2, 18: 1, 26: 1}),  # edge contact
        ((0, 0, 1), {6: 1, 18: 1, 26: 1}),  # face contact
    ],
)
def test_connectivity_on_diagonal_neighbours(
    second: tuple[int, int, int], expected: dict[int, int]
) -> None:
    mask = np.zeros((3, 3, 3), bool)
    mask[0, 0, 0] = True
    mask[second] = True
    for connectivity, n in expected.items():
        labels = connected_components(mask, connectivity=connectivity)
        assert labels.dtype == np.uint32
        assert labels.max() == n


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    density=st.floats(0.1, 0.7),
    connectivity=st.sampled_from([6, 18, 26]),
)
def test_connected_components_matches_scipy(seed: int, density: float, connectivity: int) -> None:
    mask = np.random.default_rng(seed).random((12, 13, 14)) < density
    ours = connected_components(mask, connectivity=connectivity)
    rank = {6: 1, 18: 2, 26: 3}[connectivity]
    theirs, n = ndi.label(mask, structure=ndi.generate_binary_structure(3, rank))
    assert int(ours.max()) == n
    assert _same_partition(ours, theirs)


def test_connected_components_of_labels_keeps_touching_labels_apart() -> None:
    labels = np.zeros((1, 1, 7), np.int32)
    labels[0, 0, :] = [4, 4, 9, 9, 0, 4, 4]
    out = connected_components(labels, connectivity=26)
    assert out[0, 0].tolist() == [1, 1, 2, 2, 0, 3, 3]


def test_connected_components_rejects_floats_and_bad_connectivity() -> None:
    with pytest.raises(InvalidVolumeError, match=r"mask_or_labels .*dtype float32"):
        connected_components(np.zeros((2, 2, 2), np.float32))
    with pytest.raises(ConfigError, match=r"connectivity must be 6.*got 8"):
        connected_components(np.zeros((2, 2, 2), bool), connectivity=8)  # type: ignore[arg-type]


def test_relabel_sequential() -> None:
    labels = np.array([[[0, 5, 5, 9, 2]]], dtype=np.uint64)
    out, n = relabel_sequential(labels)
    assert out.dtype == np.uint32
    assert n == 3
    assert out.tolist() == [[[0, 2, 2, 3, 1]]]
    assert labels.tolist() == [[[0, 5, 5, 9, 2]]]  # input untouched

    small, _ = relabel_sequential(labels, shrink_dtype=True)
    assert small.dtype == np.uint8

    buffer = np.array([[[7, 0, 3]]], dtype=np.uint32)
    out, n = relabel_sequential(buffer, in_place=True)
    assert out.tolist() == [[[2, 0, 1]]]
    assert n == 2

    already = np.array([[[1, 0, 2]]], dtype=np.uint32)
    out, _ = relabel_sequential(already)
    assert out.tolist() == already.tolist()
    assert not np.shares_memory(out, already)

    with pytest.raises(InvalidVolumeError, match="minimum -1"):
        relabel_sequential(np.array([[[0, -1]]]))


def test_remove_small_objects_uses_nm3_and_renumbers() -> None:
    vs = VoxelSize(50, 5, 5)  # 1250 nm³ per voxel
    labels = np.zeros((4, 8, 8), np.uint16)
    labels[0, :2, :2] = 3  # 4 voxels = 5000 nm³
    labels[2:, 4:, 4:] = 8  # 32 voxels = 40000 nm³
    out = remove_small_objects(labels, min_size_nm3=6000, voxel_size=vs)
    assert out.dtype == np.uint32
    assert label_sizes(out)[1].tolist() == [32]
    assert out[3, 7, 7] == 1
    same = remove_small_objects(labels, min_size_nm3=5000, voxel_size=vs)
    assert same.max() == 2
    with pytest.raises(InvalidVolumeError, match="connected_components"):
        remove_small_objects(labels > 0, min_size_nm3=1, voxel_size=vs)


def test_label_sizes() -> None:
    ids, sizes = label_sizes(np.array([[[0, 3, 3, 1, 0]]], np.int64))
    assert ids.tolist() == [1, 3]
    assert sizes.tolist() == [1, 2]


def _fill_object_by_object(labels: np.ndarray) -> np.ndarray:
    """Reference: scipy hole filling one object at a time, background voxels only."""
    out = labels.copy()
    for label_id in np.unique(labels[labels > 0]):
        filled = ndi.binary_fill_holes(labels == label_id)
        out[filled & (labels == 0)] = label_id
    return out


def test_fill_holes_matches_object_by_object_reference() -> None:
    rng = np.random.default_rng(1)
    blobs = ndi.gaussian_filter(rng.standard_normal((32, 32, 32)), 1.5) > 0.05
    labels = connected_components(blobs, connectivity=6)
    labels[(rng.random(labels.shape) < 0.05) & ndi.binary_erosion(labels > 0)] = 0
    expected = _fill_object_by_object(labels)
    assert (expected != labels).sum() > 0
    assert np.array_equal(fill_holes(labels), expected)


def test_fill_holes_nested_objects_and_masks() -> None:
    labels = np.zeros((20, 20, 20), np.uint32)
    labels[2:18, 2:18, 2:18] = 1
    labels[4:16, 4:16, 4:16] = 0
    labels[7:13, 7:13, 7:13] = 2
    labels[9:11, 9:11, 9:11] = 0
    out = fill_holes(labels)
    assert out.dtype == np.uint32
    assert (out == 2).sum() == 6**3  # the inner object fills its own hole
    assert (out == 1).sum() == 16**3 - 6**3  # the outer one fills around it
    mask_out = fill_holes(labels > 0)
    assert mask_out.dtype == bool
    assert mask_out[2:18, 2:18, 2:18].all()


def test_fill_holes_per_slice_closes_tubes_open_in_z() -> None:
    tube = np.zeros((6, 9, 9), bool)
    tube[:, 2:7, 2:7] = True
    tube[:, 4, 4] = False  # a channel through the whole stack: no 3-D hole
    assert not fill_holes(tube)[:, 4, 4].any()
    assert fill_holes(tube, per_slice=True)[:, 4, 4].all()


def test_ellipsoid_footprint_is_anisotropic() -> None:
    footprint = ellipsoid_footprint(60.0, voxel_size=VoxelSize(50, 10, 10))
    assert footprint.shape == (3, 13, 13)
    assert footprint[1, 6, 0]
    assert footprint[1, 6, 12]
    assert footprint[0, 6, 6]
    assert not footprint[0, 6, 0]
    assert ellipsoid_footprint(40.0, voxel_size=VoxelSize(50, 10, 10)).shape == (1, 9, 9)


def test_closing_radius_in_nm_with_anisotropic_voxels() -> None:
    vs = VoxelSize(50, 10, 10)
    mask = np.zeros((7, 16, 16), bool)
    mask[1:3, 2:14, 2:14] = True
    mask[4:6, 2:14, 2:14] = True  # one empty 50 nm section at z = 3
    assert not binary_closing_nm(mask, radius_nm=40, voxel_size=vs)[3].any()
    closed = binary_closing_nm(mask, radius_nm=60, voxel_size=vs)
    assert closed[3, 5:11, 5:11].all()
    assert (closed | ~mask).all()  # closing never removes voxels


def test_opening_radius_in_nm_with_anisotropic_voxels() -> None:
    vs = VoxelSize(50, 10, 10)
    mask = np.zeros((5, 24, 24), bool)
    mask[2, 2:22, 2:12] = True  # a sheet one 50 nm section thick
    mask[:, 2:22, 16:18] = True  # a wall 20 nm thick in x
    opened = binary_opening_nm(mask, radius_nm=20, voxel_size=vs)
    assert opened[2, 4:20, 4:10].all()  # 20 nm ball is flat in z: the sheet stays
    assert not opened[:, :, 16:18].any()  # but cannot fit in the 20 nm wall
    assert not (opened & ~mask).any()


def test_objects_on_the_volume_border_are_not_eroded_from_outside() -> None:
    vs = VoxelSize(10, 10, 10)
    mask = np.zeros((8, 8, 8), bool)
    mask[:, :, :5] = True
    eroded = binary_erosion_nm(mask, radius_nm=10, voxel_size=vs)
    assert eroded[:, :, :4].all()
    assert not eroded[:, :, 4].any()
    assert binary_erosion_nm(np.ones((3, 3, 3), bool), radius_nm=50, voxel_size=vs).all()
    assert not binary_dilation_nm(np.zeros((3, 3, 3), bool), radius_nm=50, voxel_size=vs).any()


@pytest.mark.parametrize("radius_nm", [25.0, 45.0])
def test_distance_transform_path_matches_footprint_path(
    radius_nm: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    vs = VoxelSize(20, 10, 10)
    rng = np.random.default_rng(3)
    mask = ndi.gaussian_filter(rng.standard_normal((16, 24, 24)), 1.5) > 0.1
    results = {}
    for limit in (10**9, 0):
        monkeypatch.setattr(components_module, "_MAX_FOOTPRINT_FOR_NDIMAGE", limit)
        results[limit] = (
            binary_closing_nm(mask, radius_nm=radius_nm, voxel_size=vs),
            binary_opening_nm(mask, radius_nm=radius_nm, voxel_size=vs),
        )
    for a, b in zip(results[10**9], results[0], strict=True):
        assert np.array_equal(a, b)
