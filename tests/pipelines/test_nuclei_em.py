"""nuclei-em: exact distance targets, training planes, scores and the shipped model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from vemkit.errors import ConfigError
from vemkit.geometry import Box, VoxelSize
from vemkit.ml import fit_normalization, signed_distance_target
from vemkit.ml.zoo import list_models, load_zoo_model
from vemkit.pipelines.nuclei_data import (
    CLIP_NM,
    TRAINING_BACKGROUNDS,
    WORKING_VOXEL_SIZE,
    NucleiSample,
    NucleusPlanes,
    load_background,
    make_nuclei_sample,
    make_phantom_sample,
    nuclei_distance_target,
    resample_texture,
    score_nuclei,
    segment_nuclei_distance,
    summarise_nuclei_scores,
)
from vemkit.pipelines.predict import ModelSpec, predict_block
from vemkit.segmentation import distance_watershed
from vemkit.synth import PhantomConfig
from vemkit.synth.nuclei import NucleiSceneConfig, label_nuclei, plan_nuclei_scene

SHAPE = (48, 48, 48)
MIN_CARD_HELD_OUT_F1 = 0.6
INSTANCE_KEYS = {
    "instances",
    "seed_threshold_nm",
    "mask_threshold_nm",
    "min_seed_size_nm3",
    "min_size_nm3",
    "smooth_sigma_nm",
}


def test_distance_target_is_the_signed_distance_of_the_labels() -> None:
    config = NucleiSceneConfig(n_nuclei=(2, 3), diameter_nm=(2000.0, 3500.0), cut_probability=0.0)
    plan = plan_nuclei_scene(SHAPE, voxel_size=WORKING_VOXEL_SIZE, seed=4, config=config)
    distance = nuclei_distance_target(plan)
    expected = signed_distance_target(
        label_nuclei(plan), clip_nm=CLIP_NM, voxel_size=WORKING_VOXEL_SIZE
    )
    assert expected.valid.all()
    np.testing.assert_allclose(distance, expected.target[0], atol=1e-3)


def test_distance_target_sees_nuclei_beyond_the_border() -> None:
    config = NucleiSceneConfig(n_nuclei=(3, 3), cut_probability=1.0)
    plan = plan_nuclei_scene(SHAPE, voxel_size=WORKING_VOXEL_SIZE, seed=2, config=config)
    distance = nuclei_distance_target(plan)
    # Reference: a margin far beyond the clip distance on every side.
    grown = Box.from_shape(SHAPE).grow(60)
    foreground = label_nuclei(plan, grown) > 0
    spacing = WORKING_VOXEL_SIZE.as_tuple()
    reference = np.where(
        foreground,
        ndimage.distance_transform_edt(foreground, sampling=spacing),
        -ndimage.distance_transform_edt(~foreground, sampling=spacing),
    )
    reference = np.clip(reference, -CLIP_NM, CLIP_NM)[Box.from_shape(SHAPE).to_slices(grown)]
    np.testing.assert_allclose(distance, reference, atol=1e-3)


def test_resample_texture_to_coarser_voxels() -> None:
    rng = np.random.default_rng(0)
    volume = rng.integers(0, 255, size=(10, 200, 180)).astype(np.uint8)
    out = resample_texture(volume, voxel_size=(50, 5, 5), target_voxel_size=(100, 100, 100))
    assert out.shape == (5, 10, 9)
    assert abs(float(out.mean()) - float(volume.mean())) < 2.0
    # Anti-aliasing: white noise averages out.
    assert out.std() < 0.2 * volume.std()


def test_scores_of_a_perfect_and_an_empty_prediction() -> None:
    sample = make_nuclei_sample(None, shape=SHAPE, seed=1)
    perfect = summarise_nuclei_scores([score_nuclei(sample.nuclei, sample.nuclei)])
    assert perfect["f1_iou50"] == perfect["f1_iou75"] == perfect["dice"] == 1.0
    assert perfect["mean_matched_iou"] == 1.0
    empty = summarise_nuclei_scores([score_nuclei(np.zeros_like(sample.nuclei), sample.nuclei)])
    assert empty["f1_iou50"] == 0.0
    assert empty["dice"] == 0.0
    # The true distance map finds every true nucleus. (Seeds at 1 µm can add a tiny extra
    # fragment where a flat nucleus is barely 2 µm thick, so precision may be below 1.)
    labels = segment_nuclei_distance(sample.distance_nm, voxel_size=WORKING_VOXEL_SIZE)
    truth = summarise_nuclei_scores([score_nuclei(labels, sample.nuclei)])
    assert truth["recall_iou50"] == 1.0
    assert truth["dice"] == 1.0


def test_training_planes() -> None:
    samples = [make_nuclei_sample(None, shape=(40, 40, 40), seed=s) for s in range(2)]
    norm = fit_normalization(np.concatenate([s.raw.ravel() for s in samples]))
    planes = NucleusPlanes(samples, patch_shape=(32, 32), samples_per_epoch=6, normalization=norm)
    image, target, valid = planes[0]
    assert image.shape == (1, 32, 32)
    assert target.shape == (1, 32, 32)
    assert valid.shape == (32, 32)
    assert float(target.abs().max()) <= 1.0
    again = planes[0]
    assert torch.equal(image, again[0])
    planes.set_epoch(1)
    assert not torch.equal(image, planes[0][0])


def test_scene_weights_pick_scenes() -> None:
    empty = np.zeros((24, 24, 24), dtype=np.uint32)
    far = np.full(empty.shape, -CLIP_NM, dtype=np.float32)
    dark = NucleiSample(np.full(empty.shape, 20, dtype=np.uint8), empty, far, None)
    light = NucleiSample(np.full(empty.shape, 200, dtype=np.uint8), empty, far, None)
    norm = fit_normalization(np.array([0, 255], dtype=np.uint8))
    planes = NucleusPlanes(
        [dark, light],
        patch_shape=(16, 16),
        samples_per_epoch=20,
        normalization=norm,
        scene_weights=[0.0, 1.0],
    )
    first = planes[0][0]
    assert all(torch.equal(planes[i][0], first) for i in range(20))
    assert float(first.mean()) > 0.5
    with pytest.raises(ConfigError, match="scene_weights"):
        NucleusPlanes(
            [dark, light],
            patch_shape=(16, 16),
            samples_per_epoch=1,
            normalization=norm,
            scene_weights=[1.0],
        )


def test_smoothing_off_is_the_plain_distance_watershed() -> None:
    sample = make_nuclei_sample(None, shape=SHAPE, seed=3)
    plain = distance_watershed(sample.distance_nm, voxel_size=WORKING_VOXEL_SIZE)
    ours = segment_nuclei_distance(sample.distance_nm, voxel_size=WORKING_VOXEL_SIZE)
    np.testing.assert_array_equal(plain, ours)
    smoothed = segment_nuclei_distance(
        sample.distance_nm, voxel_size=WORKING_VOXEL_SIZE, smooth_sigma_nm=200.0
    )
    assert smoothed.max() >= 1


def test_phantom_sample_at_the_working_voxel_size() -> None:
    config = PhantomConfig(
        shape=(32, 32, 32),
        voxel_size=(50, 50, 50),
        cell_size_nm=1500.0,
        nucleus_diameter_nm=(800.0, 1000.0),
        seed=1,
    )
    sample = make_phantom_sample(config)
    assert sample.raw.shape == sample.nuclei.shape == sample.distance_nm.shape == (16, 16, 16)
    assert sample.raw.dtype == np.uint8
    assert sample.plan is None
    assert sample.nuclei.max() >= 1
    np.testing.assert_array_equal(sample.distance_nm > 0, sample.nuclei > 0)
    assert float(np.abs(sample.distance_nm).max()) <= CLIP_NM


@pytest.fixture(scope="module")
def shipped() -> tuple[torch.nn.Module, ModelSpec, dict]:
    if "nuclei-em" not in list_models():
        pytest.fail("the nuclei-em model is not in the zoo (run recipes/nuclei_em.py --ship)")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    model, config, card = load_zoo_model("nuclei-em")
    return model, ModelSpec.from_card(config, card, name="nuclei-em"), card


def test_shipped_card(shipped: tuple[torch.nn.Module, ModelSpec, dict]) -> None:
    _, spec, card = shipped
    assert spec.target_type == "signed_distance"
    assert spec.clip_nm == CLIP_NM
    assert spec.voxel_size == VoxelSize(100.0, 100.0, 100.0)
    assert spec.normalization.is_fitted
    # The segment pipeline passes every key but "instances" to segment_nuclei_distance.
    assert set(card["instances"]) == INSTANCE_KEYS
    assert card["instances"]["instances"] == "distance_watershed"
    assert card["training_data"][0]["real_nuclei_ground_truth"] == "none available"
    assert "synthetic nuclei embedded in real EM backgrounds" in card["training_data"][0]["kind"]
    assert "phantoms" in card["training_data"][1]["kind"]
    metrics = card["metrics"]
    assert "validation" in metrics["postprocessing"]["chosen_on"]
    assert metrics["postprocessing"]["chosen"] == {
        k: v for k, v in card["instances"].items() if k != "instances"
    }
    for key in ("held_out", "unseen_backgrounds", "test_phantoms"):
        assert 0.0 <= metrics[key]["object_f1_at"]["0.5"] <= 1.0
    assert metrics["held_out"]["object_f1_at"]["0.5"] > MIN_CARD_HELD_OUT_F1
    assert "recipes/nuclei_em.py" in card["command"]


def _segment(model: torch.nn.Module, spec: ModelSpec, card: dict, raw: np.ndarray) -> np.ndarray:
    """Tri-axis prediction and the card's post-processing, as the segment pipeline runs it."""
    distance = predict_block(model, raw, spec=spec, voxel_size=WORKING_VOXEL_SIZE, triaxis=True)
    params = {k: v for k, v in card["instances"].items() if k != "instances"}
    return segment_nuclei_distance(distance[0], voxel_size=WORKING_VOXEL_SIZE, **params)


