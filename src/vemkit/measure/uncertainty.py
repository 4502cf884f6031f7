"""How sure is a score? Spatial block-bootstrap confidence intervals for segmentation metrics.

A held-out test region in vEM is often one crop with a few dozen objects (the VNC
mitochondria test sections hold 21), so an object F1 of 0.79 may well be 0.70 or 0.88
on the next crop. :func:`bootstrap_scores` puts a number on that: it cuts the volume
into a grid of blocks, counts per block what the pooled scores are made of (voxel
intersections and unions, true objects, predicted objects and matched pairs), and
recomputes the pooled scores on resampled sets of blocks (a spatial block bootstrap;
Efron & Tibshirani 1993, ch. 8). Objects are matched once, on the whole volume, and each
object belongs to the block holding its centroid, so resampling blocks never cuts an
object in two; a matched pair counts in the block of its ground-truth object.

The interval is the percentile interval of the resampled scores. Blocks are not truly
independent (objects near a block face), so read the interval as an honest order of
magnitude of the sampling error, not as an exact coverage guarantee.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import fastremap
import numpy as np
from numpy.typing import NDArray

from vemkit.errors import ConfigError, InvalidVolumeError
from vemkit.measure.matching import _check_pair, _check_thresholds, match_instances

__all__ = [
    "block_count",
    "bootstrap_class_scores",
    "bootstrap_scores",
    "default_blocks",
    "paired_difference",
]


def default_blocks(shape: Sequence[int], spacing: Sequence[float] | None = None) -> tuple[int, ...]:
    """Blocks per axis for :func:`bootstrap_scores`: the two longest axes cut in 4.

    Parameters
    ----------
    shape : sequence of int
        Array shape, 2-D or 3-D.
    spacing : sequence of float, optional
        Voxel size per axis (nm); the longest axes are chosen in physical length.

    Returns
    -------
    tuple of int
        Blocks per axis (at most the axis length), e.g. ``(1, 4, 4)`` for a few
        sections of 1024² pixels.
    """
    sizes = np.asarray(shape, dtype=float)
    lengths = sizes * (np.asarray(spacing, dtype=float) if spacing is not None else 1.0)
    longest = np.argsort(-lengths, kind="stable")[:2]
    return tuple(min(4, int(n)) if axis in longest else 1 for axis, n in enumerate(shape))


def _block_ids(shape: tuple[int, ...], blocks: tuple[int, ...]) -> NDArray[np.int32]:
    """Block index of every voxel for a regular grid of ``blocks`` per axis."""
    ids = np.zeros(shape, dtype=np.int32)
    for axis, (n, k) in enumerate(zip(shape, blocks, strict=True)):
        along = (np.arange(n) * k // n).astype(np.int32)
        stride = int(np.prod(blocks[axis + 1 :], dtype=np.int64))
        view = [1] * len(shape)
        view[axis] = n
        ids += (along * stride).reshape(view)
    return ids


def _object_blocks(
    labels: NDArray[Any], block_of_voxel: NDArray[np.int32], shape: tuple[int, ...]
) -> tuple[NDArray[Any], NDArray[np.int64]]:
    """Label ids (> 0) and the block index of each object's centroid."""
    compact, mapping = fastremap.renumber(labels, in_place=False, preserve_zero=True)
    compact = compact.ravel()
    n = int(compact.max()) if compact.size else 0
    if n == 0:
        return np.zeros(0, dtype=labels.dtype), np.zeros(0, dtype=np.int64)
    counts = np.bincount(compact, minlength=n + 1)[1:].astype(np.float64)
    centre = []
    for axis, size in enumerate(shape):
        view = [1] * len(shape)
        view[axis] = size
        coordinate = np.broadcast_to(np.arange(size).reshape(view), shape).ravel()
        sums = np.bincount(compact, weights=coordinate, minlength=n + 1)[1:]
        centre.append(np.clip(np.rint(sums / counts), 0, size - 1).astype(np.int64))
    blocks = block_of_voxel[tuple(centre)].astype(np.int64)
    inverse = {new: old for old, new in mapping.items()}
    ids = np.array([inverse[i] for i in range(1, n + 1)], dtype=labels.dtype)
    return ids, blocks


