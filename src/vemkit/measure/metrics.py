"""Evaluation metrics the vEM / bioimage field reports, on NumPy label arrays.

- voxel level: :func:`semantic_scores` (Dice, IoU, precision, recall, F1 per class,
  macro and support-weighted averages, confusion matrix);
- object level: :func:`~vemkit.measure.matching.match_instances` (StarDist-style
  matching over IoU thresholds, F1, AP, panoptic quality);
- surface level: :func:`~vemkit.measure.hausdorff.hausdorff_distances` (ASSD, HD95,
  Hausdorff, in nm);
- partition level: :func:`variation_of_information` (CREMI split / merge) and
  :func:`adapted_rand_error` (as ``skimage.metrics.adapted_rand_error``);
- :func:`evaluate`: all of the above in one flat, JSON-ready dict.

Conventions for undefined values: a voxel-level ratio whose numerator and
denominator are both 0 is NaN (e.g. Dice when a class is absent from both images,
precision when a class is never predicted), as in nnU-Net and scikit-learn's
``zero_division=np.nan``; averages skip NaN entries. Object-level conventions are
StarDist's (see :class:`~vemkit.measure.matching.ThresholdScores`). :func:`evaluate`
writes NaN and infinite values as ``None``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from vemkit.errors import ConfigError, InvalidVolumeError
from vemkit.geometry import VoxelSize
from vemkit.measure.hausdorff import hausdorff_distances, surface_distances
from vemkit.measure.matching import (
    DEFAULT_THRESHOLDS,
    Criterion,
    InstanceScores,
    OverlapTable,
    ThresholdScores,
    _check_criterion,
    _check_pair,
    _check_thresholds,
    _match_table,
    _overlap_table,
    _threshold_scores,
    match_instances,
    overlap_table,
)

__all__ = [
    "DEFAULT_THRESHOLDS",
    "Averages",
    "ClassScores",
    "InstanceScores",
    "OverlapTable",
    "SemanticScores",
    "ThresholdScores",
    "adapted_rand_error",
    "evaluate",
    "hausdorff_distances",
    "match_instances",
    "overlap_table",
    "semantic_scores",
    "surface_distances",
    "variation_of_information",
]

# A dense confusion matrix beyond this many labels is almost surely instance labels.
_MAX_SEMANTIC_LABELS = 1024


def _div(num: float, den: float) -> float:
    """``num / den``, NaN when the denominator is 0."""
    return float(num) / float(den) if den > 0 else float("nan")


def _nanmean(values: Iterable[float]) -> float:
    finite_or_inf = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite_or_inf)) if finite_or_inf else float("nan")


@dataclass(frozen=True)
class ClassScores:
    """Voxel-level scores of one class (or of the pooled foreground).

    Attributes
    ----------
    tp, fp, fn : int
        Voxels of the class in both images, only in ``pred``, only in ``gt``.
    support : int
        Voxels of the class in ``gt`` (``tp + fn``).
    pred_support : int
        Voxels of the class in ``pred`` (``tp + fp``).
    dice : float
        ``2 tp / (2 tp + fp + fn)``; NaN if the class is absent from both images.
    iou : float
        ``tp / (tp + fp + fn)`` (Jaccard); NaN if absent from both.
    precision : float
        ``tp / (tp + fp)``; NaN if the class is never predicted.
    recall : float
        ``tp / (tp + fn)``; NaN if the class is absent from ``gt``.
    f1 : float
        Harmonic mean of precision and recall. At voxel level this equals ``dice``
        whenever both are defined; it is 0 (not NaN) when the class is in only one
        image.
    """

    tp: int
    fp: int
    fn: int
    support: int
    pred_support: int
    dice: float
    iou: float
    precision: float
    recall: float
    f1: float

    @classmethod
    def from_counts(cls, tp: int, fp: int, fn: int) -> ClassScores:
        """Build the scores from voxel counts."""
        tp, fp, fn = int(tp), int(fp), int(fn)
        return cls(
            tp=tp,
            fp=fp,
            fn=fn,
            support=tp + fn,
            pred_support=tp + fp,
            dice=_div(2 * tp, 2 * tp + fp + fn),
            iou=_div(tp, tp + fp + fn),
            precision=_div(tp, tp + fp),
            recall=_div(tp, tp + fn),
            f1=_div(2 * tp, 2 * tp + fp + fn),
        )

    def to_dict(self) -> dict[str, float | int]:
        """Return the fields as a plain dict (NaN kept)."""
        return asdict(self)


@dataclass(frozen=True)
class Averages:
    """Dice, IoU, precision, recall and F1 averaged over classes.

    Classes where a metric is NaN are left out of that metric's average; the average
    is NaN when no class has a value.
    """

    dice: float
    iou: float
    precision: float
    recall: float
    f1: float

    def to_dict(self) -> dict[str, float]:
        """Return the fields as a plain dict (NaN kept)."""
        return asdict(self)


_AVERAGED = ("dice", "iou", "precision", "recall", "f1")


def _macro(scores: Sequence[ClassScores]) -> Averages:
    return Averages(**{k: _nanmean(getattr(s, k) for s in scores) for k in _AVERAGED})


def _weighted(scores: Sequence[ClassScores]) -> Averages:
    values = {}
    for key in _AVERAGED:
        pairs = [(getattr(s, key), s.support) for s in scores if not math.isnan(getattr(s, key))]
        total = sum(w for _, w in pairs)
        values[key] = sum(v * w for v, w in pairs) / total if total > 0 else float("nan")
    return Averages(**values)


@dataclass(frozen=True)
class SemanticScores:
    """Result of :func:`semantic_scores`.

    Attributes
    ----------
    classes : tuple of int
        The scored classes, in the order of :attr:`per_class`.
    per_class : dict of int to ClassScores
        Scores of each scored class.
    macro : Averages
        Unweighted mean over :attr:`classes`.
    weighted : Averages
        Mean over :attr:`classes` weighted by ``support`` (GT voxel count), as
        scikit-learn's ``average="weighted"``.
    foreground : ClassScores
        Every non-zero label pooled against background 0 (for binary masks this is
        class 1).
    labels : tuple of int
        Row and column labels of :attr:`confusion`: every label found in either
        image (after removing ignored voxels) plus any requested class.
    confusion : (n_labels, n_labels) ndarray of int64
        ``confusion[i, j]`` = voxels with GT label ``labels[i]`` and predicted label
        ``labels[j]``.
    n_voxels : int
        Voxels scored.
    n_ignored : int
        Voxels left out because their GT label was ``ignore_label``.
    """

    classes: tuple[int, ...]
    per_class: dict[int, ClassScores]
    macro: Averages
    weighted: Averages
    foreground: ClassScores
    labels: tuple[int, ...]
    confusion: NDArray[np.int64] = field(repr=False)
    n_voxels: int
    n_ignored: int


def _ids_as_int(ids: NDArray[Any]) -> NDArray[np.int64]:
    return ids.astype(np.int64)


def _confusion(table: OverlapTable, extra: Sequence[int]) -> tuple[NDArray[np.int64], ...]:
    """Dense confusion matrix of a table over the sorted union of labels and ``extra``."""
    gt_ids = _ids_as_int(table.gt_ids)
    pred_ids = _ids_as_int(table.pred_ids)
    labels = np.union1d(np.union1d(gt_ids, pred_ids), np.asarray(extra, dtype=np.int64))
    if labels.size > _MAX_SEMANTIC_LABELS:
        raise InvalidVolumeError(
            f"found {labels.size} distinct labels; semantic scores expect a few class "
            "labels. For instance labels use match_instances or evaluate(instance=True)"
        )
    n = labels.size
    rows = np.searchsorted(labels, gt_ids[table.gt_index])
    cols = np.searchsorted(labels, pred_ids[table.pred_index])
    matrix = np.bincount(rows * n + cols, weights=table.counts, minlength=n * n)
    return labels, matrix.reshape(n, n).astype(np.int64)


def _scores_from_confusion(
    labels: NDArray[np.int64], matrix: NDArray[np.int64], label: int
) -> ClassScores:
    i = int(np.searchsorted(labels, label))
    tp = int(matrix[i, i])
    return ClassScores.from_counts(tp, int(matrix[:, i].sum()) - tp, int(matrix[i, :].sum()) - tp)


def _semantic_from_table(
    table: OverlapTable,
    classes: Sequence[int] | None,
    n_ignored: int,
) -> SemanticScores:
    labels, matrix = _confusion(table, classes or ())
    chosen = tuple(int(c) for c in labels) if classes is None else tuple(classes)
    per_class = {c: _scores_from_confusion(labels, matrix, c) for c in chosen}
    fg = labels != 0
    foreground = ClassScores.from_counts(
        int(matrix[np.ix_(fg, fg)].sum()),
        int(matrix[np.ix_(~fg, fg)].sum()),
        int(matrix[np.ix_(fg, ~fg)].sum()),
    )
    scores = list(per_class.values())
    return SemanticScores(
        classes=chosen,
        per_class=per_class,
        macro=_macro(scores),
        weighted=_weighted(scores),
        foreground=foreground,
        labels=tuple(int(x) for x in labels),
        confusion=matrix,
        n_voxels=table.n_voxels,
        n_ignored=n_ignored,
    )


def _check_classes(
    classes: Iterable[int] | None, ignore_label: int | None
) -> tuple[int, ...] | None:
    if classes is None:
        return None
    out: list[int] = []
    for c in classes:
        if isinstance(c, bool) or not isinstance(c, int | np.integer):
            raise ConfigError(f"classes must be integer labels, got {c!r}")
        if ignore_label is not None and int(c) == ignore_label:
            raise ConfigError(
                f"class {c} is also the ignore_label; drop it from classes or change ignore_label"
            )
        if int(c) not in out:
            out.append(int(c))
    if not out:
        raise ConfigError("classes is empty; give at least one class label or None for all")
    return tuple(out)


def semantic_scores(
    pred: NDArray[np.integer[Any]],
    gt: NDArray[np.integer[Any]],
    *,
    classes: Sequence[int] | None = None,
    ignore_label: int | None = None,
) -> SemanticScores:
    """Voxel-level Dice, IoU, precision, recall and F1 per class, with averages.

    Parameters
    ----------
    pred, gt : ndarray of int or bool (any shape, the same for both)
        Class label images (0 = background by convention; bool masks are 0/1).
    classes : sequence of int, optional
        Classes to score and average over. Default: every label present in either
        image, background included. Pass e.g. ``classes=(1, 2, 3)`` to leave
        background out of the averages. False positives and negatives are always
        counted against *all* labels, whichever classes are scored.
    ignore_label : int, optional
        GT label of unannotated voxels (sparse ground truth); they are removed from
        both images before counting.

    Returns
    -------
    SemanticScores
        Per-class scores, macro and support-weighted averages, pooled foreground,
        confusion matrix. A ratio with a zero denominator is NaN (see
        :class:`ClassScores`); averages skip NaN.

    Raises
    ------
    InvalidVolumeError
        If the arrays are not integer/bool, are empty, differ in shape, or carry
        more than 1024 distinct labels (instance labels, not classes).
    ConfigError
        If ``classes`` is empty or contains ``ignore_label``.

    Examples
    --------
    >>> s = semantic_scores(np.array([0, 1, 1, 0]), np.array([0, 1, 0, 1]))
    >>> s.per_class[1].dice, s.per_class[1].precision
    (0.5, 0.5)
    """
    pred_arr, gt_arr = _check_pair(pred, gt)
    chosen = _check_classes(classes, ignore_label)
    table = _overlap_table(pred_arr.ravel(), gt_arr.ravel())
    if ignore_label is not None:
        table = table.without_gt([ignore_label])
    return _semantic_from_table(table, chosen, gt_arr.size - table.n_voxels)


def _xlog2x_ratio(counts: NDArray[np.float64], totals: NDArray[np.float64], n: float) -> float:
    """``-sum(p_ij * log2(p_ij / p_i))`` with ``p = counts / n``."""
    return float(-(counts / n * np.log2(counts / totals)).sum())


def _vi_from_table(table: OverlapTable) -> tuple[float, float]:
    n = float(table.n_voxels)
    if n == 0:
        return float("nan"), float("nan")
    counts = table.counts.astype(np.float64)
    gt_sizes = table.gt_sizes.astype(np.float64)[table.gt_index]
    pred_sizes = table.pred_sizes.astype(np.float64)[table.pred_index]
    split = _xlog2x_ratio(counts, gt_sizes, n)
    merge = _xlog2x_ratio(counts, pred_sizes, n)
    # Rounding can leave -0.0 or -1e-17 for a perfect match; conditional entropy is >= 0.
    return (split if split > 0 else 0.0), (merge if merge > 0 else 0.0)


def _are_from_table(table: OverlapTable, alpha: float) -> tuple[float, float, float]:
    n = float(table.n_voxels)
    counts = table.counts.astype(np.float64)
    gt_sizes = table.gt_sizes.astype(np.float64)
    pred_sizes = table.pred_sizes.astype(np.float64)
    sum_p2 = float(counts @ counts) - n
    sum_gt2 = float(gt_sizes @ gt_sizes) - n
    sum_pred2 = float(pred_sizes @ pred_sizes) - n
    precision = _div(sum_p2, sum_gt2)
    recall = _div(sum_p2, sum_pred2)
    fscore = _div(sum_p2, alpha * sum_gt2 + (1.0 - alpha) * sum_pred2)
    return 1.0 - fscore, precision, recall


def variation_of_information(
    pred: NDArray[np.integer[Any]],
    gt: NDArray[np.integer[Any]],
    *,
    ignore_gt: Sequence[int] = (0,),
) -> tuple[float, float]:
    """Split and merge parts of the variation of information, in bits (CREMI).

    With ``X = pred`` (the candidate) and ``Y = gt``, ``VI = H(X|Y) + H(Y|X)`` and,
    as in CREMI's ``voi(reconstruction, groundtruth)``:

    - ``vi_split = H(pred | gt)``: grows when GT objects are split (over-segmentation);
    - ``vi_merge = H(gt | pred)``: grows when GT objects are merged (under-segmentation).

    Voxels whose GT label is in ``ignore_gt`` are left out (CREMI ignores GT
    background 0); predicted background is an ordinary segment. Logarithms are base 2,
    as in CREMI, gala and scikit-image. Equivalent call in scikit-image, which returns
    ``(H(image1 | image0), H(image0 | image1))``:
    ``skimage.metrics.variation_of_information(gt, pred, ignore_labels=ignore_gt)``
    ``== (vi_split, vi_merge)``.

    Parameters
    ----------
    pred, gt : ndarray of int (any shape, the same for both)
        Label images (any integer labels).
    ignore_gt : sequence of int, optional
        GT labels whose voxels are not scored. Default ``(0,)``.

    Returns
    -------
    vi_split, vi_merge : float
        Conditional entropies in bits (>= 0; 0 for identical partitions). NaN if
        every voxel is ignored.

    Examples
    --------
    >>> gt = np.array([1, 1, 1, 1, 2, 2, 2, 2])
    >>> variation_of_information(np.array([1, 1, 2, 2, 3, 3, 4, 4]), gt)
    (1.0, 0.0)
    """
    pred_arr, gt_arr = _check_pair(pred, gt)
    table = _overlap_table(pred_arr.ravel(), gt_arr.ravel()).without_gt(ignore_gt)
    return _vi_from_table(table)


def adapted_rand_error(
    pred: NDArray[np.integer[Any]],
    gt: NDArray[np.integer[Any]],
    *,
    ignore_gt: Sequence[int] = (0,),
    alpha: float = 0.5,
) -> tuple[float, float, float]:
    """Adapted Rand error (Arganda-Carreras et al. 2015), as scikit-image computes it.

    Same numbers as ``skimage.metrics.adapted_rand_error(gt, pred,
    ignore_labels=ignore_gt, alpha=alpha)``. With ``n_ij`` the contingency table
    (GT label ``i``, predicted label ``j``) over voxels not in ``ignore_gt``, ``g_i``
    and ``p_j`` its row and column sums, and ``S(v) = sum(v**2) - sum(v)`` (twice the
    number of voxel pairs in the same segment):

    - ``precision = S(n) / S(g)``: the fraction of GT same-object pairs that are
      also together in ``pred`` (drops with splits);
    - ``recall = S(n) / S(p)``: the fraction of predicted same-segment pairs that are
      also together in ``gt`` (drops with merges);
    - ``are = 1 - S(n) / (alpha S(g) + (1 - alpha) S(p))``.

    Parameters
    ----------
    pred, gt : ndarray of int (any shape, the same for both)
        Label images.
    ignore_gt : sequence of int, optional
        GT labels whose voxels are not scored. Default ``(0,)``.
    alpha : float, optional
        Weight of precision in the F-score, in [0, 1]. Default 0.5.

    Returns
    -------
    are, precision, recall : float
        In [0, 1]; 0/0 gives NaN (e.g. every scored voxel its own segment).

    Examples
    --------
    >>> adapted_rand_error(np.array([1, 1, 2, 2]), np.array([1, 1, 2, 2]))
    (0.0, 1.0, 1.0)
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise ConfigError(f"alpha must lie in [0, 1], got {alpha!r}")
    pred_arr, gt_arr = _check_pair(pred, gt)
    table = _overlap_table(pred_arr.ravel(), gt_arr.ravel()).without_gt(ignore_gt)
    return _are_from_table(table, float(alpha))


