"""Object-level comparison of two instance label images (StarDist-style matching).

Everything is built on one sparse contingency table of overlapping label pairs
(:func:`overlap_table`), computed with a single pass over the voxels. Matching then
works on the table only, so its cost depends on the number of objects, not on the
volume size.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import fastremap
import numpy as np
from numpy.typing import NDArray
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components

from vemkit.errors import ConfigError, InvalidVolumeError

__all__ = [
    "DEFAULT_THRESHOLDS",
    "InstanceScores",
    "OverlapTable",
    "ThresholdScores",
    "match_instances",
    "overlap_table",
]

#: IoU thresholds reported by default (0.1, 0.2, ..., 0.9), written as literals so
#: that ``0.3`` is the double nearest to 3/10 and not ``0.1 * 3``.
DEFAULT_THRESHOLDS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)

Criterion = Literal["iou", "iot", "iop"]
_CRITERIA = ("iou", "iot", "iop")

# A pair is accepted when score >= threshold - _THRESHOLD_TOL. The tolerance only
# absorbs floating-point noise in computed thresholds (0.1 * 3 == 0.30000000000000004);
# two different ratios of voxel counts are never this close for realistic volumes.
_THRESHOLD_TOL = 1e-12

# np.bincount over the dense pair-key range beats sorting the keys while that range
# is no larger than this or than the number of voxels (so memory stays O(voxels)).
_DENSE_KEYS_MIN = 1 << 20


def _as_label_array(name: str, array: Any) -> NDArray[Any]:
    """Return ``array`` as an ndarray of integers or bools; raise for anything else."""
    arr = np.asarray(array)
    if arr.dtype != np.bool_ and not np.issubdtype(arr.dtype, np.integer):
        raise InvalidVolumeError(
            f"{name} must be an integer (or boolean) label array, got dtype {arr.dtype}; "
            "round or threshold it first, e.g. labels.astype(np.uint32)"
        )
    if arr.size == 0:
        raise InvalidVolumeError(f"{name} is empty (shape {arr.shape}); pass a non-empty volume")
    return arr


def _check_pair(pred: Any, gt: Any) -> tuple[NDArray[Any], NDArray[Any]]:
    """Validate a prediction / ground-truth pair of label arrays of equal shape."""
    pred_arr = _as_label_array("pred", pred)
    gt_arr = _as_label_array("gt", gt)
    if pred_arr.shape != gt_arr.shape:
        raise InvalidVolumeError(
            f"pred and gt must have the same shape, got pred {pred_arr.shape} and "
            f"gt {gt_arr.shape}; crop or resample one of them first"
        )
    return pred_arr, gt_arr


def _check_thresholds(thresholds: float | Iterable[float]) -> tuple[float, ...]:
    values: tuple[Any, ...] = (
        (thresholds,) if isinstance(thresholds, int | float | np.number) else tuple(thresholds)
    )
    if not values:
        raise ConfigError("thresholds is empty; give at least one value in (0, 1]")
    out = []
    for value in values:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"matching thresholds must be numbers, got {value!r}") from None
        if not 0.0 < number <= 1.0:
            raise ConfigError(f"every matching threshold must lie in (0, 1], got {value!r}")
        out.append(number)
    return tuple(out)


def _check_criterion(criterion: str) -> Criterion:
    if criterion not in _CRITERIA:
        raise ConfigError(
            f"criterion must be one of {', '.join(map(repr, _CRITERIA))}, got {criterion!r}"
        )
    return criterion  # type: ignore[return-value]


@dataclass(frozen=True)
class OverlapTable:
    """Sparse contingency table of two label images of the same shape.

    Entry ``k`` says that ``counts[k]`` voxels carry label ``gt_ids[gt_index[k]]`` in
    the ground truth and ``pred_ids[pred_index[k]]`` in the prediction. Only pairs
    that actually overlap are stored; background (0) is an ordinary label here.

    Attributes
    ----------
    gt_ids, pred_ids : (n,) ndarray
        Sorted distinct labels of each image (dtype of the input).
    gt_index, pred_index : (nnz,) ndarray of intp
        Row and column of each stored pair, indices into ``gt_ids`` / ``pred_ids``.
    counts : (nnz,) ndarray of int64
        Number of voxels of each pair (> 0).
    """

    gt_ids: NDArray[Any]
    pred_ids: NDArray[Any]
    gt_index: NDArray[np.intp]
    pred_index: NDArray[np.intp]
    counts: NDArray[np.int64]

    @property
    def n_voxels(self) -> int:
        """Number of voxels counted in the table."""
        return int(self.counts.sum())

    @property
    def gt_sizes(self) -> NDArray[np.int64]:
        """Voxel count of each label in ``gt_ids``, shape ``(len(gt_ids),)``."""
        return np.bincount(self.gt_index, self.counts, minlength=self.gt_ids.size).astype(np.int64)

    @property
    def pred_sizes(self) -> NDArray[np.int64]:
        """Voxel count of each label in ``pred_ids``, shape ``(len(pred_ids),)``."""
        return np.bincount(self.pred_index, self.counts, minlength=self.pred_ids.size).astype(
            np.int64
        )

    def without_gt(self, labels: Iterable[int]) -> OverlapTable:
        """Return the table without the voxels whose ground-truth label is in ``labels``.

        Labels that no longer own any voxel (in either image) are dropped, so a
        predicted object lying entirely in an ignored region disappears.
        """
        drop = np.asarray(list(labels))
        if drop.size == 0:
            return self
        keep = ~np.isin(self.gt_ids[self.gt_index], drop)
        return _compact(
            self.gt_ids,
            self.pred_ids,
            self.gt_index[keep],
            self.pred_index[keep],
            self.counts[keep],
        )


def _compact(
    gt_ids: NDArray[Any],
    pred_ids: NDArray[Any],
    gt_index: NDArray[np.intp],
    pred_index: NDArray[np.intp],
    counts: NDArray[np.int64],
) -> OverlapTable:
    """Build a table keeping only the labels that still appear in some pair."""
    g_used, g_new = np.unique(gt_index, return_inverse=True)
    p_used, p_new = np.unique(pred_index, return_inverse=True)
    return OverlapTable(
        gt_ids=gt_ids[g_used],
        pred_ids=pred_ids[p_used],
        gt_index=g_new.astype(np.intp),
        pred_index=p_new.astype(np.intp),
        counts=counts,
    )


def overlap_table(pred: NDArray[Any], gt: NDArray[Any]) -> OverlapTable:
    """Count the voxels of every overlapping (ground truth, prediction) label pair.

    One linear pass over the voxels (``fastremap.unique`` to number the labels, then
    ``np.bincount`` or ``np.unique`` on paired codes); no loop over objects.

    Parameters
    ----------
    pred, gt : ndarray of int or bool, same shape
        Label images; any integer values, 0 is treated like any other label.

    Returns
    -------
    OverlapTable
        The sparse contingency table.

    Examples
    --------
    >>> t = overlap_table(np.array([0, 1, 1, 2]), np.array([0, 5, 5, 5]))
    >>> t.gt_ids.tolist(), t.pred_ids.tolist(), t.counts.tolist()
    ([0, 5], [0, 1, 2], [1, 2, 1])
    """
    pred_arr, gt_arr = _check_pair(pred, gt)
    return _overlap_table(pred_arr.ravel(), gt_arr.ravel())


def _overlap_table(pred: NDArray[Any], gt: NDArray[Any]) -> OverlapTable:
    """:func:`overlap_table` on validated 1-D arrays."""
    pred_ids, pred_codes = fastremap.unique(pred, return_inverse=True)
    gt_ids, gt_codes = fastremap.unique(gt, return_inverse=True)
    n_pred = int(pred_ids.size)
    n_keys = int(gt_ids.size) * n_pred
    keys = gt_codes.astype(np.int64, copy=False) * n_pred + pred_codes.astype(np.int64)
    if n_keys <= max(_DENSE_KEYS_MIN, keys.size):
        dense = np.bincount(keys, minlength=n_keys)
        pairs = np.flatnonzero(dense)
        counts = dense[pairs]
    else:
        pairs, counts = np.unique(keys, return_counts=True)
    return OverlapTable(
        gt_ids=gt_ids,
        pred_ids=pred_ids,
        gt_index=(pairs // n_pred).astype(np.intp),
        pred_index=(pairs % n_pred).astype(np.intp),
        counts=counts.astype(np.int64),
    )


@dataclass(frozen=True)
class ThresholdScores:
    """Object-level scores at one matching threshold.

    Counts follow StarDist: ``tp`` matched pairs, ``fp = n_pred - tp``,
    ``fn = n_gt - tp``. Ratios with ``tp == 0`` are 0 (StarDist's convention) unless
    *both* images have no object, where every ratio is NaN (nothing to score).

    Attributes
    ----------
    threshold : float
        Minimum score (criterion value) of an accepted pair; ``score >= threshold``.
    tp, fp, fn : int
        True positives (matched pairs), unmatched predictions, unmatched GT objects.
    precision, recall, f1 : float
        ``tp/(tp+fp)``, ``tp/(tp+fn)``, ``2tp/(2tp+fp+fn)``.
    ap : float
        StarDist's "accuracy", the DSB 2018 / Cellpose "average precision":
        ``tp/(tp+fp+fn)``.
    mean_matched_score : float
        Mean criterion value (IoU for ``criterion="iou"``) over the matched pairs; the
        segmentation quality SQ of Kirillov et al. (2019).
    mean_true_score : float
        Sum of matched scores divided by ``n_gt``.
    rq, sq, pq : float
        Recognition quality (= ``f1``), segmentation quality (= ``mean_matched_score``)
        and panoptic quality ``pq = sq * rq = sum(matched scores)/(tp + fp/2 + fn/2)``.
    matched_gt, matched_pred : (tp,) ndarray
        Labels of the matched pairs (dtype of the inputs).
    matched_score : (tp,) ndarray of float64
        Criterion value of each matched pair.
    """

    threshold: float
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    ap: float
    mean_matched_score: float
    mean_true_score: float
    sq: float
    rq: float
    pq: float
    matched_gt: NDArray[Any] = field(repr=False)
    matched_pred: NDArray[Any] = field(repr=False)
    matched_score: NDArray[np.float64] = field(repr=False)

    def to_dict(self) -> dict[str, float | int]:
        """Return the scalar fields as a plain dict (NaN kept as ``float('nan')``)."""
        return {
            "threshold": self.threshold,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "ap": self.ap,
            "mean_matched_score": self.mean_matched_score,
            "mean_true_score": self.mean_true_score,
            "sq": self.sq,
            "rq": self.rq,
            "pq": self.pq,
        }


@dataclass(frozen=True)
class InstanceScores:
    """Result of :func:`match_instances`.

    Attributes
    ----------
    criterion : {"iou", "iot", "iop"}
        Pair score: intersection over union, over the GT object, or over the
        predicted object.
    n_pred, n_gt : int
        Number of objects (non-zero labels) in each image.
    per_threshold : tuple of ThresholdScores
        One entry per threshold, in the order given.
    pair_gt, pair_pred : (n_pairs,) ndarray
        Labels of every overlapping pair of objects (background excluded).
    pair_score : (n_pairs,) ndarray of float64
        Criterion value of each overlapping pair.
    """

    criterion: Criterion
    n_pred: int
    n_gt: int
    per_threshold: tuple[ThresholdScores, ...]
    pair_gt: NDArray[Any] = field(repr=False)
    pair_pred: NDArray[Any] = field(repr=False)
    pair_score: NDArray[np.float64] = field(repr=False)

    @property
    def thresholds(self) -> tuple[float, ...]:
        """The thresholds, in the order of :attr:`per_threshold`."""
        return tuple(s.threshold for s in self.per_threshold)

    def at(self, threshold: float) -> ThresholdScores:
        """Return the scores at ``threshold`` (must be one of :attr:`thresholds`)."""
        for scores in self.per_threshold:
            if abs(scores.threshold - threshold) <= _THRESHOLD_TOL:
                return scores
        raise KeyError(f"threshold {threshold!r} was not evaluated; have {self.thresholds}")

    def to_records(self) -> list[dict[str, float | int]]:
        """Return the per-threshold table as a list of dicts (one row per threshold)."""
        rows = []
        for scores in self.per_threshold:
            row: dict[str, float | int] = {
                "criterion": self.criterion,  # type: ignore[dict-item]
                "n_pred": self.n_pred,
                "n_gt": self.n_gt,
            }
            row.update(scores.to_dict())
            rows.append(row)
        return rows


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den > 0 else 0.0


def _threshold_scores(
    threshold: float,
    *,
    n_pred: int,
    n_gt: int,
    matched_gt: NDArray[Any],
    matched_pred: NDArray[Any],
    matched_score: NDArray[np.float64],
) -> ThresholdScores:
    """Turn the matched pairs at one threshold into StarDist's statistics."""
    tp = int(matched_score.size)
    fp = n_pred - tp
    fn = n_gt - tp
    total = float(matched_score.sum())
    if n_pred == 0 and n_gt == 0:
        nan = float("nan")
        precision = recall = f1 = ap = mean_matched = mean_true = pq = nan
    elif tp == 0:
        precision = recall = f1 = ap = mean_matched = mean_true = pq = 0.0
    else:
        precision = tp / (tp + fp)
        recall = tp / (tp + fn)
        f1 = 2 * tp / (2 * tp + fp + fn)
        ap = tp / (tp + fp + fn)
        mean_matched = total / tp
        mean_true = _ratio(total, n_gt)
        pq = total / (tp + fp / 2 + fn / 2)
    return ThresholdScores(
        threshold=threshold,
        tp=tp,
        fp=fp,
        fn=fn,
        precision=precision,
        recall=recall,
        f1=f1,
        ap=ap,
        mean_matched_score=mean_matched,
        mean_true_score=mean_true,
        sq=mean_matched,
        rq=f1,
        pq=pq,
        matched_gt=matched_gt,
        matched_pred=matched_pred,
        matched_score=matched_score,
    )


def _optimal_matching(
    rows: NDArray[np.intp],
    cols: NDArray[np.intp],
    scores: NDArray[np.float64],
    n_rows: int,
    n_cols: int,
) -> NDArray[np.intp]:
    """Return the indices of the edges in a maximum matching of a bipartite graph.

    The matching first maximises the number of matched pairs and, among those, the
    sum of their scores (StarDist's cost ``-(score >= t) - score / (2 * n)``
    restricted to the eligible pairs). The graph is split into
    connected components; a component with a single edge is matched directly, the
    others are solved with the Hungarian algorithm on their (small) dense submatrix.
    """
    n_edges = rows.size
    if n_edges == 0:
        return np.empty(0, dtype=np.intp)
    graph = coo_array(
        (np.ones(n_edges, dtype=np.int8), (rows, n_rows + cols)),
        shape=(n_rows + n_cols, n_rows + n_cols),
    )
    _, component = connected_components(graph, directed=False)
    edge_component = component[rows]
    edges_per_component = np.bincount(edge_component)
    chosen = [np.flatnonzero(edges_per_component[edge_component] == 1)]
    multi = np.flatnonzero(edges_per_component[edge_component] > 1)
    if multi.size:
        multi = multi[np.argsort(edge_component[multi], kind="stable")]
        bounds = np.flatnonzero(np.diff(edge_component[multi])) + 1
        for group in np.split(multi, bounds):
            r_ids, r_local = np.unique(rows[group], return_inverse=True)
            c_ids, c_local = np.unique(cols[group], return_inverse=True)
            # Each match is worth 1 plus a tie-breaking bonus < 1/(2k); k matches at
            # most, so the bonus never outweighs one more match.
            weight = np.zeros((r_ids.size, c_ids.size))
            weight[r_local, c_local] = 1.0 + scores[group] / (2.0 * min(r_ids.size, c_ids.size))
            lookup = np.full((r_ids.size, c_ids.size), -1, dtype=np.intp)
            lookup[r_local, c_local] = group
            r_sel, c_sel = linear_sum_assignment(weight, maximize=True)
            picked = lookup[r_sel, c_sel]
            chosen.append(picked[picked >= 0])
    return np.sort(np.concatenate(chosen))


def _match_table(
    table: OverlapTable,
    thresholds: tuple[float, ...],
    criterion: Criterion,
) -> InstanceScores:
    """Match the non-zero labels of a (possibly ignore-filtered) overlap table."""
    gt_sizes = table.gt_sizes
    pred_sizes = table.pred_sizes
    gt_object = table.gt_ids != 0
    pred_object = table.pred_ids != 0
    n_gt = int(np.count_nonzero(gt_object & (gt_sizes > 0)))
    n_pred = int(np.count_nonzero(pred_object & (pred_sizes > 0)))

    both = gt_object[table.gt_index] & pred_object[table.pred_index]
    rows = table.gt_index[both]
    cols = table.pred_index[both]
    inter = table.counts[both].astype(np.float64)
    if criterion == "iou":
        scores = inter / (gt_sizes[rows] + pred_sizes[cols] - inter)
    elif criterion == "iot":
        scores = inter / gt_sizes[rows]
    else:
        scores = inter / pred_sizes[cols]

    per_threshold = []
    for threshold in thresholds:
        ok = np.flatnonzero(scores >= threshold - _THRESHOLD_TOL)
        picked = ok[
            _optimal_matching(
                rows[ok], cols[ok], scores[ok], table.gt_ids.size, table.pred_ids.size
            )
        ]
        per_threshold.append(
            _threshold_scores(
                threshold,
                n_pred=n_pred,
                n_gt=n_gt,
                matched_gt=table.gt_ids[rows[picked]],
                matched_pred=table.pred_ids[cols[picked]],
                matched_score=scores[picked],
            )
        )
    return InstanceScores(
        criterion=criterion,
        n_pred=n_pred,
        n_gt=n_gt,
        per_threshold=tuple(per_threshold),
        pair_gt=table.gt_ids[rows],
        pair_pred=table.pred_ids[cols],
        pair_score=scores,
    )


def match_instances(
    pred: NDArray[np.integer[Any]],
    gt: NDArray[np.integer[Any]],
    *,
    thresholds: float | Sequence[float] = DEFAULT_THRESHOLDS,
    criterion: Criterion = "iou",
    ignore_label: int | None = None,
) -> InstanceScores:
    """Match predicted to ground-truth objects one-to-one and score the matching.

    Follows ``stardist.matching.matching``: for each threshold ``t`` the pairs with
    ``score >= t`` (greater *or equal*; a pair with IoU exactly 0.5 is a match at
    ``t = 0.5``) are eligible, pairs below ``t`` are not allowed, and the one-to-one
    assignment (Hungarian algorithm) maximises the number of matched pairs, ties
    broken by the largest summed score of the matched pairs. For ``t > 0.5`` with
    ``criterion="iou"`` this is simply "every pair with IoU above ``t``" (such pairs
    never conflict).

    Two differences from StarDist. Scores are float64; StarDist rounds them to
    float32, which can move a pair lying exactly on a threshold such as 0.7 across
    it (the only case where TP, FP and FN can differ). And StarDist's tie-break also
    rewards assigning pairs *below* ``t``, so among equally many matches it may keep
    a set with a lower matched IoU. ``mean_matched_score`` and ``pq`` here are therefore
    equal to StarDist's or (rarely, at low thresholds) slightly higher.

    Parameters
    ----------
    pred, gt : ndarray of unsigned int (any shape, the same for both)
        Instance label images, 0 = background. Labels need not be sequential.
    thresholds : float or sequence of float, optional
        Matching thresholds in (0, 1]. Default 0.1, 0.2, ..., 0.9.
    criterion : {"iou", "iot", "iop"}, optional
        Pair score: intersection over union (default), intersection over the GT
        object, intersection over the predicted object.
    ignore_label : int, optional
        Ground-truth label of unannotated voxels. These voxels are removed from both
        images before matching, so predicted objects are clipped to the annotated
        region and vanish if they lie entirely outside it.

    Returns
    -------
    InstanceScores
        Counts and scores per threshold, plus the sparse pair-score table.
        With no object in either image every ratio is NaN; with objects in only one
        of them ``tp = 0`` and every ratio is 0 (StarDist's values).

    Raises
    ------
    InvalidVolumeError
        If the arrays are not integer/bool, are empty, differ in shape, or contain
        negative labels.
    ConfigError
        If a threshold is outside (0, 1] or the criterion is unknown.

    Examples
    --------
    >>> gt = np.array([[1, 1, 1, 1, 0, 2, 2]])
    >>> pred = np.array([[3, 3, 0, 0, 0, 4, 4]])
    >>> s = match_instances(pred, gt, thresholds=(0.5, 0.6))
    >>> [(r.threshold, r.tp, r.fp, r.fn) for r in s.per_threshold]
    [(0.5, 2, 0, 0), (0.6, 1, 1, 1)]
    """
    pred_arr, gt_arr = _check_pair(pred, gt)
    for name, arr in (("pred", pred_arr), ("gt", gt_arr)):
        if arr.dtype != np.bool_ and np.issubdtype(arr.dtype, np.signedinteger):
            low, _ = fastremap.minmax(arr)
            if low is not None and low < 0:
                raise InvalidVolumeError(
                    f"{name} contains negative labels (minimum {low}); instance labels "
                    "must be >= 0 with 0 as background"
                )
    thresholds_t = _check_thresholds(thresholds)
    criterion_c = _check_criterion(criterion)
    table = _overlap_table(pred_arr.ravel(), gt_arr.ravel())
    if ignore_label is not None:
        table = table.without_gt([ignore_label])
    return _match_table(table, thresholds_t, criterion_c)