def _checked(
    caller: str,
    pred: NDArray[Any],
    gt: NDArray[Any],
    *,
    blocks: Sequence[int] | None,
    spacing: Sequence[float] | None,
    n_resamples: int,
    confidence: float,
) -> tuple[NDArray[Any], NDArray[Any], tuple[int, ...]]:
    """Check the arrays and settings of a bootstrap; return the arrays and the block grid."""
    pred_arr, gt_arr = _check_pair(pred, gt)
    if pred_arr.ndim not in (2, 3):
        raise InvalidVolumeError(
            f"{caller} needs 2-D or 3-D arrays, got {pred_arr.ndim} dimensions"
        )
    shape = pred_arr.shape
    grid = tuple(int(b) for b in blocks) if blocks is not None else default_blocks(shape, spacing)
    if len(grid) != len(shape) or any(b < 1 or b > n for b, n in zip(grid, shape, strict=True)):
        raise ConfigError(
            f"blocks must give 1..axis length blocks for each of the {len(shape)} axes of "
            f"shape {shape}, got {tuple(blocks) if blocks is not None else grid}"
        )
    if int(n_resamples) < 1:
        raise ConfigError(f"n_resamples must be at least 1, got {n_resamples!r}")
    if not 0.0 < float(confidence) < 1.0:
        raise ConfigError(f"confidence must lie in (0, 1), got {confidence!r}")
    return pred_arr, gt_arr, grid


def _block_weights(
    n_blocks: int, n_resamples: int, rng: np.random.Generator
) -> NDArray[np.float64]:
    """How often each block is drawn in each resample, ``(n_resamples, n_blocks)``."""
    draws = rng.multinomial(n_blocks, np.full(n_blocks, 1.0 / n_blocks), size=int(n_resamples))
    return draws.astype(np.float64)


def _interval(
    numerator: NDArray[np.float64],
    denominator: NDArray[np.float64],
    weights: NDArray[np.float64],
    confidence: float,
) -> dict[str, float | None]:
    """Point value and percentile interval of sum(numerator) / sum(denominator)."""
    total = float(denominator.sum())
    value = float(numerator.sum()) / total if total else math.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        resampled = (weights @ numerator) / (weights @ denominator)
    return _percentile_interval(resampled, value, confidence)