# --------------------------------------------------------------------------- evaluate


def _json_value(value: Any) -> Any:
    """Make ``value`` JSON-ready: NaN/inf -> None, NumPy scalars -> Python, keys -> str."""
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_json_value(v) for v in value.tolist()]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        number = float(value)
        return number if math.isfinite(number) else None
    return value


def _threshold_key(threshold: float) -> str:
    return f"{threshold:g}"


def _pooled(
    results: Sequence[InstanceScores], thresholds: tuple[float, ...]
) -> list[ThresholdScores]:
    """Add up matches over classes (micro average); one class gives its own scores."""
    n_pred = sum(r.n_pred for r in results)
    n_gt = sum(r.n_gt for r in results)
    pooled = []
    for k, threshold in enumerate(thresholds):
        rows = [r.per_threshold[k] for r in results]
        pooled.append(
            _threshold_scores(
                threshold,
                n_pred=n_pred,
                n_gt=n_gt,
                matched_gt=np.concatenate([s.matched_gt for s in rows]),
                matched_pred=np.concatenate([s.matched_pred for s in rows]),
                matched_score=np.concatenate([s.matched_score for s in rows]),
            )
        )
    return pooled


def _object_keys(per_threshold: Sequence[ThresholdScores]) -> dict[str, dict[str, float]]:
    return {
        "f1_at": {_threshold_key(s.threshold): s.f1 for s in per_threshold},
        "ap_at": {_threshold_key(s.threshold): s.ap for s in per_threshold},
        "pq_at": {_threshold_key(s.threshold): s.pq for s in per_threshold},
    }


