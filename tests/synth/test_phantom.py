"""Phantoms: determinism, chunked generation, label invariants and realism."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import ndimage
from skimage.filters import threshold_otsu

from vemkit.errors import ConfigError, VemkitError
from vemkit.geometry import BlockGrid, Box, VoxelSize
from vemkit.synth import ARRAY_NAMES, Phantom, PhantomConfig, PhantomGenerator, make_phantom

SMALL = PhantomConfig(shape=(48, 64, 56), seed=7)


@pytest.fixture(scope="module")
def small() -> Phantom:
    return make_phantom(SMALL)


@pytest.fixture(scope="module")
def default96() -> Phantom:
    return make_phantom(PhantomConfig(shape=(96, 96, 96), seed=0))


@pytest.fixture(scope="module")
def sstem() -> Phantom:
    return make_phantom(PhantomConfig.preset("sstem", shape=(12, 96, 96), seed=2))


def _assemble(generator: PhantomGenerator, block_shape: tuple[int, int, int]) -> dict:
    shape = generator.config.shape
    out = dict.fromkeys(ARRAY_NAMES)
    for box in BlockGrid(Box.from_shape(shape), block_shape):
        block = generator.generate_block(box)
        for name, values in block.items():
            if out[name] is None:
                out[name] = np.zeros(shape, dtype=values.dtype)
            out[name][box.to_slices()] = values
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


# -- determinism and chunking -------------------------------------------------------------


def test_same_seed_gives_identical_arrays(small: Phantom) -> None:
    again = make_phantom(SMALL)
    for name in ARRAY_NAMES:
        np.testing.assert_array_equal(getattr(again, name), getattr(small, name), err_msg=name)


def test_different_seed_gives_different_phantom() -> None:
    a = make_phantom(PhantomConfig(shape=(32, 32, 32), seed=1))
    b = make_phantom(PhantomConfig(shape=(32, 32, 32), seed=2))
    assert not np.array_equal(a.raw, b.raw)
    assert not np.array_equal(a.cells, b.cells)


@pytest.mark.parametrize("block_shape", [(17, 23, 40), (48, 9, 31)])
def test_blocks_from_any_grid_assemble_to_make_phantom(
    small: Phantom, block_shape: tuple[int, int, int]
) -> None:
    assembled = _assemble(PhantomGenerator(SMALL), block_shape)
    for name in ARRAY_NAMES:
        np.testing.assert_array_equal(assembled[name], getattr(small, name), err_msg=name)


def test_make_phantom_block_shape_does_not_matter(sstem: Phantom) -> None:
    other = make_phantom(sstem.config, block_shape=(5, 41, 100))
    for name in ARRAY_NAMES:
        np.testing.assert_array_equal(getattr(other, name), getattr(sstem, name), err_msg=name)


def test_generate_block_rejects_boxes_outside_the_volume() -> None:
    generator = PhantomGenerator(PhantomConfig(shape=(16, 16, 16), seed=0))
    with pytest.raises(ValueError, match="inside the volume"):
        generator.generate_block(Box((10, 0, 0), (8, 8, 8)))


# -- labels -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["small", "default96", "sstem"])
def test_label_invariants(name: str, request: pytest.FixtureRequest) -> None:
    ph: Phantom = request.getfixturevalue(name)
    nuclei, mito, cells, membranes = ph.nuclei, ph.mitochondria, ph.cells, ph.membranes
    assert ph.raw.dtype == np.uint8
    assert membranes.dtype == np.uint8
    assert nuclei.dtype == mito.dtype == cells.dtype == np.uint32
    # Mitochondria never overlap or enter nuclei.
    assert not ((nuclei > 0) & (mito > 0)).any()
    # Membranes are exactly the zero voxels of ``cells``; organelles lie inside cells.
    np.testing.assert_array_equal(membranes == 1, cells == 0)
    assert set(np.unique(membranes)) <= {0, 1}
    assert (cells[mito > 0] > 0).all()
    assert (cells[nuclei > 0] > 0).all()
    # Every mitochondrion and nucleus lies in a single cell.
    for labels in (mito, nuclei):
        pairs = np.unique(np.stack([labels[labels > 0], cells[labels > 0]]), axis=1)
        assert len(np.unique(pairs[0])) == pairs.shape[1]
    # Ids are 1..N without gaps.
    for labels in (nuclei, mito, cells):
        ids = np.unique(labels)
        ids = ids[ids > 0]
        np.testing.assert_array_equal(ids, np.arange(1, len(ids) + 1))
    # Membranes separate cells: no two face-adjacent voxels belong to different cells.
    for axis in range(3):
        a = np.moveaxis(cells, axis, 0)
        assert not ((a[1:] != a[:-1]) & (a[1:] > 0) & (a[:-1] > 0)).any()


def test_generator_counts_match_labels(small: Phantom) -> None:
    generator = PhantomGenerator(SMALL)
    assert generator.n_cells == small.cells.max()
    assert generator.n_nuclei == small.nuclei.max()
    assert generator.n_mitochondria == small.mitochondria.max()


def test_default_96_has_nuclei_mitochondria_and_cells(default96: Phantom) -> None:
    assert default96.nuclei.max() >= 1
    assert (default96.nuclei > 0).mean() > 0.01
    assert default96.mitochondria.max() >= 5
    assert default96.cells.max() >= 4


@pytest.mark.parametrize(
    ("preset", "voxel"), [("fibsem", (10, 10, 10)), ("sstem", (50, 5, 5)), ("sbem", (30, 8, 8))]
)
def test_presets(preset: str, voxel: tuple[int, int, int]) -> None:
    config = PhantomConfig.preset(preset, shape=(8, 40, 48), seed=1)
    assert config.voxel_size == VoxelSize(*voxel)
    ph = make_phantom(config)
    assert ph.voxel_size == config.voxel_size
    for name in ARRAY_NAMES:
        assert getattr(ph, name).shape == (8, 40, 48)
    assert ph.membranes.any()
    assert ph.cells.max() >= 1


def test_preset_default_shapes_are_anisotropic() -> None:
    sstem = PhantomConfig.preset("sstem")
    assert sstem.voxel_size.anisotropy == 10
    assert sstem.shape[0] < sstem.shape[1] == sstem.shape[2]


# -- image content ------------------------------------------------------------------------


def test_structures_have_their_contrast(default96: Phantom) -> None:
    raw = default96.raw.astype(np.float64)
    mito = default96.mitochondria > 0
    nuclei = default96.nuclei > 0
    membranes = default96.membranes > 0
    cytoplasm = (default96.cells > 0) & ~nuclei & ~mito
    assert raw[mito].mean() < raw[cytoplasm].mean() - 20
    assert raw[membranes].mean() < raw[cytoplasm].mean() - 20
    # Light nucleoplasm and dark heterochromatin: wider spread than the cytoplasm.
    assert np.percentile(raw[nuclei], 90) > np.percentile(raw[cytoplasm], 90) + 10
    assert np.percentile(raw[nuclei], 10) < np.percentile(raw[cytoplasm], 10) - 10
    assert 40 < raw.mean() < 200
    assert raw.min() < raw.mean() < raw.max()


def test_mitochondria_are_not_trivial_but_detectable(default96: Phantom) -> None:
    raw = default96.raw.astype(np.float32)
    mito = default96.mitochondria > 0
    assert _iou(raw < threshold_otsu(raw), mito) < 0.95
    smooth = ndimage.gaussian_filter(raw, 1.5)
    best = max(_iou(smooth < t, mito) for t in np.arange(60, 170, 4))
    assert best > 0.3


def test_noise_and_blur_are_configurable() -> None:
    base = PhantomConfig(shape=(24, 32, 32), seed=3, noise_level=0.0, z_drift=0.0)
    clean = make_phantom(base)
    noisy = make_phantom(dataclasses.replace(base, noise_level=0.15))
    np.testing.assert_array_equal(clean.cells, noisy.cells)
    diff = clean.raw.astype(int) - noisy.raw.astype(int)
    assert diff.std() > 5
    # The PSF smooths: neighbouring voxels differ less with more blur.
    sharp = make_phantom(dataclasses.replace(base, blur_sigma_nm=0.0))
    blurred = make_phantom(dataclasses.replace(base, blur_sigma_nm=20.0))

    def roughness(a: np.ndarray) -> float:
        return float(np.abs(np.diff(a.astype(float), axis=2)).mean())

    assert roughness(blurred.raw) < roughness(sharp.raw)


# -- physical units and configuration -----------------------------------------------------


def test_anatomy_is_physical_not_voxel_based() -> None:
    # The same 640 nm cube sampled at 10 and at 20 nm holds the same nuclei.
    anatomy = {"cell_size_nm": 500.0, "nucleus_diameter_nm": (250.0, 320.0), "seed": 4}
    fine = PhantomGenerator(PhantomConfig(shape=(64, 64, 64), voxel_size=10, **anatomy))
    coarse = PhantomGenerator(PhantomConfig(shape=(32, 32, 32), voxel_size=20, **anatomy))

    def geometry(generator: PhantomGenerator) -> set:
        return {(*n.center_nm.round(6), *n.semi_axes_nm.round(6)) for n in generator.nuclei}

    assert geometry(fine) == geometry(coarse)
    assert len(geometry(fine)) >= 2


def test_automatic_anatomy_scales_with_field_of_view() -> None:
    reference = PhantomConfig(shape=(256, 256, 256)).resolved()
    assert reference.cell_size_nm == pytest.approx(1800.0)
    half = PhantomConfig(shape=(128, 128, 128)).resolved()
    assert half.cell_size_nm == pytest.approx(900.0)
    explicit = PhantomConfig(shape=(128, 128, 128), cell_size_nm=5000.0).resolved()
    assert explicit.cell_size_nm == 5000.0
    assert explicit.nucleus_diameter_nm is not None


@pytest.mark.parametrize(
    "changes",
    [
        {"shape": (0, 10, 10)},
        {"shape": (10, 10)},
        {"nucleus_fraction": 1.5},
        {"mitochondrion_width_nm": (200.0, 100.0)},
        {"noise_level": -0.1},
        {"voxel_size": (0, 1, 1)},
        {"cell_size_nm": 1.0},
    ],
)
def test_bad_configuration_is_a_vemkit_error(changes: dict) -> None:
    def build() -> None:
        PhantomGenerator(dataclasses.replace(PhantomConfig(shape=(64, 64, 64)), **changes))

    with pytest.raises(VemkitError):
        build()


def test_preset_rejects_unknown_names() -> None:
    with pytest.raises(ConfigError, match="unknown phantom preset"):
        PhantomConfig.preset("confocal")
    with pytest.raises(ConfigError, match="unknown phantom option"):
        PhantomConfig.preset("fibsem", blurr=3)


def test_with_voxel_size_keeps_other_fields() -> None:
    config = PhantomConfig.preset("sbem", shape=(8, 16, 16), seed=5).with_voxel_size("40,10,10")
    assert config.voxel_size == VoxelSize(40, 10, 10)
    assert config.seed == 5
    assert config.shape == (8, 16, 16)
