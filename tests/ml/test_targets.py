import numpy as np
import pytest
from skimage.segmentation import find_boundaries

from vemkit.errors import InvalidVolumeError, VoxelSizeError
from vemkit.geometry import VoxelSize
from vemkit.ml.targets import (
    binary_target,
    boundary_target,
    foreground_boundary_target,
    semantic_target,
    signed_distance_target,
)


def brute_force_distance(labels, spacing, clip):
    """Distance from each voxel to the nearest voxel with another label, clipped."""
    points = np.indices(labels.shape).reshape(labels.ndim, -1).T * np.asarray(spacing)
    flat = labels.reshape(-1)
    out = np.full(flat.shape, float(clip))
    for i, (p, lab) in enumerate(zip(points, flat, strict=True)):
        other = points[flat != lab]
        if len(other):
            out[i] = min(clip, np.sqrt(((other - p) ** 2).sum(axis=1)).min())
    return out.reshape(labels.shape)


def random_instances(shape, seed):
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, dtype=np.uint16)
    for value in range(1, 4):
        lo = [rng.integers(0, s - 1) for s in shape]
        hi = [min(s, lo_ + rng.integers(2, 5)) for lo_, s in zip(lo, shape, strict=True)]
        labels[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = value
    return labels


def test_signed_distance_single_voxel_by_hand_anisotropic():
    labels = np.zeros((3, 3, 3), dtype=np.uint8)
    labels[1, 1, 1] = 1
    t = signed_distance_target(labels, clip_nm=100.0, voxel_size=VoxelSize(50, 10, 10))
    d = t.target[0]
    assert t.target.shape == (1, 3, 3, 3)
    assert t.target.dtype == np.float32
    assert t.valid.all()
    assert d[1, 1, 1] == pytest.approx(10.0)
    assert d[0, 1, 1] == pytest.approx(-50.0)
    assert d[1, 0, 0] == pytest.approx(-np.sqrt(200.0))
    assert d[0, 0, 0] == pytest.approx(-np.sqrt(2500.0 + 200.0))


def test_touching_instances_have_a_border_and_clip():
    row = np.array([[0, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 0]])
    d = signed_distance_target(row, clip_nm=25.0, voxel_size=(1.0, 10.0)).target[0, 0]
    np.testing.assert_allclose(d, [-10, 10, 20, 20, 10, 10, 20, 25, 25, 25, 20, 10, -10], rtol=1e-6)
    mask = row > 0  # a mask cannot separate touching objects
    d_mask = signed_distance_target(mask, clip_nm=25.0, voxel_size=(1.0, 10.0)).target[0, 0]
    assert d_mask[4] == pytest.approx(25.0)
    normalized = signed_distance_target(row, clip_nm=25.0, voxel_size=(1.0, 10.0), normalize=True)
    np.testing.assert_allclose(normalized.target[0, 0], d / 25.0, rtol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_signed_distance_matches_brute_force(seed):
    labels = random_instances((5, 7, 8), seed)
    spacing = (30.0, 8.0, 10.0)
    t = signed_distance_target(labels, clip_nm=40.0, voxel_size=spacing)
    expected = brute_force_distance(labels, spacing, 40.0)
    expected = np.where(labels > 0, expected, -expected)
    np.testing.assert_allclose(t.target[0], expected, rtol=1e-5, atol=1e-4)
    assert t.valid.all()


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_signed_distance_valid_values_do_not_depend_on_unknown_labels(seed):
    rng = np.random.default_rng(seed)
    labels = random_instances((4, 9, 9), seed)
    unknown = np.zeros(labels.shape, dtype=bool)
    unknown[:, :, 6:] = True
    unknown[1] = True
    t = signed_distance_target(labels, clip_nm=25.0, voxel_size=(20.0, 10.0, 10.0), valid=~unknown)
    assert not t.valid[unknown].any()
    assert t.valid.any()
    for _ in range(5):
        filled = labels.copy()
        filled[unknown] = rng.integers(0, 5, size=int(unknown.sum()))
        full = signed_distance_target(filled, clip_nm=25.0, voxel_size=(20.0, 10.0, 10.0))
        np.testing.assert_allclose(full.target[0][t.valid], t.target[0][t.valid], rtol=1e-6)
    assert (t.target[0][~t.valid] == 0).all()


def test_ignore_value_and_border_unknown():
    row = np.array([[1, 1, 1, 1, 0, 0, 255, 255, 0]], dtype=np.uint8)
    t = signed_distance_target(row, clip_nm=20.0, voxel_size=(1.0, 10.0), ignore_value=255)
    # the 255 voxels are unknown; voxel 5 might be next to an object there
    assert t.valid.tolist() == [[True, True, True, True, True, False, False, False, False]]
    tb = signed_distance_target(
        row, clip_nm=20.0, voxel_size=(1000.0, 10.0), ignore_value=255, border_unknown=True
    )
    # the object may continue beyond the array edge: voxel 0 may be deeper inside, but
    # voxel 1 is at least 20 nm (the clip) from any border either way
    assert tb.valid.tolist() == [[False, True, True, True, True, False, False, False, False]]
    assert tb.target[0, 0, 1] == pytest.approx(20.0)


def test_boundary_equals_thick_find_boundaries_for_thin_width():
    labels = np.zeros((12, 12), dtype=np.uint8)
    labels[2:7, 2:6] = 1
    labels[2:7, 6:10] = 2  # touching
    labels[8:11, 3:5] = 3
    t = boundary_target(labels, width_nm=1.0, voxel_size=(5.0, 5.0))
    expected = find_boundaries(labels, mode="thick", connectivity=1)
    np.testing.assert_array_equal(t.target[0].astype(bool), expected)
    assert t.valid.all()
    # the border between touching objects is marked on both sides
    assert t.target[0, 4, 5] == 1
    assert t.target[0, 4, 6] == 1


def test_boundary_width_in_nm_anisotropic_brute_force():
    labels = random_instances((5, 8, 8), 4)
    spacing = (50.0, 10.0, 10.0)
    t = boundary_target(labels, width_nm=45.0, voxel_size=VoxelSize(*spacing))
    within = brute_force_distance(labels, spacing, 1e9) <= 22.5
    expected = within | find_boundaries(labels, mode="thick", connectivity=1)
    np.testing.assert_array_equal(t.target[0].astype(bool), expected)
    # two voxels deep in yx, one in z (50 nm > 22.5 nm but a face neighbour)
    assert within.sum() < expected.sum()


@pytest.mark.parametrize("seed", [0, 1])
def test_boundary_valid_values_do_not_depend_on_unknown_labels(seed):
    rng = np.random.default_rng(seed)
    labels = random_instances((10, 10), seed)
    unknown = rng.random(labels.shape) < 0.15
    t = foreground_boundary_target(labels, width_nm=25.0, voxel_size=10.0, valid=~unknown)
    assert t.target.shape == (2, 10, 10)
    assert not t.valid[unknown].any()
    split = foreground_boundary_target(
        labels, width_nm=25.0, voxel_size=10.0, valid=~unknown, per_channel=True
    )
    assert split.valid.shape == (2, 10, 10)
    np.testing.assert_array_equal(split.valid[0], ~unknown)
    np.testing.assert_array_equal(split.valid[1], t.valid)
    for _ in range(5):
        filled = labels.copy()
        filled[unknown] = rng.integers(0, 5, size=int(unknown.sum()))
        full = foreground_boundary_target(filled, width_nm=25.0, voxel_size=10.0)
        np.testing.assert_array_equal(full.target[:, t.valid], t.target[:, t.valid])
        for channel in range(2):
            known = split.valid[channel]
            np.testing.assert_array_equal(full.target[channel, known], split.target[channel, known])


def test_foreground_is_known_wherever_the_label_is():
    # Every third 50 nm section painted: whether an object goes on into the unpainted
    # section next to it is unknown, so its boundary is -- but not its foreground.
    rng = np.random.default_rng(0)
    labels = np.zeros((9, 24, 24), np.uint16)
    zz, yy, xx = np.indices(labels.shape)
    for index in range(1, 6):
        cz, cy, cx = rng.integers(0, 9), rng.integers(0, 24), rng.integers(0, 24)
        blob = (yy - cy) ** 2 + (xx - cx) ** 2 + (4 * (zz - cz)) ** 2 < 30
        labels[blob & (labels == 0)] = index
    painted = np.zeros(labels.shape, bool)
    painted[::3] = True
    t = foreground_boundary_target(
        labels, width_nm=20.0, voxel_size=(50.0, 10.0, 10.0), valid=painted, per_channel=True
    )
    np.testing.assert_array_equal(t.valid[0], painted)
    np.testing.assert_array_equal(t.target[0], (labels > 0) & painted)
    assert t.valid[1].sum() < 0.2 * painted.sum()  # most painted boundaries are unsure
    assert not (t.valid[1] & ~painted).any()
    one = foreground_boundary_target(
        labels, width_nm=20.0, voxel_size=(50.0, 10.0, 10.0), valid=painted
    )
    np.testing.assert_array_equal(one.valid, t.valid[1])  # one mask: the foreground's is lost


def test_foreground_boundary_channels():
    labels = np.zeros((6, 6), dtype=np.uint32)
    labels[1:5, 1:5] = 7
    t = foreground_boundary_target(labels, width_nm=1.0, voxel_size=VoxelSize(40, 5, 5))
    np.testing.assert_array_equal(t.target[0], labels > 0)
    assert t.target[1, 1, 1] == 1
    assert t.target[1, 2, 2] == 0
    assert t.target[1, 0, 1] == 1  # outside side of the border


def test_semantic_and_binary_targets():
    labels = np.array([[0, 3, 5], [255, 3, 0]], dtype=np.uint8)
    t = semantic_target(labels, classes={0: 0, 3: 1, 5: 2}, ignore_value=255)
    assert t.target.dtype == np.int64
    assert t.target.tolist() == [[0, 1, 2], [0, 1, 0]]
    assert t.valid.tolist() == [[True, True, True], [False, True, True]]
    seq = semantic_target(labels, classes=[0, 3, 5], ignore_value=255)
    np.testing.assert_array_equal(seq.target, t.target)
    with pytest.raises(InvalidVolumeError, match=r"\[5\]"):
        semantic_target(labels, classes=[0, 3], ignore_value=255)
    b = binary_target(labels, ignore_value=255)
    assert b.target.tolist() == [[[0, 1, 1], [0, 1, 0]]]
    assert b.valid.tolist() == t.valid.tolist()


def test_input_checks():
    with pytest.raises(InvalidVolumeError, match="integers"):
        binary_target(np.zeros((3, 3), dtype=np.float32))
    with pytest.raises(VoxelSizeError):
        signed_distance_target(np.zeros((3, 3, 3), dtype=int), clip_nm=5, voxel_size=(1, 1))
    with pytest.raises(InvalidVolumeError, match="valid mask shape"):
        binary_target(np.zeros((3, 3), dtype=int), valid=np.ones((2, 2), dtype=bool))