def bootstrap_scores(
    pred: NDArray[np.integer[Any]],
    gt: NDArray[np.integer[Any]],
    *,
    instance: bool = True,
    thresholds: float | Sequence[float] = (0.5,),
    blocks: Sequence[int] | None = None,
    spacing: Sequence[float] | None = None,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    ignore_label: int | None = None,
    seed: int = 0,
    block_counts: bool = False,
) -> dict[str, Any]:
    """Confidence intervals of foreground IoU / Dice and object F1 by block bootstrap.

    Parameters
    ----------
    pred, gt : (Z, Y, X) or (Y, X) ndarray of int or bool
        Predicted and true instance labels (0 = background) of the same shape; with
        ``instance=False``, masks or labels whose non-zero voxels are foreground.
    instance : bool, default True
        Also score objects (object F1 at each threshold, matched as in
        :func:`~vemkit.measure.matching.match_instances`).
    thresholds : float or sequence of float, default 0.5
        Object matching IoU thresholds.
    blocks : sequence of int, optional
        Blocks per axis. Default :func:`default_blocks` (the two longest axes in 4).
    spacing : sequence of float, optional
        Voxel size per axis (nm), only to pick the default blocks.
    n_resamples : int, default 2000
        Bootstrap resamples.
    confidence : float, default 0.95
        Coverage of the percentile interval, in (0, 1).
    ignore_label : int, optional
        Ground-truth value of unannotated voxels; they are left out of every count
        (predicted objects are clipped to the annotated region, as in :func:`evaluate`).
    seed : int, default 0
        Seed of the resampling (the result is deterministic).
    block_counts : bool, default False
        Also return the counts of every block (``block_counts``), from which
        :func:`paired_difference` compares two segmentations of the same region.

    Returns
    -------
    dict
        JSON-ready: ``method``, ``blocks``, ``n_blocks``, ``n_resamples``, ``confidence``,
        and for ``iou``, ``dice`` and (instance mode) each ``f1_at[threshold]`` a dict
        ``{"value", "low", "high"}``; ``value`` equals the pooled score on the whole
        volume. ``None`` where a score is undefined (nothing in either image). With
        ``block_counts``: ``block_counts`` = lists per block of ``intersection``,
        ``predicted`` and ``truth`` voxels and (instance mode) ``n_gt``, ``n_pred`` and
        ``matched[threshold]`` (true objects matched).

    Raises
    ------
    InvalidVolumeError
        For arrays that are not integer/bool, differ in shape or are not 2-D / 3-D.
    ConfigError
        For invalid blocks, resamples, confidence or thresholds.

    Examples
    --------
    >>> gt = np.zeros((1, 8, 8), np.uint8); gt[0, 1:3, 1:3] = 1; gt[0, 5:7, 5:7] = 2
    >>> r = bootstrap_scores(gt, gt, blocks=(1, 2, 2), n_resamples=50)
    >>> r["iou"], r["f1_at"]["0.5"]
    ({'value': 1.0, 'low': 1.0, 'high': 1.0}, {'value': 1.0, 'low': 1.0, 'high': 1.0})
    """
    pred_arr, gt_arr, grid = _checked(
        "bootstrap_scores",
        pred,
        gt,
        blocks=blocks,
        spacing=spacing,
        n_resamples=n_resamples,
        confidence=confidence,
    )
    thresholds_t = _check_thresholds(thresholds)
    shape = pred_arr.shape

    block_of_voxel = _block_ids(shape, grid)
    n_blocks = int(np.prod(grid))
    known = np.ones(shape, dtype=bool) if ignore_label is None else gt_arr != ignore_label
    p_fg = (pred_arr != 0) & known
    g_fg = (gt_arr != 0) & known

    def per_block(mask: NDArray[np.bool_]) -> NDArray[np.float64]:
        return np.bincount(block_of_voxel[mask], minlength=n_blocks).astype(np.float64)

    inter, p_sum, g_sum = per_block(p_fg & g_fg), per_block(p_fg), per_block(g_fg)
    weights = _block_weights(n_blocks, n_resamples, np.random.default_rng(seed))
    result: dict[str, Any] = {
        "method": "spatial block bootstrap (percentile interval)",
        "blocks": list(grid),
        "n_blocks": n_blocks,
        "n_resamples": int(n_resamples),
        "confidence": float(confidence),
        "iou": _interval(inter, p_sum + g_sum - inter, weights, confidence),
        "dice": _interval(2 * inter, p_sum + g_sum, weights, confidence),
    }
    counts: dict[str, Any] = {
        "intersection": _ints(inter),
        "predicted": _ints(p_sum),
        "truth": _ints(g_sum),
    }
    if block_counts:
        result["block_counts"] = counts
    if not instance:
        return result

    pred_known = np.where(known, pred_arr, 0) if ignore_label is not None else pred_arr
    gt_known = np.where(known, gt_arr, 0) if ignore_label is not None else gt_arr
    gt_ids, gt_blocks = _object_blocks(gt_known, block_of_voxel, shape)
    _, pred_blocks = _object_blocks(pred_known, block_of_voxel, shape)
    n_gt = np.bincount(gt_blocks, minlength=n_blocks).astype(np.float64)
    n_pred = np.bincount(pred_blocks, minlength=n_blocks).astype(np.float64)
    scores = match_instances(pred_known, gt_known, thresholds=thresholds_t)
    block_of_gt = dict(zip(gt_ids.tolist(), gt_blocks.tolist(), strict=True))
    f1_at = {}
    counts.update(n_gt=_ints(n_gt), n_pred=_ints(n_pred), matched={})
    for at in scores.per_threshold:
        matched = [block_of_gt[int(i)] for i in at.matched_gt]
        tp = np.bincount(np.asarray(matched, dtype=np.int64), minlength=n_blocks)
        key = f"{at.threshold:g}"
        f1_at[key] = _interval(2 * tp.astype(np.float64), n_gt + n_pred, weights, confidence)
        counts["matched"][key] = _ints(tp)
    result["f1_at"] = f1_at
    result["n_gt"] = int(n_gt.sum())
    result["n_pred"] = int(n_pred.sum())
    return result