def _distance_keys(distances: tuple[float, float, float]) -> dict[str, float]:
    return {
        "hausdorff_mean_nm": distances[0],
        "hausdorff_95_nm": distances[1],
        "hausdorff_max_nm": distances[2],
    }


def _is_binary(ids: NDArray[Any]) -> bool:
    return bool(np.isin(ids.astype(np.int64), (0, 1)).all())


def _components(mask: NDArray[np.bool_]) -> tuple[NDArray[np.int64], int]:
    """Face-connected components of a mask (the same connectivity as surfaces)."""
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    labels, count = ndimage.label(mask, structure=structure)
    return labels.astype(np.int64), int(count)


def evaluate(
    pred: NDArray[np.integer[Any]],
    gt: NDArray[np.integer[Any]],
    *,
    voxel_size: VoxelSize | Sequence[float] | float,
    instance: bool | Literal["auto"] = "auto",
    thresholds: float | Sequence[float] = DEFAULT_THRESHOLDS,
    criterion: Criterion = "iou",
    classes: Sequence[int] | None = None,
    ignore_label: int | None = None,
    percentile: float = 95.0,
) -> dict[str, Any]:
    """Compare a segmentation to ground truth with every metric in this module.

    Two modes:

    - **instance** (``instance=True``): labels are object ids, 0 background. Voxel
      metrics and surface distances compare the foregrounds (label != 0); objects are
      the labels.
    - **semantic** (``instance=False``): labels are classes. Voxel metrics and
      surface distances are computed per class and macro-averaged; objects are the
      face-connected components of each class, matched within their class and
      counted together (micro average over classes).

    ``instance="auto"`` picks semantic when ``classes`` is given or when both images
    are binary (only 0 and 1, ignoring ``ignore_label``), instance otherwise. A
    multi-class semantic map therefore needs ``instance=False`` or ``classes``.

    Parameters
    ----------
    pred, gt : (Z, Y, X) or (Y, X) ndarray of int or bool
        Prediction and ground truth of the same shape.
    voxel_size : VoxelSize or (z, y, x) sequence or float
        Voxel size in nm, for the surface distances.
    instance : bool or "auto", optional
        Mode, see above. Default "auto".
    thresholds : float or sequence of float, optional
        Object matching thresholds in (0, 1]. Default 0.1, ..., 0.9.
    criterion : {"iou", "iot", "iop"}, optional
        Object matching score. Default "iou".
    classes : sequence of int, optional
        Semantic mode only: classes to score. Default: every non-zero label present
        (class 1 if there is none).
    ignore_label : int, optional
        GT label of unannotated voxels; removed from every metric (predicted objects
        are clipped to the annotated region).
    percentile : float, optional
        Percentile of the second surface distance. Default 95.

    Returns
    -------
    dict
        Flat, JSON-ready (NaN and inf become ``None``) with the keys ``mode``,
        ``criterion``, ``thresholds``, ``voxel_size_nm``, ``ignore_label``,
        ``n_voxels``, ``n_ignored``; ``dice``, ``iou``, ``precision``, ``recall``
        (foreground in instance mode, macro over ``classes`` in semantic mode),
        ``weighted_f1`` (support-weighted voxel F1); ``f1_at``, ``ap_at``, ``pq_at``
        (threshold string such as ``"0.5"`` -> object F1, AP = TP/(TP+FP+FN),
        panoptic quality); ``hausdorff_mean_nm``, ``hausdorff_95_nm``,
        ``hausdorff_max_nm`` (semantic: mean over classes); ``vi_split``,
        ``vi_merge``, ``adapted_rand_error``, ``adapted_rand_precision``,
        ``adapted_rand_recall`` (on the objects, GT background ignored);
        ``n_pred``, ``n_gt`` (objects); ``instances`` (list of per-threshold rows,
        see :meth:`InstanceScores.to_records`); ``per_class`` (key -> voxel scores,
        surface distances, object counts and ``f1_at``; the key is ``"foreground"``
        in instance mode and the class label otherwise); ``confusion``
        (``{"labels": [...], "matrix": [[...]]}``, rows GT).

    Raises
    ------
    InvalidVolumeError
        For arrays that are not integer/bool, empty, of different shapes or not 2-D
        / 3-D, or negative labels in instance mode.
    ConfigError
        For invalid thresholds, criterion, classes or percentile.

    Examples
    --------
    >>> gt = np.zeros((1, 6, 6), np.uint8); gt[0, 1:4, 1:4] = 1
    >>> r = evaluate(gt, gt, voxel_size=(30, 5, 5))
    >>> r["mode"], r["dice"], r["f1_at"]["0.5"], r["hausdorff_95_nm"]
    ('semantic', 1.0, 1.0, 0.0)
    """
    pred_arr, gt_arr = _check_pair(pred, gt)
    vs = VoxelSize.coerce(voxel_size)
    if pred_arr.ndim not in (2, 3):
        raise InvalidVolumeError(
            f"evaluate needs 2-D (y, x) or 3-D (z, y, x) arrays, got {pred_arr.ndim} dimensions"
        )
    thresholds_t = _check_thresholds(thresholds)
    criterion_c = _check_criterion(criterion)
    chosen = _check_classes(classes, ignore_label)
    if not 0.0 <= float(percentile) <= 100.0:
        raise ConfigError(f"percentile must lie in [0, 100], got {percentile!r}")
    if instance not in (True, False, "auto"):
        raise ConfigError(f"instance must be True, False or 'auto', got {instance!r}")

    table = _overlap_table(pred_arr.ravel(), gt_arr.ravel())
    if ignore_label is not None:
        table = table.without_gt([ignore_label])
    n_ignored = gt_arr.size - table.n_voxels
    ignored = (gt_arr == ignore_label) if ignore_label is not None else None

    if instance == "auto":
        is_instance = chosen is None and not (
            _is_binary(table.gt_ids) and _is_binary(table.pred_ids)
        )
    else:
        is_instance = bool(instance)

    if is_instance:
        parts = _instance_parts(
            pred_arr,
            gt_arr,
            table,
            ignored,
            voxel_size=vs,
            thresholds=thresholds_t,
            criterion=criterion_c,
            percentile=percentile,
            n_ignored=n_ignored,
        )
    else:
        if chosen is None:
            present = np.union1d(table.gt_ids.astype(np.int64), table.pred_ids.astype(np.int64))
            chosen = tuple(int(c) for c in present if c not in (0, ignore_label)) or (1,)
        parts = _class_parts(
            pred_arr,
            gt_arr,
            table,
            ignored,
            classes=chosen,
            voxel_size=vs,
            thresholds=thresholds_t,
            criterion=criterion_c,
            percentile=percentile,
            n_ignored=n_ignored,
        )

    vi_split, vi_merge = _vi_from_table(parts.object_table)
    are, are_precision, are_recall = _are_from_table(parts.object_table, 0.5)
    semantic, summary = parts.semantic, parts.summary
    result_dict: dict[str, Any] = {
        "mode": "instance" if is_instance else "semantic",
        "criterion": criterion_c,
        "thresholds": list(thresholds_t),
        "voxel_size_nm": list(vs.as_tuple()),
        "ignore_label": ignore_label,
        "n_voxels": semantic.n_voxels,
        "n_ignored": n_ignored,
        "dice": summary.dice,
        "iou": summary.iou,
        "precision": summary.precision,
        "recall": summary.recall,
        "weighted_f1": parts.weighted_f1,
        **_object_keys(parts.per_threshold),
        **_distance_keys(parts.distances),
        "vi_split": vi_split,
        "vi_merge": vi_merge,
        "adapted_rand_error": are,
        "adapted_rand_precision": are_precision,
        "adapted_rand_recall": are_recall,
        "n_pred": parts.n_pred,
        "n_gt": parts.n_gt,
        "instances": [
            {"criterion": criterion_c, "n_pred": parts.n_pred, "n_gt": parts.n_gt, **s.to_dict()}
            for s in parts.per_threshold
        ],
        "per_class": parts.per_class,
        "confusion": {"labels": list(semantic.labels), "matrix": semantic.confusion},
    }
    return _json_value(result_dict)