@pytest.mark.realdata
def test_shipped_model_on_a_held_out_scene(
    shared_data: Path, shipped: tuple[torch.nn.Module, ModelSpec, dict]
) -> None:
    # Held-out scene 1 of the recipe (seed 30001, second training background, 128^3 at
    # 100 nm): the shipped weights and the pipeline's post-processing reproduce the
    # card's per-volume row exactly (same objects, same scores).
    model, spec, card = shipped
    row = next(r for r in card["metrics"]["per_volume"]["held_out"] if r["seed"] == 30_001)
    texture = load_background(TRAINING_BACKGROUNDS[1], root=str(shared_data))
    assert row["background"] == TRAINING_BACKGROUNDS[1].name
    config = NucleiSceneConfig(noise_sigma=(0.0, 0.03))
    sample = make_nuclei_sample(texture, shape=(128, 128, 128), seed=30_001, config=config)
    scores = score_nuclei(_segment(model, spec, card, sample.raw), sample.nuclei)
    assert (scores["n_gt"], scores["n_pred"]) == (row["n_gt"], row["n_pred"])
    assert (scores["tp50"], scores["fp50"], scores["fn50"]) == (
        row["tp50"],
        row["fp50"],
        row["fn50"],
    )
    assert scores["f1_50"] == pytest.approx(row["f1_50"])
