"""Voxel-level scores, VI / adapted Rand and the flat ``evaluate`` report."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from skimage.metrics import adapted_rand_error as sk_adapted_rand_error
from skimage.metrics import variation_of_information as sk_variation_of_information

from vemkit.errors import ConfigError, InvalidVolumeError
from vemkit.measure import (
    adapted_rand_error,
    evaluate,
    match_instances,
    semantic_scores,
    variation_of_information,
)

# ------------------------------------------------------------------ semantic scores


def test_binary_scores_by_hand() -> None:
    gt = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    pred = np.array([1, 1, 0, 0, 1, 0, 0, 0])  # tp 2, fp 1, fn 2; background tp 3
    s = semantic_scores(pred, gt)
    fg = s.per_class[1]
    assert (fg.tp, fg.fp, fg.fn, fg.support, fg.pred_support) == (2, 1, 2, 4, 3)
    assert fg.dice == pytest.approx(4 / 7)
    assert fg.iou == pytest.approx(2 / 5)
    assert fg.precision == pytest.approx(2 / 3)
    assert fg.recall == pytest.approx(1 / 2)
    assert fg.f1 == pytest.approx(fg.dice)
    bg = s.per_class[0]
    assert (bg.tp, bg.fp, bg.fn) == (3, 2, 1)
    assert bg.dice == pytest.approx(6 / 9)
    assert s.foreground == fg
    assert s.labels == (0, 1)
    np.testing.assert_array_equal(s.confusion, [[3, 1], [2, 2]])
    assert s.macro.dice == pytest.approx((4 / 7 + 6 / 9) / 2)


def _three_class_example() -> tuple[np.ndarray, np.ndarray]:
    """Confusion (rows gt, cols pred): [[5, 1, 0], [0, 2, 1], [0, 0, 1]]."""
    gt = np.array([0] * 6 + [1] * 3 + [2])
    pred = np.array([0, 0, 0, 0, 0, 1, 1, 1, 2, 2])
    return pred.reshape(2, 5), gt.reshape(2, 5)


def test_macro_and_weighted_f1_three_classes() -> None:
    pred, gt = _three_class_example()
    s = semantic_scores(pred, gt)
    np.testing.assert_array_equal(s.confusion, [[5, 1, 0], [0, 2, 1], [0, 0, 1]])
    f1 = {0: 10 / 11, 1: 2 / 3, 2: 2 / 3}
    for c, value in f1.items():
        assert s.per_class[c].f1 == pytest.approx(value)
    assert s.per_class[0].precision == 1.0
    assert s.per_class[2].recall == 1.0
    assert [s.per_class[c].support for c in (0, 1, 2)] == [6, 3, 1]
    assert s.macro.f1 == pytest.approx(sum(f1.values()) / 3)
    assert s.weighted.f1 == pytest.approx((6 * f1[0] + 3 * f1[1] + 1 * f1[2]) / 10)
    assert s.weighted.f1 != pytest.approx(s.macro.f1)


def test_three_classes_equal_sklearn() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    pred, gt = _three_class_example()
    s = semantic_scores(pred, gt)
    for average in ("macro", "weighted"):
        expected = metrics.precision_recall_fscore_support(
            gt.ravel(), pred.ravel(), average=average
        )
        got = s.macro if average == "macro" else s.weighted
        assert (got.precision, got.recall, got.f1) == pytest.approx(expected[:3])


def test_classes_subset_still_counts_errors_against_all_labels() -> None:
    pred, gt = _three_class_example()
    s = semantic_scores(pred, gt, classes=(1, 2))
    assert s.classes == (1, 2)
    assert set(s.per_class) == {1, 2}
    assert s.per_class[1].fp == 1  # the background voxel predicted as 1
    assert s.macro.f1 == pytest.approx(2 / 3)


def test_empty_class_conventions() -> None:
    zeros = np.zeros(6, np.uint8)
    s = semantic_scores(zeros, zeros, classes=(1,))
    absent = s.per_class[1]
    assert absent.support == 0
    assert all(math.isnan(v) for v in (absent.dice, absent.iou, absent.precision, absent.recall))
    assert math.isnan(s.macro.dice)

    gt = np.array([0, 1, 1, 0, 0, 0])
    missed = semantic_scores(zeros, gt).per_class[1]  # never predicted
    assert (missed.dice, missed.iou, missed.recall, missed.f1) == (0.0, 0.0, 0.0, 0.0)
    assert math.isnan(missed.precision)
    spurious = semantic_scores(gt, zeros, classes=(1,)).per_class[1]  # not in gt
    assert (spurious.dice, spurious.precision) == (0.0, 0.0)
    assert math.isnan(spurious.recall)


def test_nan_classes_are_left_out_of_averages() -> None:
    gt = np.array([1, 1, 0, 0])
    pred = np.array([1, 0, 0, 0])
    s = semantic_scores(pred, gt, classes=(1, 7))  # class 7 in neither image
    assert s.macro.dice == pytest.approx(s.per_class[1].dice)
    assert s.weighted.dice == pytest.approx(s.per_class[1].dice)


def test_ignore_label_removes_voxels() -> None:
    gt = np.array([[1, 1, 255, 255], [0, 0, 255, 2]])
    pred = np.array([[1, 0, 1, 2], [0, 0, 0, 2]])
    s = semantic_scores(pred, gt, ignore_label=255)
    assert (s.n_voxels, s.n_ignored) == (5, 3)
    assert 255 not in s.labels
    assert (s.per_class[1].tp, s.per_class[1].fp, s.per_class[1].fn) == (1, 0, 1)
    assert s.per_class[2].dice == 1.0
    keep = gt != 255
    assert s.per_class == semantic_scores(pred[keep], gt[keep]).per_class


def test_semantic_bad_input() -> None:
    labels = np.zeros(4, np.uint8)
    with pytest.raises(InvalidVolumeError, match="integer"):
        semantic_scores(labels.astype(float), labels)
    with pytest.raises(ConfigError, match="ignore_label"):
        semantic_scores(labels, labels, classes=(0, 9), ignore_label=9)
    with pytest.raises(InvalidVolumeError, match="instance"):
        semantic_scores(np.arange(2000), np.arange(2000))


# ------------------------------------------------------------------ VI and adapted Rand


def test_vi_split_merge_by_hand() -> None:
    gt = np.array([1, 1, 1, 1, 2, 2, 2, 2])
    split = np.array([1, 1, 2, 2, 3, 3, 4, 4])  # each GT object cut in half: 1 bit
    merged = np.ones(8, np.int64)  # both GT objects merged: 1 bit
    assert variation_of_information(split, gt) == pytest.approx((1.0, 0.0))
    assert variation_of_information(merged, gt) == pytest.approx((0.0, 1.0))
    assert variation_of_information(gt, gt) == (0.0, 0.0)


def _random_labels(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gt = np.kron(rng.integers(0, 6, size=(3, 4, 4)), np.ones((4, 3, 3), np.int64))
    pred = gt * 3 + (rng.random(gt.shape) < 0.2) * rng.integers(1, 3, size=gt.shape)
    pred[rng.random(gt.shape) < 0.1] = 0
    return pred.astype(np.uint32), gt.astype(np.uint16)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("ignore", [(0,), (), (0, 3)])
def test_vi_and_are_equal_skimage(seed: int, ignore: tuple[int, ...]) -> None:
    pred, gt = _random_labels(seed)
    # skimage returns (H(image1 | image0), H(image0 | image1)) = (split, merge) here
    expected_vi = sk_variation_of_information(gt, pred, ignore_labels=ignore)
    assert variation_of_information(pred, gt, ignore_gt=ignore) == pytest.approx(
        tuple(expected_vi), abs=1e-12
    )
    expected_are = sk_adapted_rand_error(gt, pred, ignore_labels=ignore)
    assert adapted_rand_error(pred, gt, ignore_gt=ignore) == pytest.approx(expected_are)


def test_are_precision_and_recall_directions() -> None:
    gt = np.array([1, 1, 1, 1, 2, 2, 2, 2])
    split = np.array([1, 1, 2, 2, 3, 3, 4, 4])
    merged = np.ones(8, np.int64)
    are_s, precision_s, recall_s = adapted_rand_error(split, gt)
    assert (precision_s, recall_s) == pytest.approx((4 / 12, 1.0))
    _, precision_m, recall_m = adapted_rand_error(merged, gt)
    assert (precision_m, recall_m) == pytest.approx((1.0, 24 / 56))
    assert are_s == pytest.approx(1 - 8 / (12 + 4))
    assert adapted_rand_error(gt, gt) == (0.0, 1.0, 1.0)


def test_vi_and_are_when_everything_is_ignored() -> None:
    zeros = np.zeros(5, np.uint8)
    assert all(math.isnan(v) for v in variation_of_information(zeros, zeros))
    assert all(math.isnan(v) for v in adapted_rand_error(zeros, zeros))


# ------------------------------------------------------------------ evaluate

_REQUIRED_KEYS = {
    "dice",
    "iou",
    "precision",
    "recall",
    "f1_at",
    "hausdorff_mean_nm",
    "hausdorff_95_nm",
    "vi_split",
    "vi_merge",
    "adapted_rand_error",
    "per_class",
    "weighted_f1",
    "instances",
    "n_pred",
    "n_gt",
}


def _nuclei_scene() -> tuple[np.ndarray, np.ndarray]:
    gt = np.zeros((6, 16, 16), np.uint32)
    gt[1:5, 1:7, 1:7] = 10
    gt[1:5, 9:15, 1:7] = 20
    gt[1:5, 1:7, 9:15] = 30
    pred = np.zeros_like(gt)
    pred[1:5, 1:7, 1:7] = 4  # exact
    pred[1:5, 9:15, 1:5] = 5  # partial (IoU 4/6)
    pred[1:5, 10:14, 10:14] = 6  # extra object
    return pred, gt


def test_evaluate_instances_is_flat_and_json_ready() -> None:
    pred, gt = _nuclei_scene()
    report = evaluate(pred, gt, voxel_size=(50, 8, 8))
    assert set(report) >= _REQUIRED_KEYS
    json.dumps(report, allow_nan=False)
    assert report["mode"] == "instance"
    assert (report["n_pred"], report["n_gt"]) == (3, 3)
    assert list(report["f1_at"]) == ["0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9"]
    reference = match_instances(pred, gt)
    for row in reference.per_threshold:
        assert report["f1_at"][f"{row.threshold:g}"] == pytest.approx(row.f1)
    assert report["f1_at"]["0.5"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert report["f1_at"]["0.7"] == pytest.approx(2 * 1 / (2 * 1 + 2 + 2))
    assert len(report["instances"]) == 9
    assert report["instances"][4]["tp"] == 2
    # foreground voxels: gt 3 x 144, pred 144 + 96 + 64, overlap 144 + 96 + 0
    tp, fp, fn = 4 * (36 + 24), 4 * 16, 4 * (12 + 36)
    assert report["dice"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert report["precision"] == pytest.approx(tp / (tp + fp))
    assert report["recall"] == pytest.approx(tp / (tp + fn))
    assert report["weighted_f1"] == pytest.approx(report["dice"])
    assert set(report["per_class"]) == {"foreground"}
    assert report["hausdorff_95_nm"] > 0
    vi = variation_of_information(pred, gt)
    assert (report["vi_split"], report["vi_merge"]) == pytest.approx(vi)
    assert report["adapted_rand_error"] == pytest.approx(adapted_rand_error(pred, gt)[0])


def test_evaluate_binary_masks_use_connected_components() -> None:
    pred, gt = _nuclei_scene()
    report = evaluate(pred > 0, (gt > 0).astype(np.uint8), voxel_size=(50, 8, 8))
    json.dumps(report, allow_nan=False)
    assert report["mode"] == "semantic"
    assert set(report["per_class"]) == {"1"}
    assert (report["n_pred"], report["n_gt"]) == (3, 3)
    instance_report = evaluate(pred, gt, voxel_size=(50, 8, 8), instance=True)
    for key in ("dice", "iou", "precision", "recall", "hausdorff_95_nm", "f1_at", "vi_split"):
        assert report[key] == pytest.approx(instance_report[key])


def test_evaluate_multiclass_semantic() -> None:
    pred, gt = _three_class_example()
    pred3 = np.stack([pred] * 3)
    gt3 = np.stack([gt] * 3)
    report = evaluate(pred3, gt3, voxel_size=(40, 4, 4), instance=False)
    json.dumps(report, allow_nan=False)
    scores = semantic_scores(pred3, gt3, classes=(1, 2))
    assert report["dice"] == pytest.approx(scores.macro.dice)
    assert report["weighted_f1"] == pytest.approx(scores.weighted.f1)
    assert set(report["per_class"]) == {"1", "2"}
    assert report["confusion"]["labels"] == [0, 1, 2]
    assert report["confusion"]["matrix"] == scores.confusion.tolist()
    # one connected component per class in each image; class 1 IoU 2/4, class 2 1/2
    assert (report["n_pred"], report["n_gt"]) == (2, 2)
    assert report["f1_at"]["0.5"] == 1.0
    assert report["f1_at"]["0.6"] == 0.0
    with_classes = evaluate(pred3, gt3, voxel_size=(40, 4, 4), classes=(2,))
    assert with_classes["mode"] == "semantic"
    assert with_classes["dice"] == pytest.approx(scores.per_class[2].dice)


@pytest.mark.parametrize("instance", [True, False, "auto"])
def test_evaluate_empty_inputs(instance: bool | str) -> None:
    zeros = np.zeros((3, 5, 5), np.uint16)
    some = zeros.copy()
    some[1, 1:3, 1:3] = 4
    for pred, gt in ((zeros, zeros), (some, zeros), (zeros, some)):
        report = evaluate(pred, gt, voxel_size=10, instance=instance)  # type: ignore[arg-type]
        json.dumps(report, allow_nan=False)
        assert report["hausdorff_95_nm"] is None
        if gt is zeros and pred is zeros:
            assert report["dice"] is None
            assert report["f1_at"]["0.5"] is None
        else:
            assert report["dice"] == 0.0
            assert report["f1_at"]["0.5"] == 0.0


def test_evaluate_ignore_label() -> None:
    pred, gt = _nuclei_scene()
    gt[:, :, 8:] = np.where(gt[:, :, 8:] == 0, 99, gt[:, :, 8:])  # unannotated half
    gt[:, :, 8:][gt[:, :, 8:] == 30] = 99
    report = evaluate(pred, gt, voxel_size=(50, 8, 8), ignore_label=99)
    json.dumps(report, allow_nan=False)
    assert report["ignore_label"] == 99
    assert report["n_ignored"] == int(np.count_nonzero(gt == 99))
    assert (report["n_pred"], report["n_gt"]) == (2, 2)  # object 6 lies in the ignored half
    assert report["f1_at"]["0.5"] == 1.0
    assert report["precision"] == 1.0


def test_evaluate_bad_input() -> None:
    labels = np.zeros((2, 3, 4, 5), np.uint8)
    with pytest.raises(InvalidVolumeError, match="3-D"):
        evaluate(labels, labels, voxel_size=1)
    with pytest.raises(ConfigError, match="instance"):
        evaluate(labels[0], labels[0], voxel_size=1, instance="yes")  # type: ignore[arg-type]
    with pytest.raises(InvalidVolumeError, match="negative"):
        evaluate(labels[0].astype(np.int8) - 1, labels[0], voxel_size=1, instance=True)
