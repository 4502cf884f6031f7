"""Clark–Evans and Ripley's K/L on regular, clustered and random 3-D point patterns."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate

from vemkit.errors import ConfigError, InvalidVolumeError
from vemkit.measure import clark_evans_expectation, spatial_distribution

# A 10 µm cube sampled with 200 nm voxels: voxel i covers [(i - 0.5) 0.2, (i + 0.5) 0.2].
MASK = np.ones((50, 50, 50), bool)
VOXEL_NM = 200.0
LOW, HIGH = -0.1, 9.9


def test_clark_evans_expectation_matches_integral() -> None:
    intensity = 0.37
    survival = lambda r: math.exp(-intensity * 4 / 3 * math.pi * r**3)  # noqa: E731
    second = lambda r: 2 * r * survival(r)  # noqa: E731
    mean = integrate.quad(survival, 0, np.inf)[0]
    std = math.sqrt(integrate.quad(second, 0, np.inf)[0] - mean**2)
    assert clark_evans_expectation(intensity) == pytest.approx((mean, std), rel=1e-6)


def test_regular_lattice_is_regular() -> None:
    axis = 0.525 + 1.25 * np.arange(8)  # fills the cube: 512 points, 1.25 µm pitch
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    result = spatial_distribution(grid, mask=MASK, voxel_size=VOXEL_NM, n_simulations=49)
    assert result["verdict"] == "regular"
    assert result["clark_evans"]["mean_nn_um"] == pytest.approx(1.25)
    assert result["clark_evans"]["R"] == pytest.approx(1.25 / 0.69245, rel=1e-3)
    assert result["clark_evans"]["p_value"] == pytest.approx(1 / 50)
    assert result["clark_evans"]["p_value_method"] == "monte_carlo"
    assert result["edge_correction"] == "hanisch/border"
    # Without a mask: same verdict from the normal approximation, no edge correction.
    by_volume = spatial_distribution(grid, region_volume_um3=1000.0)
    # lambda = 0.512 per µm³ -> E[NN] = 0.55396 / 0.8 = 0.69245 µm.
    assert by_volume["verdict"] == "regular"
    assert by_volume["edge_correction"] == "none"
    assert by_volume["clark_evans"]["p_value_method"] == "normal"
    assert by_volume["clark_evans"]["R"] == pytest.approx(1.25 / 0.69245, rel=1e-3)


def test_tight_cluster_is_clustered() -> None:
    rng = np.random.default_rng(2)
    cluster = np.clip(rng.normal(5.0, 0.3, size=(150, 3)), LOW, HIGH)
    result = spatial_distribution(cluster, mask=MASK, voxel_size=VOXEL_NM, n_simulations=49)
    assert result["verdict"] == "clustered"
    assert result["clark_evans"]["R"] < 0.3
    ripley = result["ripley"]
    assert all(
        value > high
        for value, high in zip(
            ripley["L_minus_r_um"][:3], ripley["L_minus_r_high_um"][:3], strict=True
        )
    )


def test_uniform_random_points_are_random() -> None:
    rng = np.random.default_rng(0)
    points = rng.uniform(LOW, HIGH, size=(300, 3))
    result = spatial_distribution(points, mask=MASK, voxel_size=VOXEL_NM, n_simulations=99, seed=1)
    assert result["verdict"] == "random"
    assert result["clark_evans"]["R"] == pytest.approx(1.0, abs=0.08)
    assert result["clark_evans"]["p_value"] > 0.05
    ripley = result["ripley"]
    assert len(ripley["radii_um"]) == 6
    inside = [
        low <= value <= high
        for value, low, high in zip(
            ripley["L_minus_r_um"],
            ripley["L_minus_r_low_um"],
            ripley["L_minus_r_high_um"],
            strict=True,
        )
    ]
    assert sum(inside) >= 5
    np.testing.assert_allclose(
        ripley["K_poisson_um3"], 4 / 3 * np.pi * np.asarray(ripley["radii_um"]) ** 3
    )
    # Reproducible with the same seed.
    again = spatial_distribution(points, mask=MASK, voxel_size=VOXEL_NM, n_simulations=99, seed=1)
    assert again["clark_evans"]["p_value"] == result["clark_evans"]["p_value"]


def test_custom_radii_and_normal_fallback() -> None:
    rng = np.random.default_rng(4)
    points = rng.uniform(LOW, HIGH, size=(100, 3))
    result = spatial_distribution(
        points, mask=MASK, voxel_size=VOXEL_NM, radii_um=[0.5, 20.0], n_simulations=0
    )
    assert result["ripley"]["radii_um"] == [0.5, 20.0]
    assert math.isnan(result["ripley"]["K_um3"][1])  # no centre is 20 µm from the border
    assert result["ripley"]["n_used"][1] == 0
    assert result["clark_evans"]["p_value_method"] == "normal"
    assert "L_minus_r_low_um" not in result["ripley"]


def test_bad_input() -> None:
    points = np.zeros((5, 3))
    with pytest.raises(ConfigError, match="exactly one"):
        spatial_distribution(points)
    with pytest.raises(ConfigError, match="exactly one"):
        spatial_distribution(points, region_volume_um3=1.0, mask=MASK, voxel_size=1)
    with pytest.raises(ConfigError, match="voxel_size"):
        spatial_distribution(points, mask=MASK)
    with pytest.raises(ConfigError, match="region_volume_um3"):
        spatial_distribution(points, region_volume_um3=-1.0)
    with pytest.raises(InvalidVolumeError, match="at least 2"):
        spatial_distribution(points[:1], region_volume_um3=1.0)
    with pytest.raises(InvalidVolumeError, match="empty"):
        spatial_distribution(points, mask=np.zeros((3, 3, 3)), voxel_size=1)
    with pytest.raises(ConfigError, match="radii_um"):
        spatial_distribution(points + np.arange(5)[:, None], region_volume_um3=1.0, radii_um=[0])