def _class_f1(
    inter: NDArray[np.float64], pred: NDArray[np.float64], truth: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Per-class voxel F1, macro F1 and support-weighted F1 of ``(..., classes)`` totals.

    As :func:`~vemkit.measure.metrics.semantic_scores`: a class in neither image has no F1
    and is left out of both averages; the weights are the true voxels of each class.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = 2 * inter / (pred + truth)
        present = np.isfinite(f1)
        scored = np.where(present, f1, 0.0)
        macro = scored.sum(axis=-1) / present.sum(axis=-1)
        support = np.where(present, truth, 0.0)
        weighted = (scored * support).sum(axis=-1) / support.sum(axis=-1)
    return f1, macro, weighted


def _percentile_interval(
    values: NDArray[np.float64], value: float, confidence: float
) -> dict[str, float | None]:
    """``value`` and the percentile interval of the finite resampled ``values``."""
    finite = values[np.isfinite(values)]
    if not math.isfinite(value) or finite.size == 0:
        return {"value": None, "low": None, "high": None}
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return {"value": value, "low": float(low), "high": float(high)}


def bootstrap_class_scores(
    pred: NDArray[np.integer[Any]],
    gt: NDArray[np.integer[Any]],
    classes: Sequence[int],
    *,
    names: Sequence[str] | None = None,
    blocks: Sequence[int] | None = None,
    spacing: Sequence[float] | None = None,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    ignore_label: int | None = None,
    seed: int = 0,
    block_counts: bool = False,
) -> dict[str, Any]:
    """Confidence intervals of multi-class voxel F1 (per class, macro, weighted) by block bootstrap.

    The multi-class counterpart of :func:`bootstrap_scores`: per block it counts each
    class's true-positive, predicted and true voxels, and recomputes per-class F1, their
    mean (macro F1) and their support-weighted mean (weighted F1) on resampled sets of
    blocks. A rare class (synapses) lies in a few blocks only, so its interval is wide.

    Parameters
    ----------
    pred, gt : (Z, Y, X) or (Y, X) ndarray of int
        Predicted and true class labels of the same shape.
    classes : sequence of int
        The label values scored (as ``classes`` of :func:`~vemkit.measure.evaluate`).
    names : sequence of str, optional
        A name per class for the result (default: the label values as text).
    blocks, spacing, n_resamples, confidence, ignore_label, seed, block_counts
        As in :func:`bootstrap_scores`.

    Returns
    -------
    dict
        JSON-ready: ``method``, ``blocks``, ``n_blocks``, ``n_resamples``, ``confidence``,
        ``macro_f1``, ``weighted_f1`` and ``per_class`` (name -> ``{"value", "low",
        "high"}``); ``value`` equals the score of the whole volume. With
        ``block_counts``: ``block_counts`` = ``classes`` (the names) and, per class, lists
        per block of ``intersection``, ``predicted`` and ``truth`` voxels.

    Raises
    ------
    InvalidVolumeError
        For arrays that are not integer, differ in shape or are not 2-D / 3-D.
    ConfigError
        For no classes, names not one per class, invalid blocks, resamples or confidence.

    Examples
    --------
    >>> gt = np.zeros((1, 8, 8), np.uint8); gt[0, :, 4:] = 1
    >>> r = bootstrap_class_scores(gt, gt, (0, 1), names=("a", "b"), n_resamples=20)
    >>> r["macro_f1"], r["per_class"]["b"]
    ({'value': 1.0, 'low': 1.0, 'high': 1.0}, {'value': 1.0, 'low': 1.0, 'high': 1.0})
    """
    pred_arr, gt_arr, grid = _checked(
        "bootstrap_class_scores",
        pred,
        gt,
        blocks=blocks,
        spacing=spacing,
        n_resamples=n_resamples,
        confidence=confidence,
    )
    labels = [int(c) for c in classes]
    if not labels:
        raise ConfigError("give at least one class to score")
    names_t = [str(c) for c in labels] if names is None else [str(n) for n in names]
    if len(names_t) != len(labels) or len(set(names_t)) != len(names_t):
        raise ConfigError(f"give one distinct name per class: {len(labels)} classes, {names_t}")
    shape = pred_arr.shape
    block_of_voxel = _block_ids(shape, grid)
    n_blocks = int(np.prod(grid))
    known = None if ignore_label is None else gt_arr != ignore_label

    def per_block(mask: NDArray[np.bool_]) -> NDArray[np.float64]:
        if known is not None:
            mask &= known
        return np.bincount(block_of_voxel[mask], minlength=n_blocks).astype(np.float64)

    # (classes, blocks) voxel counts
    inter = np.stack([per_block((pred_arr == c) & (gt_arr == c)) for c in labels])
    p_sum = np.stack([per_block(pred_arr == c) for c in labels])
    g_sum = np.stack([per_block(gt_arr == c) for c in labels])
    weights = _block_weights(n_blocks, n_resamples, np.random.default_rng(seed))
    f1, macro, weighted = _class_f1(inter.sum(1), p_sum.sum(1), g_sum.sum(1))
    f1_r, macro_r, weighted_r = _class_f1(weights @ inter.T, weights @ p_sum.T, weights @ g_sum.T)
    result: dict[str, Any] = {
        "method": "spatial block bootstrap (percentile interval)",
        "blocks": list(grid),
        "n_blocks": n_blocks,
        "n_resamples": int(n_resamples),
        "confidence": float(confidence),
        "macro_f1": _percentile_interval(macro_r, float(macro), confidence),
        "weighted_f1": _percentile_interval(weighted_r, float(weighted), confidence),
        "per_class": {
            name: _percentile_interval(f1_r[:, i], float(f1[i]), confidence)
            for i, name in enumerate(names_t)
        },
    }
    if block_counts:
        result["block_counts"] = {
            "classes": names_t,
            "intersection": [_ints(row) for row in inter],
            "predicted": [_ints(row) for row in p_sum],
            "truth": [_ints(row) for row in g_sum],
        }
    return result


# A pooled score: the per-block counts it is made of, (parts, blocks), and the score of
# their totals, (..., parts) -> (...).
_Parts = tuple[NDArray[np.float64], Callable[[NDArray[np.float64]], NDArray[np.float64]]]


def _ratio(totals: NDArray[np.float64]) -> NDArray[np.float64]:
    with np.errstate(invalid="ignore", divide="ignore"):
        return totals[..., 0] / totals[..., 1]


def _ints(values: NDArray[Any]) -> list[int]:
    return [int(v) for v in np.rint(values)]


def _score_parts(counts: dict[str, Any]) -> dict[str, _Parts]:
    """Per-block counts and score function of each pooled score in ``block_counts``."""
    inter = np.asarray(counts["intersection"], dtype=np.float64)
    p_sum = np.asarray(counts["predicted"], dtype=np.float64)
    g_sum = np.asarray(counts["truth"], dtype=np.float64)
    if "classes" in counts:  # of bootstrap_class_scores: (classes, blocks) each
        n = len(counts["classes"])
        stacked = np.concatenate([inter, p_sum, g_sum])

        def average(index: int) -> Callable[[NDArray[np.float64]], NDArray[np.float64]]:
            return lambda t: _class_f1(t[..., :n], t[..., n : 2 * n], t[..., 2 * n :])[index]

        parts: dict[str, _Parts] = {
            "macro_f1": (stacked, average(1)),
            "weighted_f1": (stacked, average(2)),
        }
        for i, name in enumerate(counts["classes"]):
            parts[f"f1_{name}"] = (np.stack([2 * inter[i], p_sum[i] + g_sum[i]]), _ratio)
        return parts
    parts = {
        "iou": (np.stack([inter, p_sum + g_sum - inter]), _ratio),
        "dice": (np.stack([2 * inter, p_sum + g_sum]), _ratio),
    }
    if "matched" in counts:
        objects = np.asarray(counts["n_gt"], dtype=np.float64) + np.asarray(
            counts["n_pred"], dtype=np.float64
        )
        for key, matched in counts["matched"].items():
            parts[f"f1_at_{key}"] = (
                np.stack([2 * np.asarray(matched, dtype=np.float64), objects]),
                _ratio,
            )
    return parts


def block_count(counts: dict[str, Any]) -> int:
    """Count the blocks of ``block_counts`` (of either bootstrap function)."""
    first = counts["intersection"]
    return len(first[0]) if "classes" in counts else len(first)


def paired_difference(
    counts_a: dict[str, Any] | Sequence[dict[str, Any]],
    counts_b: dict[str, Any] | Sequence[dict[str, Any]],
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, dict[str, float | None]]:
    """Is B better than A on the same region? A paired block bootstrap of the difference.

    Two segmentations of the same blocks (say the folds of two recipes, tested on the
    same sections) share most of their sampling error: a block that is hard for one is
    hard for the other. Resampling the blocks once for both and taking the difference
    of each resampled pooled score removes that shared part, so the interval of the
    difference is much narrower than the two separate intervals suggest.

    Training noise is not in that interval: two trainings of one recipe with different
    seeds differ too. Give several runs per side (the same recipe trained with several
    seeds) to take it in: each side's score is then pooled over its runs, and every
    resample also draws the runs of each side with replacement (a two-level bootstrap:
    runs, then blocks shared by all), so the interval widens by how much the runs of a
    side disagree. Where B and A differ in a few objects only, a handful of blocks carry
    the whole object-F1 difference and its interval is coarse (its ends are often
    exactly 0).

    Parameters
    ----------
    counts_a, counts_b : dict or sequence of dict
        ``block_counts`` of :func:`bootstrap_scores` or :func:`bootstrap_class_scores`
        (``block_counts=True``) for each side, one per run, all on the same block grid
        of the same region.
    n_resamples : int, default 2000
        Bootstrap resamples.
    confidence : float, default 0.95
        Coverage of the percentile interval of the difference, in (0, 1).
    seed : int, default 0
        Seed of the resampling (the result is deterministic).

    Returns
    -------
    dict
        Per score every run has (``iou``, ``dice``, ``f1_at_0.5``, ...; of multi-class
        counts ``macro_f1``, ``weighted_f1`` and ``f1_<class>``): ``a``, ``b``
        (pooled over each side's runs), ``difference`` (b - a), ``low`` and ``high``
        (percentile interval of the difference), ``p_better`` (fraction of resamples in
        which B scores higher than A; ties count half) and ``runs_a`` / ``runs_b``.
        ``None`` where a score is undefined.

    Raises
    ------
    ConfigError
        If the counts are of different block grids, a side has no run, or for invalid
        resamples/confidence.

    Examples
    --------
    >>> a = {"intersection": [8, 9], "predicted": [10, 10], "truth": [10, 10]}
    >>> b = {"intersection": [9, 10], "predicted": [10, 10], "truth": [10, 10]}
    >>> d = paired_difference(a, b, n_resamples=100)["iou"]
    >>> round(d["difference"], 3), d["p_better"]
    (0.166, 1.0)
    """
    if int(n_resamples) < 1:
        raise ConfigError(f"n_resamples must be at least 1, got {n_resamples!r}")
    if not 0.0 < float(confidence) < 1.0:
        raise ConfigError(f"confidence must lie in (0, 1), got {confidence!r}")
    runs_a = [counts_a] if isinstance(counts_a, dict) else list(counts_a)
    runs_b = [counts_b] if isinstance(counts_b, dict) else list(counts_b)
    if not runs_a or not runs_b:
        raise ConfigError("give the block counts of at least one run on each side")
    parts_a, parts_b = [_score_parts(c) for c in runs_a], [_score_parts(c) for c in runs_b]
    grids = {block_count(c) for c in runs_a + runs_b} | {
        part[0].shape[-1] for r in parts_a + parts_b for part in r.values()
    }
    if len(grids) != 1:
        raise ConfigError(
            f"the block counts are of different block grids ({sorted(grids)} blocks): "
            "compare segmentations of the same region, scored on the same blocks"
        )
    n_blocks = grids.pop()
    rng = np.random.default_rng(seed)
    weights = _block_weights(n_blocks, n_resamples, rng)

    def draws(n_runs: int) -> NDArray[np.float64]:
        """How often each run is drawn in each resample (all once for a single run)."""
        if n_runs == 1:
            return np.ones((int(n_resamples), 1))
        picks = rng.integers(n_runs, size=(int(n_resamples), n_runs))
        return np.stack([np.bincount(row, minlength=n_runs) for row in picks]).astype(float)

    draws_a, draws_b = draws(len(runs_a)), draws(len(runs_b))
    tail = (1.0 - confidence) / 2 * 100
    keys = [k for k in parts_a[0] if all(k in r for r in parts_a[1:] + parts_b)]
    result: dict[str, dict[str, float | None]] = {}
    empty = dict.fromkeys(("a", "b", "difference", "low", "high", "p_better"))

    def pooled(counts: NDArray[np.float64], drawn: NDArray[np.float64]) -> Any:
        """Totals of (runs, parts, blocks) counts: over all, and in each resample."""
        resampled = np.einsum("sb,rpb->srp", weights, counts)
        return counts.sum(axis=(0, 2)), (resampled * drawn[:, :, None]).sum(axis=1)

    for key in keys:
        score = parts_a[0][key][1]
        total_a, resampled_a = pooled(np.stack([r[key][0] for r in parts_a]), draws_a)
        total_b, resampled_b = pooled(np.stack([r[key][0] for r in parts_b]), draws_b)
        a, b = float(score(total_a)), float(score(total_b))
        if not (math.isfinite(a) and math.isfinite(b)):
            result[key] = {**empty, "runs_a": len(runs_a), "runs_b": len(runs_b)}
            continue
        delta = score(resampled_b) - score(resampled_a)
        delta = delta[np.isfinite(delta)]
        if delta.size == 0:
            result[key] = {**empty, "runs_a": len(runs_a), "runs_b": len(runs_b)}
            continue
        low, high = np.percentile(delta, [tail, 100 - tail])
        better = float(np.mean(delta > 0) + 0.5 * np.mean(delta == 0))
        result[key] = {
            "a": a,
            "b": b,
            "difference": b - a,
            "low": float(low),
            "high": float(high),
            "p_better": better,
            "runs_a": len(runs_a),
            "runs_b": len(runs_b),
        }
    return result
