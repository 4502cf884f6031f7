"""Object F1 beside the card's: true objects below min_size_nm3 left out of the matching."""

from __future__ import annotations

import numpy as np
import pytest

from vemkit.geometry import VoxelSize
from vemkit.ml.normalize import Normalization
from vemkit.pipelines.predict import ModelSpec
from vemkit.pipelines.train import SegmentedRegion, parse_train_config, score_outputs

SIZE = VoxelSize.coerce((50.0, 10.0, 10.0))  # 5000 nm³ per voxel
SPEC = ModelSpec(
    name="hand-made",
    target_type="foreground_boundary",
    channels=("foreground", "boundary"),
    voxel_size=SIZE,
    normalization=Normalization(mode="none"),
    dims=2,
)


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


def _region(objects_ignore=None):
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
        config, _region(objects_ignore), spec=SPEC, voxel_size=SIZE, evaluation=config.evaluation
    )
    # every object counted: 2 matches of 3 predicted and 3 true objects
    assert scores["object_f1_at"]["0.5"] == pytest.approx(2 * 2 / (3 + 3))
    assert scores["small_true_objects_left_out"] == 1
    # without the sliver: 2 matches of 3 predicted (the false positive stays) and 2 true
    assert scores["object_f1_at_without_small_truth"]["0.5"] == pytest.approx(2 * 2 / (3 + 2))


def test_nothing_is_left_out_without_a_minimum_size():
    config = _recipe(min_size_nm3=0.0)
    scores = score_outputs(
        config, _region(), spec=SPEC, voxel_size=SIZE, evaluation=config.evaluation
    )
    assert "object_f1_at_without_small_truth" not in scores


def test_a_prediction_on_a_left_out_sliver_is_not_a_false_positive():
    config = _recipe(min_size_nm3=1e5)
    region = _region()
    region.objects[0, 0, 18:20] = 9  # found the sliver exactly
    scores = score_outputs(config, region, spec=SPEC, voxel_size=SIZE, evaluation=config.evaluation)
    assert scores["object_f1_at"]["0.5"] == pytest.approx(2 * 3 / (4 + 3))
    assert scores["object_f1_at_without_small_truth"]["0.5"] == pytest.approx(2 * 2 / (3 + 2))
