"""The ilastik-style random-forest pixel classifier (vemkit.ml.baselines)."""

from __future__ import annotations

import numpy as np
import pytest

from vemkit.errors import ConfigError, InvalidVolumeError
from vemkit.ml.baselines import RandomForestPixelClassifier


def _two_class_volume(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Bright noisy balls on a dark noisy background, and their exact mask."""
    rng = np.random.default_rng(seed)
    _, y, x = np.mgrid[:4, :48, :48]
    mask = ((y - 16) ** 2 + (x - 16) ** 2 < 64) | ((y - 34) ** 2 + (x - 32) ** 2 < 81)
    image = np.where(mask, 170.0, 80.0) + rng.normal(0, 25, mask.shape)
    return np.clip(image, 0, 255).astype(np.uint8), mask


def test_fits_sparse_labels_and_separates_two_classes() -> None:
    image, mask = _two_class_volume()
    rng = np.random.default_rng(1)
    labels = np.zeros(image.shape, np.uint8)  # 0 = unlabelled
    sparse = rng.random(image.shape) < 0.03
    labels[sparse & ~mask] = 1
    labels[sparse & mask] = 2
    rf = RandomForestPixelClassifier(
        voxel_size=(50, 5, 5), sigmas_nm=(5, 10, 20), n_estimators=20, max_samples_per_class=200
    )
    assert rf.planar
    assert rf.n_features == 3 * 4
    rf.fit(image, labels)
    assert list(rf.classes_) == [1, 2]
    proba = rf.predict_proba(image)
    assert proba.shape == (2, *image.shape)
    assert proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=0), 1.0, atol=1e-5)
    accuracy = np.mean((proba[1] > 0.5) == mask)
    assert accuracy > 0.95
    assert np.array_equal(rf.predict(image) == 2, proba[1] > proba[0])


def test_3d_features_on_isotropic_voxels() -> None:
    image, mask = _two_class_volume()
    labels = np.where(mask, 2, 1).astype(np.uint8)
    rf = RandomForestPixelClassifier(voxel_size=(5, 5, 5), sigmas_nm=(5, 10), n_estimators=5)
    assert not rf.planar
    assert rf.n_features == 2 * 5
    assert rf.halo_voxels[0] > 0
    proba = rf.fit(image, labels).predict_proba(image[:, :20, :20])
    assert proba.shape == (2, 4, 20, 20)


def test_errors_are_clear() -> None:
    image, _ = _two_class_volume()
    rf = RandomForestPixelClassifier(voxel_size=(50, 5, 5))
    with pytest.raises(ConfigError, match="not fitted"):
        rf.predict_proba(image)
    with pytest.raises(ConfigError, match="two classes"):
        rf.fit(image, np.ones(image.shape, np.uint8))
    with pytest.raises(InvalidVolumeError, match="shape"):
        rf.fit(image, np.ones((1, 2, 3), np.uint8))
    with pytest.raises(ConfigError, match="isotropic"):
        RandomForestPixelClassifier(voxel_size=(8, 5, 5), planar=False)
