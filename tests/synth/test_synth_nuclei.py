"""Nucleus scenes: determinism, envelope contrast, labels vs the drawn ellipsoids, bounds."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from vemkit.errors import ConfigError, InvalidVolumeError
from vemkit.geometry import Box, VoxelSize
from vemkit.synth import NucleiSceneConfig, make_nuclei_scene
from vemkit.synth.nuclei import (
    label_nuclei,
    plan_nuclei_scene,
    render_nuclei_scene,
    synthetic_background,
    tile_background,
)

COARSE = VoxelSize(100.0, 100.0, 100.0)
SHAPE = (48, 48, 48)


def _grid_points(shape: tuple[int, ...], voxel_size: VoxelSize) -> np.ndarray:
    index = np.indices(shape).reshape(3, -1).T
    return index * np.asarray(voxel_size.as_tuple())


@pytest.fixture(scope="module")
def background() -> np.ndarray:
    return synthetic_background(SHAPE, voxel_size=COARSE, seed=11)


def test_same_seed_same_scene(background: np.ndarray) -> None:
    a = make_nuclei_scene(background, voxel_size=COARSE, seed=5)
    b = make_nuclei_scene(background, voxel_size=COARSE, seed=5)
    c = make_nuclei_scene(background, voxel_size=COARSE, seed=6)
    np.testing.assert_array_equal(a.raw, b.raw)
    np.testing.assert_array_equal(a.nuclei, b.nuclei)
    assert a.raw.dtype == np.uint8
    assert a.nuclei.dtype == np.uint32
    assert a.raw.shape == a.nuclei.shape == SHAPE
    assert not np.array_equal(a.raw, c.raw)
    raw, nuclei = a  # unpacks as (raw, nuclei)
    assert raw is a.raw
    assert nuclei is a.nuclei


def test_small_background_is_tiled_to_shape() -> None:
    small = synthetic_background((6, 10, 10), voxel_size=COARSE, seed=1)
    scene = make_nuclei_scene(small, voxel_size=COARSE, seed=2, shape=(32, 40, 40))
    assert scene.raw.shape == (32, 40, 40)
    tiled = tile_background(small, (32, 40, 40), seed=3)
    assert tiled.shape == (32, 40, 40)
    assert abs(float(tiled.mean()) - float(small.mean())) < 0.5 * float(small.std())
    np.testing.assert_array_equal(tiled, tile_background(small, (32, 40, 40), seed=3))
    # Blending keeps the texture's contrast (no washed-out seams).
    assert 0.6 < tiled.std() / small.std() < 1.5


def test_at_least_one_nucleus_per_scene(background: np.ndarray) -> None:
    for seed in range(6):
        scene = make_nuclei_scene(background, voxel_size=COARSE, seed=seed)
        assert scene.nuclei.max() >= 1


def test_labels_match_the_drawn_ellipsoids() -> None:
    config = NucleiSceneConfig(n_nuclei=(2, 3), diameter_nm=(2000.0, 4000.0))
    plan = plan_nuclei_scene(SHAPE, voxel_size=COARSE, seed=3, config=config)
    labels = label_nuclei(plan)
    points = _grid_points(SHAPE, COARSE)
    flat = labels.reshape(-1)
    assert len(plan.nuclei) >= 1
    for k, nucleus in enumerate(plan.nuclei, start=1):
        shape = nucleus.shape
        rho = shape.scale_at(points)
        amplitude = shape.deform_amplitude
        # Every labelled voxel lies inside the maximally deformed ellipsoid ...
        assert (rho[flat == k] <= 1.0 + amplitude + 1e-6).all()
        # ... and every voxel well inside the minimally deformed one is labelled.
        core = rho <= (1.0 - amplitude) * 0.98
        assert core.any()
        assert (flat[core] == k).all()
        # The axis-aligned bounding box holds the whole nucleus.
        box = shape.bounding_box(COARSE)
        inside = np.zeros(SHAPE, dtype=bool)
        inside[box.intersect(Box.from_shape(SHAPE)).to_slices()] = True
        assert not ((labels == k) & ~inside).any()
    # Rendering the scene gives the same labels.
    scene = render_nuclei_scene(plan, synthetic_background(SHAPE, voxel_size=COARSE, seed=1))
    np.testing.assert_array_equal(scene.nuclei, labels)


def test_nuclei_keep_their_distance() -> None:
    config = NucleiSceneConfig(n_nuclei=(4, 4), diameter_nm=(2000.0, 3000.0), gap_nm=300.0)
    plan = plan_nuclei_scene(SHAPE, voxel_size=COARSE, seed=8, config=config)
    labels = label_nuclei(plan)
    assert len(plan.nuclei) >= 2
    for k in range(1, len(plan.nuclei) + 1):
        others = (labels > 0) & (labels != k)
        if not others.any() or not (labels == k).any():
            continue
        distance = ndimage.distance_transform_edt(labels != k, sampling=COARSE.as_tuple())
        # Voxel centres sample the surfaces, so allow one voxel diagonal of slack.
        assert distance[others].min() >= 300.0 - np.sqrt(3) * 100.0


def test_nuclei_stay_inside_their_bounds() -> None:
    inside = NucleiSceneConfig(n_nuclei=(1, 3), diameter_nm=(2000.0, 3500.0), cut_probability=0.0)
    for seed in range(4):
        plan = plan_nuclei_scene(SHAPE, voxel_size=COARSE, seed=seed, config=inside)
        labels = label_nuclei(plan)
        border = np.ones(SHAPE, dtype=bool)
        border[1:-1, 1:-1, 1:-1] = False
        assert not labels[border].any(), f"seed {seed}: a nucleus touches the volume border"
        for nucleus in plan.nuclei:
            assert nucleus.shape.bounding_box(COARSE).offset >= (-1, -1, -1)
    cut = NucleiSceneConfig(n_nuclei=(3, 3), cut_probability=1.0)
    extent = np.asarray(SHAPE) * 100.0
    for seed in range(4):
        plan = plan_nuclei_scene(SHAPE, voxel_size=COARSE, seed=seed, config=cut)
        for nucleus in plan.nuclei:
            assert (nucleus.shape.center_nm >= 0).all()
            assert (nucleus.shape.center_nm <= extent).all()
        # Labels beyond the volume continue the same nuclei (exact distance targets).
        grown = Box.from_shape(SHAPE).grow(8)
        outer = label_nuclei(plan, grown)
        np.testing.assert_array_equal(
            outer[Box.from_shape(SHAPE).to_slices(grown)], label_nuclei(plan)
        )


def test_envelope_is_darker_than_its_neighbourhood() -> None:
    fine = VoxelSize(20.0, 10.0, 10.0)
    shape = (40, 128, 128)
    config = NucleiSceneConfig(
        n_nuclei=(1, 1),
        diameter_nm=(700.0, 900.0),
        min_axis_ratio=0.9,
        cut_probability=0.0,
        nucleolus_probability=0.0,
        soma_probability=0.0,
        n_distractors=(0, 0),
        invert_probability=0.0,
        blur_sigma_vox=(0.0, 0.0),
        noise_sigma=(0.0, 0.0),
        drift_amplitude=(0.0, 0.0),
        gamma=(1.0, 1.0),
        envelope_contrast=(0.25, 0.25),
        # Leave room below the darkest material so the membranes are not clipped at black.
        tissue_level=(0.6, 0.6),
        nucleoplasm_contrast=(0.05, 0.1),
        heterochromatin_contrast=(0.1, 0.15),
    )
    for seed in range(3):
        plan = plan_nuclei_scene(shape, voxel_size=fine, seed=seed, config=config)
        scene = render_nuclei_scene(plan, synthetic_background(shape, voxel_size=fine, seed=seed))
        nucleus = plan.nuclei[0]
        depth = nucleus.shape.depth_at(_grid_points(shape, fine)).reshape(shape)
        raw = scene.raw.astype(float)
        m, gap = nucleus.membrane_nm, nucleus.lumen_nm
        inner_start = m + gap

        def mean(lo: float, hi: float, depth=depth, raw=raw) -> float:
            band = (depth > lo) & (depth < hi)
            assert band.sum() > 100
            return float(raw[band].mean())

        outer_membrane = mean(0.0, m)
        inner_membrane = mean(inner_start, inner_start + m)
        lumen = mean(m + 0.25 * gap, m + 0.75 * gap)
        outside = mean(-60.0, -20.0)
        inside = mean(inner_start + m + 20.0, inner_start + m + 60.0)
        assert outer_membrane < outside - 5, f"seed {seed}: outer membrane not darker"
        assert inner_membrane < inside - 5, f"seed {seed}: inner membrane not darker"
        assert max(outer_membrane, inner_membrane) < lumen, f"seed {seed}: no light gap"


def test_nucleoplasm_contrast_sign_varies(background: np.ndarray) -> None:
    signs = set()
    for seed in range(40):
        plan = plan_nuclei_scene(SHAPE, voxel_size=COARSE, seed=seed)
        signs.update(np.sign([n.nucleoplasm for n in plan.nuclei]).tolist())
    assert {-1.0, 1.0} <= signs


def test_anisotropic_voxels() -> None:
    voxel = VoxelSize(50.0, 10.0, 10.0)
    config = NucleiSceneConfig(n_nuclei=(1, 1), diameter_nm=(1000.0, 1200.0), cut_probability=0.0)
    background = synthetic_background((24, 160, 160), voxel_size=voxel, seed=0)
    scene = make_nuclei_scene(background, voxel_size=voxel, seed=4, config=config)
    assert scene.nuclei.max() == 1
    index = np.argwhere(scene.nuclei == 1)
    extent_nm = (index.max(axis=0) - index.min(axis=0) + 1) * np.asarray(voxel.as_tuple())
    # Physical extents agree along z and in-plane despite the 5x anisotropy.
    assert extent_nm.max() < 1.6 * extent_nm.min()


def test_bad_input() -> None:
    with pytest.raises(ConfigError, match="diameter_nm"):
        NucleiSceneConfig(diameter_nm=(5000.0, 1000.0))
    with pytest.raises(ConfigError, match="cut_probability"):
        NucleiSceneConfig(cut_probability=1.5)
    with pytest.raises(ConfigError, match="unknown"):
        NucleiSceneConfig().replace(colour="red")
    with pytest.raises(InvalidVolumeError, match="Z, Y, X"):
        make_nuclei_scene(np.zeros((8, 8)), voxel_size=COARSE, seed=0)
    plan = plan_nuclei_scene((8, 8, 8), voxel_size=COARSE, seed=0)
    with pytest.raises(InvalidVolumeError, match="tile_background"):
        render_nuclei_scene(plan, np.zeros((4, 8, 8)))
