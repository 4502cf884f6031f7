"""Instance settings: choosing thresholds and method on validation maps (calibrate_thresholds),
and object F1 without the true objects below min_size_nm3."""

from __future__ import annotations

import numpy as np
import pytest

from vemkit.errors import ConfigError
from vemkit.geometry import VoxelSize
from vemkit.ml.normalize import Normalization
from vemkit.pipelines.crossval import compare_crossval, summarise_crossval
from vemkit.pipelines.predict import ModelSpec
from vemkit.pipelines.train import (
    DataSource,
    EvaluationSettings,
    LoadedSource,
    SegmentedRegion,
    choose_instance_settings,
    parse_train_config,
    score_outputs,
)

SIZE = VoxelSize.coerce((50.0, 10.0, 10.0))
SPEC = ModelSpec(
    name="hand-made",
    target_type="foreground_boundary",
    channels=("foreground", "boundary"),
    voxel_size=SIZE,
    normalization=Normalization(mode="none"),
    dims=2,
)


def _region(labels, ridge):
    """Maps of a perfect foreground whose boundary channel is high on ``ridge`` and borders."""
    foreground = np.where(labels > 0, 0.95, 0.05).astype(np.float32)
    boundary = np.full(labels.shape, 0.05, np.float32)
    inside = labels > 0
    edge = inside & ~np.pad(inside, ((0, 0), (1, 1), (1, 1)))[:, 2:, 1:-1]
    boundary[edge | ridge] = 0.95
    source = DataSource(image="maps", labels="labels")
    loaded = LoadedSource(source, labels.astype(np.float32), labels, SIZE, SIZE, "", {})
    return np.stack([foreground, boundary]), loaded


def _bars(touching: bool):
    labels = np.zeros((3, 40, 40), np.uint16)
    labels[:, 10:20, 5:35] = 1
    ridge = np.zeros(labels.shape, bool)
    ridge[:, 10:20, 19:21] = True  # a boundary ridge across the middle of the bars
    if touching:
        labels[:, 10:20, 20:35] = 2  # ... where two true objects touch
    return _region(labels, ridge)


EVALUATION = EvaluationSettings(
    calibrate_thresholds=True,
    instance_candidates=["boundary_watershed_3d", "connected_components_3d"],
)


def test_a_spurious_boundary_ridge_makes_connected_components_win():
    maps, loaded = _bars(touching=False)
    chosen = choose_instance_settings([maps], [loaded], spec=SPEC, evaluation=EVALUATION)
    assert chosen["instances"] == "connected_components_3d"
    assert chosen["foreground_threshold"] == 0.5


def test_touching_objects_make_the_watershed_win():
    maps, loaded = _bars(touching=True)
    chosen = choose_instance_settings([maps], [loaded], spec=SPEC, evaluation=EVALUATION)
    assert chosen["instances"] == "boundary_watershed_3d"


def test_without_candidates_the_method_stays():
    maps, loaded = _bars(touching=False)
    evaluation = EvaluationSettings(calibrate_thresholds=True)
    chosen = choose_instance_settings([maps], [loaded], spec=SPEC, evaluation=evaluation)
    assert "instances" not in chosen
    assert set(chosen) == {"foreground_threshold", "boundary_threshold"}


def test_a_fixed_foreground_threshold_stays_and_only_the_boundary_is_chosen():
    maps, loaded = _bars(touching=True)
    maps[0][maps[0] > 0.5] = 0.45  # foreground below 0.5: a calibrated threshold goes lower
    free = choose_instance_settings(
        [maps], [loaded], spec=SPEC, evaluation=EvaluationSettings(calibrate_thresholds=True)
    )
    assert free["foreground_threshold"] == 0.4
    fixed = EvaluationSettings(
        calibrate_thresholds=True, calibrate_foreground=False, foreground_threshold=0.45
    )
    chosen = choose_instance_settings([maps], [loaded], spec=SPEC, evaluation=fixed)
    assert chosen["foreground_threshold"] == 0.45
    assert chosen["boundary_threshold"] in (0.3, 0.5, 0.7, 0.9)


