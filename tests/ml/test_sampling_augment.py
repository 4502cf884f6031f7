import functools

import numpy as np
import pytest
import torch

from vemkit.errors import ConfigError, InvalidVolumeError
from vemkit.ml.augment import (
    Augmenter,
    adjust_contrast,
    adjust_gamma,
    elastic_displacement,
    misalign_sections,
    missing_section,
    random_flip,
    random_rot90,
    rotation_coordinates,
    warp,
)
from vemkit.ml.normalize import Normalization, fit_normalization, normalize
from vemkit.ml.sampling import PatchDataset, PatchSampler
from vemkit.ml.sparse import sparse_plane_mask
from vemkit.ml.targets import binary_target, foreground_boundary_target

torch.set_num_threads(1)


def volume(shape=(12, 40, 40), seed=0):
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, dtype=np.uint16)
    labels[2:6, 5:12, 5:12] = 1
    labels[7:10, 20:30, 22:35] = 2
    image = labels.astype(np.float32) * 10 + rng.normal(0, 1, shape).astype(np.float32)
    return image, labels


def test_planar_patches_come_only_from_annotated_planes():
    _, labels = volume()
    image = np.broadcast_to(np.arange(12.0)[:, None, None], labels.shape)  # value = z
    valid = sparse_plane_mask(labels.shape, every_n=4, offset=1)
    sampler = PatchSampler(image, labels, patch_shape=(16, 24), valid=valid, foreground_fraction=0)
    assert sampler.is_planar
    rng = np.random.default_rng(0)
    planes = set()
    for _ in range(30):
        patch = sampler.sample(rng)
        assert patch.image.shape == (1, 16, 24)
        assert patch.image.dtype == np.float32
        assert patch.labels.shape == patch.valid.shape == (16, 24)
        assert patch.valid.all()  # fully painted planes, patch inside the volume
        planes.add(float(patch.image[0, 0, 0]))
    assert planes == {1.0, 5.0, 9.0}


def test_foreground_balancing_and_padding():
    image, labels = volume((4, 10, 10))
    labels[:] = 0
    labels[2, 8, 8] = 3
    sampler = PatchSampler(image, labels, patch_shape=(6, 16, 16), foreground_fraction=1.0)
    rng = np.random.default_rng(1)
    for _ in range(10):
        patch = sampler.sample(rng)
        assert patch.image.shape == (1, 6, 16, 16)
        assert (patch.labels == 3).sum() == 1  # always centred on the only foreground voxel
        assert patch.valid.sum() == labels.size  # padding beyond the volume is not valid


def test_planes_along_other_axes_and_channels():
    image, labels = volume((8, 20, 30))
    two_channel = np.stack([image, -image])
    sampler = PatchSampler(two_channel, labels, patch_shape=(8, 16), axis=1)
    patch = sampler.sample(np.random.default_rng(0))
    assert patch.image.shape == (2, 8, 16)
    np.testing.assert_array_equal(patch.image[0], -patch.image[1])
    with pytest.raises(InvalidVolumeError, match="no annotated voxels"):
        PatchSampler(image, np.zeros_like(labels), patch_shape=(8, 8), ignore_value=0)
    with pytest.raises(InvalidVolumeError, match="does not match"):
        PatchSampler(image[:, :5], labels, patch_shape=(8, 8))


def test_patch_dataset_is_reproducible_per_epoch():
    image, labels = volume()
    sampler = PatchSampler(image, labels, patch_shape=(16, 16), foreground_fraction=0.5)
    norm = fit_normalization(image)
    dataset = PatchDataset(
        sampler,
        samples_per_epoch=4,
        seed=7,
        normalization=norm,
        augment=Augmenter(voxel_size=(10.0, 10.0)),
        target_fn=binary_target,
    )
    a = dataset[2]
    b = dataset[2]
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)
    assert a[0].shape == (1, 16, 16)
    assert a[1].shape == (1, 16, 16)
    assert a[2].dtype == torch.bool
    dataset.set_epoch(1)
    assert not torch.equal(dataset[2][0], a[0])
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=4)))
    assert batch[0].shape == (4, 1, 16, 16)
    with pytest.raises(ConfigError, match="fitted"):
        PatchDataset(sampler, samples_per_epoch=2, normalization=Normalization())


