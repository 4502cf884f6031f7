"""Block-bootstrap confidence intervals: pooled values, coverage behaviour, ignore, errors."""

from __future__ import annotations

import numpy as np
import pytest

from vemkit.errors import ConfigError, InvalidVolumeError
from vemkit.measure import (
    bootstrap_class_scores,
    bootstrap_scores,
    default_blocks,
    evaluate,
    paired_difference,
)
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


# --- paired comparison -----------------------------------------------------------------------
def test_block_counts_add_up_to_the_pooled_counts() -> None:
    pred, truth = _grid_of_squares(6, missing_every=3)
    result = bootstrap_scores(pred, truth, n_resamples=50, block_counts=True)
    counts = result["block_counts"]
    assert len(counts["intersection"]) == result["n_blocks"] == 16
    inter, p, g = (sum(counts[k]) for k in ("intersection", "predicted", "truth"))
    assert inter / (p + g - inter) == pytest.approx(result["iou"]["value"])
    assert (sum(counts["n_gt"]), sum(counts["n_pred"])) == (result["n_gt"], result["n_pred"])
    f1 = 2 * sum(counts["matched"]["0.5"]) / (result["n_gt"] + result["n_pred"])
    assert f1 == pytest.approx(result["f1_at"]["0.5"]["value"])
    assert "block_counts" not in bootstrap_scores(pred, truth, n_resamples=50)


def test_the_same_segmentation_twice_differs_by_nothing() -> None:
    pred, truth = _grid_of_squares(6, missing_every=3)
    counts = bootstrap_scores(pred, truth, n_resamples=10, block_counts=True)["block_counts"]
    result = paired_difference(counts, counts, n_resamples=200)
    assert set(result) == {"iou", "dice", "f1_at_0.5"}
    for entry in result.values():
        assert entry["difference"] == entry["low"] == entry["high"] == 0.0
        assert entry["p_better"] == 0.5