def test_candidates_scored_without_the_fixed_threshold_are_refused():
    from vemkit.pipelines.train import choose_from_candidates, score_candidates

    maps, loaded = _bars(touching=True)
    everything = EvaluationSettings(calibrate_thresholds=True)
    scores = score_candidates(maps, loaded, spec=SPEC, evaluation=everything)
    fixed = EvaluationSettings(
        calibrate_thresholds=True, calibrate_foreground=False, foreground_threshold=0.45
    )
    with pytest.raises(ValueError, match="lack foreground thresholds"):
        choose_from_candidates([scores], spec=SPEC, evaluation=fixed)
    at_half = fixed.model_copy(update={"foreground_threshold": 0.5})
    assert (
        choose_from_candidates([scores], spec=SPEC, evaluation=at_half)["foreground_threshold"]
        == 0.5
    )


@pytest.mark.parametrize(
    ("evaluation", "words"),
    [
        ({"calibrate_foreground": False}, "needs calibrate_thresholds"),
        ({"instance_candidates": ["connected_components_3d"]}, "calibrate_thresholds"),
        (
            {"calibrate_thresholds": True, "instance_candidates": ["connected_components_3d"]},
            "must include instances",
        ),
        (
            {
                "calibrate_thresholds": True,
                "instance_candidates": ["none", "boundary_watershed_3d"],
            },
            "not 'none'",
        ),
    ],
)
def test_bad_candidates_are_refused(evaluation, words):
    recipe = {
        "name": "x",
        "task": "x",
        "train": [{"image": "a.tif", "labels": "b.tif"}],
        "target": {"type": "foreground_boundary", "boundary_width_nm": 20},
        "evaluation": evaluation,
    }
    with pytest.raises(ConfigError, match=words):
        parse_train_config(recipe)


def test_small_seeds_do_not_split_an_object():
    from vemkit.pipelines.predict import segment_instances

    labels = np.zeros((3, 40, 40), np.uint16)
    labels[:, 10:20, 5:36] = 1
    ridge = np.zeros(labels.shape, bool)
    ridge[:, 10:20, 30:32] = True  # a gap in the boundary map leaves a small seed beyond it
    maps, _ = _region(labels, ridge)
    options = {"spec": SPEC, "voxel_size": SIZE, "foreground_threshold": 0.5}
    split = segment_instances(maps, **options)
    assert len(np.unique(split)) == 3  # background + two pieces
    whole = segment_instances(maps, **options, min_seed_size_nm3=1e6)  # small seed: 6e5 nm³
    assert len(np.unique(whole)) == 2
    assert np.array_equal(whole > 0, split > 0)


def _recipe(min_size_nm3: float):
    return parse_train_config(
        {
            "name": "x",
            "task": "x",
            "train": [{"image": "a.tif", "labels": "b.tif"}],
            "target": {"type": "foreground_boundary", "boundary_width_nm": 20},
            "evaluation": {"min_size_nm3": min_size_nm3},
        }
    )


def _scored_region(objects_ignore=None):
    truth = np.zeros((2, 20, 20), np.uint16)
    truth[:, 2:10, 2:10] = 1  # 128 voxels = 6.4e5 nm³, found
    truth[:, 12:18, 12:18] = 2  # 72 voxels, found
    truth[0, 0, 18:20] = 3  # a 2-voxel sliver at the image edge, missed
    objects = np.zeros(truth.shape, np.uint32)
    objects[:, 2:10, 2:10] = 5
    objects[:, 12:18, 12:18] = 7
    objects[1, 18:20, 0:2] = 8  # a false positive of 4 voxels
    return SegmentedRegion(
        predicted=(objects > 0).astype(np.uint8),
        truth=(truth > 0).astype(np.uint8),
        ignore_label=2,
        objects=objects,
        truth_objects=truth,
        objects_ignore=objects_ignore,
    )