def test_halo_patch_is_the_patch_with_its_surroundings():
    image, labels = volume(shape=(12, 40, 40))
    sampler = PatchSampler(image, labels, patch_shape=(4, 16, 16), foreground_fraction=0.5)
    plain = sampler.sample(np.random.default_rng(3))
    wide = sampler.sample(np.random.default_rng(3), halo=(1, 2, 2))
    assert wide.image.shape == (1, 6, 20, 20)
    assert wide.labels.shape == wide.valid.shape == (6, 20, 20)
    np.testing.assert_array_equal(wide.image[:, 1:-1, 2:-2, 2:-2], plain.image)
    np.testing.assert_array_equal(wide.labels[1:-1, 2:-2, 2:-2], plain.labels)
    with pytest.raises(ConfigError, match="halo"):
        sampler.sample(np.random.default_rng(3), halo=(1, 2))
    with pytest.raises(ConfigError, match="halo"):
        PatchDataset(sampler, samples_per_epoch=2, halo=(1, -1, 1))


def test_halo_makes_3d_boundary_targets_known_up_to_the_patch_edges():
    # 50 nm sections: a boundary needs the face neighbour along z, which a 4-section
    # patch lacks in its first and last section -- half of the patch out of the loss.
    image, labels = volume(shape=(12, 40, 40))
    sampler = PatchSampler(image, labels, patch_shape=(4, 16, 16), foreground_fraction=1.0)
    target_fn = functools.partial(
        foreground_boundary_target,
        width_nm=20.0,
        voxel_size=(50.0, 5.0, 5.0),
        border_unknown=True,
        per_channel=True,
    )
    plain = PatchDataset(sampler, samples_per_epoch=8, target_fn=target_fn)
    wide = PatchDataset(sampler, samples_per_epoch=8, target_fn=target_fn, halo=(1, 2, 2))
    edge_plain, edge_wide = [], []
    for index in range(8):
        image_a, target_a, valid_a = plain[index]
        image_b, target_b, valid_b = wide[index]
        assert image_b.shape == image_a.shape
        assert target_b.shape == target_a.shape
        torch.testing.assert_close(image_b, image_a)  # same patch, no augmentation
        assert not (valid_a & ~valid_b).any()  # the halo only adds knowledge
        # the boundary channel's first and last section
        edge_plain.append(valid_a[1, [0, -1]].float().mean().item())
        edge_wide.append(valid_b[1, [0, -1]].float().mean().item())
        both = valid_a & valid_b
        torch.testing.assert_close(target_a[both], target_b[both])
    assert np.mean(edge_plain) < 0.4
    assert np.mean(edge_wide) > 0.8  # unknown only where the halo leaves the volume


def test_normalization_fixed_matches_per_block():
    rng = np.random.default_rng(0)
    image = rng.gamma(2.0, 50.0, size=(6, 30, 30))
    norm = fit_normalization(image, lower_percentile=1, upper_percentile=99)
    whole = normalize(image, norm)
    np.testing.assert_array_equal(normalize(image[:, :10], norm), whole[:, :10])
    assert whole.dtype == np.float32
    assert np.percentile(whole, 1) == pytest.approx(0.0, abs=1e-5)
    assert np.percentile(whole, 99) == pytest.approx(1.0, abs=1e-5)
    ms = normalize(image, Normalization(mode="meanstd"))
    assert ms.mean() == pytest.approx(0.0, abs=1e-4)
    assert ms.std() == pytest.approx(1.0, abs=1e-4)
    assert Normalization.from_dict(norm.to_dict()) == norm
    assert normalize(np.full((3, 3), 5.0), Normalization()).tolist() == [[0.0] * 3] * 3
    with pytest.raises(InvalidVolumeError, match="NaN"):
        fit_normalization(np.array([1.0, np.nan]))


def labelled_sample(shape, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, size=shape).astype(np.uint8)
    labels = np.kron(labels, np.ones((1,) * (len(shape) - 2) + (4, 4), dtype=np.uint8))
    valid = rng.random(labels.shape) > 0.2
    image = labels.astype(np.float32)[None]
    return image, labels, valid


def test_flips_and_rot90_move_image_and_labels_together():
    image, labels, valid = labelled_sample((3, 4, 4))
    rng = np.random.default_rng(0)
    for _ in range(8):
        im, lab, val = random_flip(image, labels, valid, rng=rng)
        im, lab, val = random_rot90(im, lab, val, rng=rng)
        np.testing.assert_array_equal(im[0], lab)
        assert val.sum() == valid.sum()


def test_rotation_respects_anisotropy():
    shape = (9, 9)
    coords = rotation_coordinates(shape, angle_deg=90.0, voxel_size=(10.0, 20.0))
    centre = 4
    # the output voxel 2 rows (20 nm along y) from the centre samples the input 1 column
    # (20 nm along x) from the centre
    source = coords[:, centre + 2, centre]
    assert abs(source[0] - centre) < 1e-9
    assert abs(abs(source[1] - centre) - 1.0) < 1e-9
    coords3 = rotation_coordinates(
        (5, 7, 7),
        angle_deg=30.0,
        tilt_deg=20.0,
        tilt_direction_deg=45.0,
        voxel_size=(40.0, 8.0, 8.0),
    )
    # physical distances between points are preserved
    spacing = np.array([40.0, 8.0, 8.0])[:, None]
    out = np.indices((5, 7, 7)).reshape(3, -1) * spacing
    src = coords3.reshape(3, -1) * spacing
    d_out = np.linalg.norm(out[:, 0] - out[:, -1])
    d_src = np.linalg.norm(src[:, 0] - src[:, -1])
    assert d_src == pytest.approx(d_out)


