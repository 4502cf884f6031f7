"""Block-bootstrap confidence intervals: pooled values, coverage behaviour, ignore, errors."""

from __future__ import annotations

import numpy as np
import pytest

from vemkit.errors import ConfigError, InvalidVolumeError
from vemkit.measure import bootstrap_scores, default_blocks, evaluate
from vemkit.measure.uncertainty import _block_ids


def _grid_of_squares(n_side: int, *, missing_every: int = 0, seed: int = 0):
    """Truth: n_side² squares in one section; prediction: the same, some dropped / shrunk."""
    rng = np.random.default_rng(seed)
    size = 8 * n_side
    truth = np.zeros((2, size, size), np.uint32)
    pred = np.zeros_like(truth)
    label = 0
    for i in range(n_side):
        for j in range(n_side):
            label += 1
            y, x = 8 * i + 1, 8 * j + 1
            truth[:, y : y + 5, x : x + 5] = label
            if missing_every and rng.integers(missing_every) == 0:
                continue  # a miss
            pred[:, y : y + 5, x + 1 : x + 5] = label + 1000  # slightly smaller: IoU 0.8
    return pred, truth


def test_the_value_is_the_pooled_score_of_evaluate() -> None:
    pred, truth = _grid_of_squares(6, missing_every=3)
    result = bootstrap_scores(pred, truth, thresholds=(0.5, 0.9), n_resamples=200)
    scores = evaluate(pred, truth, voxel_size=(50, 5, 5), instance=True, thresholds=(0.5, 0.9))
    assert result["iou"]["value"] == pytest.approx(scores["iou"])
    assert result["dice"]["value"] == pytest.approx(scores["dice"])
    assert result["f1_at"]["0.5"]["value"] == pytest.approx(scores["f1_at"]["0.5"])
    assert result["f1_at"]["0.9"]["value"] == 0.0  # IoU 0.8 < 0.9: nothing matches
    assert (result["n_gt"], result["n_pred"]) == (scores["n_gt"], scores["n_pred"])
    for entry in (result["iou"], result["dice"], result["f1_at"]["0.5"]):
        assert entry["low"] <= entry["value"] <= entry["high"]
    assert result["f1_at"]["0.5"]["low"] < result["f1_at"]["0.5"]["high"]


def test_a_perfect_segmentation_has_a_zero_width_interval() -> None:
    _, truth = _grid_of_squares(4)
    result = bootstrap_scores(truth, truth, n_resamples=100)
    assert result["iou"] == {"value": 1.0, "low": 1.0, "high": 1.0}
    assert result["f1_at"]["0.5"] == {"value": 1.0, "low": 1.0, "high": 1.0}


def test_more_objects_give_a_narrower_interval() -> None:
    few = bootstrap_scores(*_grid_of_squares(4, missing_every=3), n_resamples=500)
    many = bootstrap_scores(*_grid_of_squares(16, missing_every=3), n_resamples=500)

    def width(r):
        return r["f1_at"]["0.5"]["high"] - r["f1_at"]["0.5"]["low"]

    assert width(many) < 0.6 * width(few)


def test_it_is_deterministic_for_a_seed() -> None:
    pred, truth = _grid_of_squares(6, missing_every=2)
    assert bootstrap_scores(pred, truth, seed=3) == bootstrap_scores(pred, truth, seed=3)


def test_ignored_voxels_and_the_objects_inside_them_do_not_count() -> None:
    pred, truth = _grid_of_squares(4)
    truth[:, :8, :] = 99  # the first row of squares is unannotated
    result = bootstrap_scores(pred, truth, ignore_label=99, n_resamples=100)
    scores = evaluate(pred, truth, voxel_size=(50, 5, 5), instance=True, ignore_label=99)
    assert result["n_gt"] == scores["n_gt"] == 12
    assert result["n_pred"] == scores["n_pred"] == 12
    assert result["f1_at"]["0.5"]["value"] == 1.0


def test_semantic_mode_scores_voxels_only() -> None:
    pred, truth = _grid_of_squares(4)
    result = bootstrap_scores(pred > 0, truth > 0, instance=False, n_resamples=50)
    assert "f1_at" not in result
    assert result["iou"]["value"] == pytest.approx(0.8)


def test_blocks_tile_the_volume_evenly() -> None:
    ids = _block_ids((3, 10, 12), (1, 2, 4))
    assert sorted(np.unique(ids)) == list(range(8))
    assert set(np.bincount(ids.ravel())) == {3 * 5 * 3}
    assert default_blocks((4, 1024, 1024), (50, 4.6, 4.6)) == (1, 4, 4)
    assert default_blocks((50, 100, 200), (10, 10, 10)) == (1, 4, 4)
    assert default_blocks((300, 2, 300)) == (4, 1, 4)
    assert default_blocks((3, 64)) == (3, 4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"blocks": (1, 4)}, "blocks must give"),
        ({"blocks": (1, 4, 99)}, "blocks must give"),
        ({"n_resamples": 0}, "n_resamples"),
        ({"confidence": 1.0}, "confidence"),
        ({"thresholds": (0.0,)}, "threshold"),
    ],
)
def test_bad_settings_are_clear_errors(kwargs, message) -> None:
    pred, truth = _grid_of_squares(2)
    with pytest.raises(ConfigError, match=message):
        bootstrap_scores(pred, truth, **kwargs)


def test_bad_arrays_are_clear_errors() -> None:
    with pytest.raises(InvalidVolumeError, match="same shape"):
        bootstrap_scores(np.zeros((2, 4, 4), np.uint8), np.zeros((2, 4, 5), np.uint8))
    with pytest.raises(InvalidVolumeError, match="integer"):
        bootstrap_scores(np.zeros((2, 4, 4)), np.zeros((2, 4, 4), np.uint8))