def test_pairing_finds_a_small_consistent_gain_that_separate_intervals_cannot() -> None:
    # B finds one more square than A in every block of a segmentation with uneven blocks
    truth = _grid_of_squares(16)[1]
    a = truth.copy()
    b = truth.copy()
    rng = np.random.default_rng(5)
    labels = np.unique(truth)[1:]
    for block_y in range(4):
        for block_x in range(4):
            inside = [
                v
                for v in labels
                if (np.argwhere(truth[0] == v)[0] // 32 == (block_y, block_x)).all()
            ]
            lost = rng.choice(inside, size=int(rng.integers(2, 9)), replace=False)
            for value in lost:
                a[truth == value] = 0
            for value in lost[1:]:
                b[truth == value] = 0
    ci_a = bootstrap_scores(a, truth, n_resamples=500, block_counts=True)
    ci_b = bootstrap_scores(b, truth, n_resamples=500, block_counts=True)
    gain = paired_difference(ci_a["block_counts"], ci_b["block_counts"], n_resamples=500)
    f1 = gain["f1_at_0.5"]
    assert f1["difference"] == pytest.approx(
        ci_b["f1_at"]["0.5"]["value"] - ci_a["f1_at"]["0.5"]["value"]
    )
    assert 0 < f1["low"] <= f1["difference"] <= f1["high"]
    assert f1["p_better"] == 1.0
    # the separate intervals overlap: on their own they could not tell A and B apart
    assert ci_b["f1_at"]["0.5"]["low"] < ci_a["f1_at"]["0.5"]["high"]


def test_counts_of_different_block_grids_are_refused() -> None:
    pred, truth = _grid_of_squares(4)
    four = bootstrap_scores(pred, truth, blocks=(1, 2, 2), block_counts=True)["block_counts"]
    two = bootstrap_scores(pred, truth, blocks=(1, 1, 2), block_counts=True)["block_counts"]
    with pytest.raises(ConfigError, match="different block grids"):
        paired_difference(four, two)
    with pytest.raises(ConfigError, match="confidence"):
        paired_difference(four, four, confidence=1.0)


def test_several_runs_per_side_pool_and_widen_by_their_disagreement() -> None:
    pred, truth = _grid_of_squares(8, missing_every=3, seed=1)
    worse, _ = _grid_of_squares(8, missing_every=2, seed=2)
    good = bootstrap_scores(pred, truth, n_resamples=10, block_counts=True)["block_counts"]
    bad = bootstrap_scores(worse, truth, n_resamples=10, block_counts=True)["block_counts"]
    # the same run twice is the run once: pooling identical runs changes nothing
    once = paired_difference(good, bad, n_resamples=300)
    twice = paired_difference([good, good], bad, n_resamples=300)
    for key, entry in once.items():
        assert {k: v for k, v in twice[key].items() if k != "runs_a"} == {
            k: v for k, v in entry.items() if k != "runs_a"
        }
        assert (twice[key]["runs_a"], twice[key]["runs_b"]) == (2, 1)
    # two runs that disagree: the point is their pooled score, and the interval is wider
    # than that of one run holding both runs' counts (where the runs are not resampled)
    both = {
        key: [x + y for x, y in zip(good[key], bad[key], strict=True)]
        for key in ("intersection", "predicted", "truth", "n_gt", "n_pred")
    }
    both["matched"] = {
        "0.5": [x + y for x, y in zip(good["matched"]["0.5"], bad["matched"]["0.5"], strict=True)]
    }
    mixed = paired_difference([good, bad], good, n_resamples=500)["f1_at_0.5"]
    merged = paired_difference(both, good, n_resamples=500)["f1_at_0.5"]
    assert mixed["a"] == pytest.approx(merged["a"])
    assert mixed["difference"] == pytest.approx(merged["difference"])
    assert mixed["high"] - mixed["low"] > 1.2 * (merged["high"] - merged["low"])
    with pytest.raises(ConfigError, match="at least one run"):
        paired_difference([], good)


# --- multi-class ------------------------------------------------------------------------------
def _classes_scene(seed: int = 0, *, errors: float = 0.1):
    """Truth: 4 classes (a rare one); prediction: truth with a share of voxels relabelled."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((2, 64, 64), np.uint8)
    truth[:, 16:48, :] = 1
    truth[:, :, 40:56] = 2
    truth[:, 5:9, 5:9] = 3  # rare: in one block only
    truth[0, 60:, :] = 255  # unannotated
    pred = truth.copy()
    pred[truth == 255] = 0
    flip = rng.random(truth.shape) < errors
    pred[flip] = rng.integers(0, 4, size=int(flip.sum()))
    return pred, truth


def test_class_scores_are_those_of_evaluate_with_intervals() -> None:
    pred, truth = _classes_scene()
    names = ("cytosol", "membrane", "mito", "synapse")
    result = bootstrap_class_scores(
        pred, truth, (0, 1, 2, 3), names=names, ignore_label=255, n_resamples=300
    )
    scores = evaluate(
        pred, truth, voxel_size=(50, 5, 5), instance=False, classes=(0, 1, 2, 3), ignore_label=255
    )
    assert result["macro_f1"]["value"] == pytest.approx(scores["dice"])
    assert result["weighted_f1"]["value"] == pytest.approx(scores["weighted_f1"])
    for index, name in enumerate(names):
        entry = result["per_class"][name]
        assert entry["value"] == pytest.approx(scores["per_class"][str(index)]["f1"])
        assert entry["low"] <= entry["value"] <= entry["high"]
    # the rare class sits in a few blocks: its interval is the widest
    widths = {n: e["high"] - e["low"] for n, e in result["per_class"].items()}
    assert max(widths, key=widths.get) == "synapse"
    assert result["weighted_f1"]["low"] < result["weighted_f1"]["high"]


def test_class_block_counts_pair_like_the_binary_ones() -> None:
    good, truth = _classes_scene(1, errors=0.05)
    bad, _ = _classes_scene(2, errors=0.2)
    kwargs = {"names": ("a", "b", "c", "d"), "ignore_label": 255, "block_counts": True}
    ci_good = bootstrap_class_scores(good, truth, (0, 1, 2, 3), n_resamples=50, **kwargs)
    ci_bad = bootstrap_class_scores(bad, truth, (0, 1, 2, 3), n_resamples=50, **kwargs)
    counts = ci_good["block_counts"]
    assert counts["classes"] == ["a", "b", "c", "d"]
    assert len(counts["intersection"]) == 4
    assert len(counts["intersection"][0]) == 16
    same = paired_difference(counts, counts, n_resamples=100)
    assert set(same) == {"macro_f1", "weighted_f1", "f1_a", "f1_b", "f1_c", "f1_d"}
    assert all(e["difference"] == e["low"] == e["high"] == 0.0 for e in same.values())
    gain = paired_difference(ci_bad["block_counts"], counts, n_resamples=300)
    for key, label in (("macro_f1", "macro_f1"), ("weighted_f1", "weighted_f1")):
        assert gain[key]["a"] == pytest.approx(ci_bad[label]["value"])
        assert gain[key]["b"] == pytest.approx(ci_good[label]["value"])
        assert 0 < gain[key]["low"] <= gain[key]["difference"] <= gain[key]["high"]
        assert gain[key]["p_better"] == 1.0
    assert gain["f1_d"]["b"] == pytest.approx(ci_good["per_class"]["d"]["value"])


def test_class_scores_refuse_bad_names() -> None:
    pred, truth = _classes_scene()
    with pytest.raises(ConfigError, match="one distinct name per class"):
        bootstrap_class_scores(pred, truth, (0, 1), names=("a",))
    with pytest.raises(ConfigError, match="at least one class"):
        bootstrap_class_scores(pred, truth, ())