def test_warp_keeps_labels_nearest_and_marks_outside_invalid():
    image, labels, valid = labelled_sample((2, 3, 3))
    rng = np.random.default_rng(3)
    coords = rotation_coordinates(labels.shape, angle_deg=33.0, voxel_size=(50.0, 5.0, 5.0))
    coords = coords + elastic_displacement(
        labels.shape, rng=rng, displacement_nm=10.0, spacing_nm=40.0, voxel_size=(50.0, 5.0, 5.0)
    )
    im, lab, val = warp(image, labels, valid, coords)
    assert im.shape == image.shape
    assert set(np.unique(lab)) <= set(np.unique(labels))
    assert not val.all()  # corners come from outside the patch
    # every (label, valid) pair exists in the input, or is (0, False) from outside
    pairs_in = set(zip(labels.ravel().tolist(), valid.ravel().tolist(), strict=True))
    pairs_out = set(zip(lab.ravel().tolist(), val.ravel().tolist(), strict=True))
    assert pairs_out <= pairs_in | {(0, False)}
    identity = np.indices(labels.shape, dtype=np.float64)
    same = warp(image, labels, valid, identity)
    np.testing.assert_array_equal(same[1], labels)
    np.testing.assert_array_equal(same[2], valid)
    np.testing.assert_allclose(same[0], image)


def test_serial_section_defects():
    image, labels, valid = labelled_sample((6, 4, 4))
    rng = np.random.default_rng(0)
    blank = missing_section(image, rng=rng, mode="blank")
    changed = [z for z in range(6) if not np.array_equal(blank[0, z], image[0, z])]
    assert len(changed) == 1
    duplicate = missing_section(image, rng=rng, mode="duplicate")
    changed = [z for z in range(6) if not np.array_equal(duplicate[0, z], image[0, z])]
    assert len(changed) <= 1
    for mode in ("shift", "slip"):
        im, lab, val = misalign_sections(
            image, labels, valid, rng=rng, max_shift_vox=(3, 3), mode=mode
        )
        # image and labels move together; uncovered areas are not valid
        np.testing.assert_array_equal(im[0][val], lab[val].astype(np.float32))
        assert val.sum() <= valid.sum()


def test_intensity_transforms():
    rng = np.random.default_rng(0)
    image = rng.random((1, 8, 8)).astype(np.float32)
    out = adjust_gamma(image, rng=rng, gamma_range=(2.0, 2.0))
    assert out.min() == pytest.approx(image.min())
    assert out.max() == pytest.approx(image.max())
    out = adjust_contrast(image, rng=rng, contrast_range=(2.0, 2.0), brightness_range=(0, 0))
    assert out.std() == pytest.approx(2 * image.std(), rel=1e-4)


@pytest.mark.parametrize("spatial", [(6, 16, 16), (16, 16)])
def test_augmenter_everything_on_is_deterministic(spatial):
    image, labels, valid = labelled_sample((spatial[0], 4, 4) if len(spatial) == 3 else (4, 4))
    voxel_size = (50.0, 5.0, 5.0) if len(spatial) == 3 else (5.0, 5.0)
    augmenter = Augmenter(
        voxel_size=voxel_size,
        rotation_p=1.0,
        max_tilt_deg=10.0,
        elastic_p=1.0,
        contrast_p=1.0,
        gamma_p=1.0,
        noise_p=1.0,
        blur_p=1.0,
        missing_section_p=1.0,
        misalignment_p=1.0,
    )
    a = augmenter(image, labels, valid, rng=np.random.default_rng(5))
    b = augmenter(image, labels, valid, rng=np.random.default_rng(5))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert a[0].shape == image.shape
    assert a[0].dtype == np.float32
    assert a[1].shape == labels.shape
    assert set(np.unique(a[1])) <= set(np.unique(labels))
    with pytest.raises(InvalidVolumeError, match="voxel_size"):
        Augmenter(voxel_size=(5.0, 5.0))(image[:, :2], labels[:2], valid[:2], rng=None) if len(
            spatial
        ) == 3 else Augmenter(voxel_size=(1.0, 5.0, 5.0))(image, labels, valid, rng=None)
    with pytest.raises(ConfigError):
        Augmenter(voxel_size=(5.0, 5.0), noise_p=2.0)