@pytest.mark.parametrize("objects_ignore", [None, 99])
def test_small_true_objects_are_left_out_beside_the_full_count(objects_ignore):
    config = _recipe(min_size_nm3=1e5)  # 20 voxels: object 3 is below, 1 and 2 above
    scores = score_outputs(
        config,
        _scored_region(objects_ignore),
        spec=SPEC,
        voxel_size=SIZE,
        evaluation=config.evaluation,
    )
    # every object counted: 2 matches of 3 predicted and 3 true objects
    assert scores["object_f1_at"]["0.5"] == pytest.approx(2 * 2 / (3 + 3))
    assert scores["small_true_objects_left_out"] == 1
    # without the sliver: 2 matches of 3 predicted (the false positive stays) and 2 true
    assert scores["object_f1_at_without_small_truth"]["0.5"] == pytest.approx(2 * 2 / (3 + 2))
    # with its own block-bootstrap interval, whose value is that score
    interval = scores["confidence_intervals_without_small_truth"]["f1_at"]["0.5"]
    assert interval["value"] == pytest.approx(2 * 2 / (3 + 2))
    assert interval["low"] <= interval["value"] <= interval["high"]
    assert scores["confidence_intervals"]["f1_at"]["0.5"]["value"] == pytest.approx(2 * 2 / 6)


def test_nothing_is_left_out_without_a_minimum_size():
    config = _recipe(min_size_nm3=0.0)
    scores = score_outputs(
        config, _scored_region(), spec=SPEC, voxel_size=SIZE, evaluation=config.evaluation
    )
    assert "object_f1_at_without_small_truth" not in scores


def test_a_prediction_on_a_left_out_sliver_is_not_a_false_positive():
    config = _recipe(min_size_nm3=1e5)
    region = _scored_region()
    region.objects[0, 0, 18:20] = 9  # found the sliver exactly
    scores = score_outputs(config, region, spec=SPEC, voxel_size=SIZE, evaluation=config.evaluation)
    assert scores["object_f1_at"]["0.5"] == pytest.approx(2 * 3 / (4 + 3))
    assert scores["object_f1_at_without_small_truth"]["0.5"] == pytest.approx(2 * 2 / (3 + 2))


def _report(region):
    """A one-fold cross-validation report of a scored region (what compare_crossval reads)."""
    config = _recipe(min_size_nm3=1e5)
    pooled = score_outputs(
        config,
        region,
        spec=SPEC,
        voxel_size=SIZE,
        evaluation=config.evaluation,
        blocks=(2, 2, 2),
        block_counts=True,
    )
    pooled["mask_confidence_intervals"] = pooled["confidence_intervals"]
    return {"plan": [{"test": [0, 2]}], "data": {"dataset": "d"}, "pooled": pooled}


def test_small_truth_f1_is_compared_paired_and_summarised_with_its_interval():
    a = _report(_scored_region())
    found = _scored_region()
    found.objects[1, 18:20, 0:2] = 0  # B has no false positive
    b = _report(found)
    metrics = compare_crossval(a, b, n_resamples=200)["volumes"][0]["metrics"]
    full, without = metrics["object_f1@0.5"], metrics["object_f1@0.5_without_small_truth"]
    assert (full["a"], full["b"]) == pytest.approx((2 * 2 / 6, 2 * 2 / 5))
    assert (without["a"], without["b"]) == pytest.approx((2 * 2 / 5, 1.0))
    assert without["difference"] == pytest.approx(1.0 - 0.8)

    summary = summarise_crossval(a)["without_small_truth"]
    assert summary["left_out"] == 1
    assert summary["object_f1@0.5"] == pytest.approx(0.8)
    assert summary["low"] <= 0.8 <= summary["high"]

    # reports without its block counts (written before it had intervals) just lack it
    del a["pooled"]["confidence_intervals_without_small_truth"]
    assert (
        "object_f1@0.5_without_small_truth"
        not in (compare_crossval(a, b, n_resamples=200)["volumes"][0]["metrics"])
    )