def _binary_table(table: OverlapTable) -> OverlapTable:
    """Collapse every non-zero label of a table to 1 (foreground vs background)."""
    gt_fg = (table.gt_ids != 0).astype(np.intp)[table.gt_index]
    pred_fg = (table.pred_ids != 0).astype(np.intp)[table.pred_index]
    counts = np.bincount(gt_fg * 2 + pred_fg, weights=table.counts, minlength=4).astype(np.int64)
    keys = np.flatnonzero(counts)
    return OverlapTable(
        gt_ids=np.array([0, 1], dtype=np.int64),
        pred_ids=np.array([0, 1], dtype=np.int64),
        gt_index=(keys // 2).astype(np.intp),
        pred_index=(keys % 2).astype(np.intp),
        counts=counts[keys],
    )


@dataclass(frozen=True)
class _Parts:
    """What the two modes of :func:`evaluate` compute differently."""

    semantic: SemanticScores
    summary: ClassScores | Averages
    weighted_f1: float
    per_threshold: Sequence[ThresholdScores]
    n_pred: int
    n_gt: int
    distances: tuple[float, float, float]
    per_class: dict[str, Any]
    object_table: OverlapTable


def _instance_parts(
    pred: NDArray[Any],
    gt: NDArray[Any],
    table: OverlapTable,
    ignored: NDArray[np.bool_] | None,
    *,
    voxel_size: VoxelSize,
    thresholds: tuple[float, ...],
    criterion: Criterion,
    percentile: float,
    n_ignored: int,
) -> _Parts:
    """Instance mode: foreground voxel scores, labels as objects."""
    for name, ids in (("pred", table.pred_ids), ("gt", table.gt_ids)):
        if ids.dtype != np.bool_ and ids.size and ids.min() < 0:
            raise InvalidVolumeError(
                f"{name} contains negative labels (minimum {ids.min()}); instance labels "
                "must be >= 0 with 0 as background (or use instance=False for classes)"
            )
    matched = _match_table(table, thresholds, criterion)
    semantic = _semantic_from_table(_binary_table(table), (1,), n_ignored)
    foreground = semantic.per_class[1]
    pred_fg = pred != 0
    gt_fg = gt != 0
    if ignored is not None:
        pred_fg &= ~ignored
        gt_fg &= ~ignored
    distances = hausdorff_distances(pred_fg, gt_fg, voxel_size=voxel_size, percentile=percentile)
    per_class = {
        "foreground": {
            **foreground.to_dict(),
            **_distance_keys(distances),
            "n_pred": matched.n_pred,
            "n_gt": matched.n_gt,
            **_object_keys(matched.per_threshold),
        }
    }
    return _Parts(
        semantic=semantic,
        summary=foreground,
        weighted_f1=foreground.f1,
        per_threshold=matched.per_threshold,
        n_pred=matched.n_pred,
        n_gt=matched.n_gt,
        distances=distances,
        per_class=per_class,
        object_table=table.without_gt([0]),
    )


def _class_parts(
    pred: NDArray[Any],
    gt: NDArray[Any],
    table: OverlapTable,
    ignored: NDArray[np.bool_] | None,
    *,
    classes: tuple[int, ...],
    voxel_size: VoxelSize,
    thresholds: tuple[float, ...],
    criterion: Criterion,
    percentile: float,
    n_ignored: int,
) -> _Parts:
    """Semantic mode: per-class voxel scores, connected components as objects."""
    semantic = _semantic_from_table(table, classes, n_ignored)
    pred_objects = np.zeros(pred.shape, np.int64)
    gt_objects = np.zeros(gt.shape, np.int64)
    offset_pred = offset_gt = 0
    per_class: dict[str, Any] = {}
    results = []
    distances = []
    for c in classes:
        pred_c = pred == c
        gt_c = gt == c  # never true on ignored voxels: classes exclude ignore_label
        if ignored is not None:
            pred_c &= ~ignored
        distances_c = hausdorff_distances(
            pred_c, gt_c, voxel_size=voxel_size, percentile=percentile
        )
        pred_lab, n_p = _components(pred_c)
        gt_lab, n_g = _components(gt_c)
        result = match_instances(pred_lab, gt_lab, thresholds=thresholds, criterion=criterion)
        pred_objects[pred_c] = pred_lab[pred_c] + offset_pred
        gt_objects[gt_c] = gt_lab[gt_c] + offset_gt
        offset_pred += n_p
        offset_gt += n_g
        results.append(result)
        distances.append(distances_c)
        per_class[str(c)] = {
            **semantic.per_class[c].to_dict(),
            **_distance_keys(distances_c),
            "n_pred": result.n_pred,
            "n_gt": result.n_gt,
            **_object_keys(result.per_threshold),
        }
    per_threshold = _pooled(results, thresholds)
    return _Parts(
        semantic=semantic,
        summary=semantic.macro,
        weighted_f1=semantic.weighted.f1,
        per_threshold=per_threshold,
        n_pred=sum(r.n_pred for r in results),
        n_gt=sum(r.n_gt for r in results),
        distances=(
            _nanmean(d[0] for d in distances),
            _nanmean(d[1] for d in distances),
            _nanmean(d[2] for d in distances),
        ),
        per_class=per_class,
        # Ignored voxels are 0 in gt_objects, so dropping GT background drops them too.
        object_table=_overlap_table(pred_objects.ravel(), gt_objects.ravel()).without_gt([0]),
    )
