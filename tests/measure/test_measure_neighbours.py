"""k-nearest-neighbour distances and kernel density of centroids."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vemkit.errors import ConfigError, InvalidVolumeError
from vemkit.measure import kernel_density, knn_distances, knn_mean_distances


def _lattice(n: int, pitch: float = 1.0) -> np.ndarray:
    axis = np.arange(n) * pitch
    return np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)


def test_knn_on_cubic_lattice() -> None:
    points = _lattice(5, pitch=0.4)
    distances = knn_distances(points, k=8)
    centre = 62  # (2, 2, 2)
    np.testing.assert_allclose(points[centre], [0.8, 0.8, 0.8])
    # 6 face neighbours at the pitch, then edge neighbours at pitch * sqrt 2.
    np.testing.assert_allclose(distances[centre], [0.4] * 6 + [0.4 * math.sqrt(2)] * 2)
    corner = 0
    np.testing.assert_allclose(
        distances[corner], [0.4] * 3 + [0.4 * math.sqrt(2)] * 3 + [0.4 * math.sqrt(3), 0.8]
    )
    means = knn_mean_distances(points, k=8)
    assert means[centre] == pytest.approx((6 * 0.4 + 2 * 0.4 * math.sqrt(2)) / 8)


def test_knn_with_too_few_points() -> None:
    points = np.array([[0.0, 0, 0], [0, 0, 2.0], [0, 1.0, 0]])
    distances = knn_distances(points, k=3)
    assert np.isnan(distances[:, 2]).all()
    np.testing.assert_allclose(distances[:, :2], [[1, 2], [2, math.sqrt(5)], [1, math.sqrt(5)]])
    assert np.isnan(knn_mean_distances(points, k=3)).all()
    assert knn_mean_distances(points, k=2)[0] == pytest.approx(1.5)
    assert np.isnan(knn_distances(points[:1], k=1)).all()


def test_kernel_density_hand_value_and_sklearn() -> None:
    h = 0.1
    points = np.array([[0.0, 0, 0], [0, 0, 0.1], [0, 0.3, 0]])
    norm = (2 * math.pi * h * h) ** -1.5
    expected_first = norm * (math.exp(-0.5) + math.exp(-0.5 * 9))
    density = kernel_density(points, bandwidth_um=h)
    assert density[0] == pytest.approx(expected_first)
    with_self = kernel_density(points, bandwidth_um=h, include_self=True)
    np.testing.assert_allclose(with_self - density, norm)
    sklearn = pytest.importorskip("sklearn.neighbors")
    rng = np.random.default_rng(0)
    cloud = rng.normal(size=(60, 3))
    kde = sklearn.KernelDensity(kernel="gaussian", bandwidth=0.7).fit(cloud)
    reference = len(cloud) * np.exp(kde.score_samples(cloud))
    np.testing.assert_allclose(
        kernel_density(cloud, bandwidth_um=0.7, include_self=True), reference, rtol=1e-6
    )


def test_kernel_density_estimates_lattice_intensity() -> None:
    # Unit-pitch lattice: 1 point per µm³. Summed over all lattice points (the point
    # itself included) Gaussians of h = pitch give the intensity; leave-one-out misses
    # the point's own kernel.
    points = _lattice(11)
    centre = len(points) // 2
    with_self = kernel_density(points, bandwidth_um=1.0, include_self=True)
    assert with_self[centre] == pytest.approx(1.0, rel=1e-3)
    density = kernel_density(points, bandwidth_um=1.0)
    assert density[centre] == pytest.approx(1.0 - (2 * math.pi) ** -1.5, rel=1e-3)


def test_bad_points_and_parameters() -> None:
    with pytest.raises(InvalidVolumeError, match="shape"):
        knn_distances(np.zeros((4, 4)), k=1)
    with pytest.raises(InvalidVolumeError, match="NaN"):
        knn_distances(np.array([[0.0, 0, np.nan], [1, 1, 1]]), k=1)
    with pytest.raises(ConfigError, match="k"):
        knn_distances(np.zeros((4, 3)), k=0)
    with pytest.raises(ConfigError, match="bandwidth_um"):
        kernel_density(np.zeros((4, 3)), bandwidth_um=0.0)
