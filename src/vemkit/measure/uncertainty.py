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
from collections.abc import Sequence
from typing import Any

import fastremap
import numpy as np
from numpy.typing import NDArray

from vemkit.errors import ConfigError, InvalidVolumeError
from vemkit.measure.matching import _check_pair, _check_thresholds, match_instances

__all__ = ["bootstrap_scores", "default_blocks", "paired_difference"]


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
    resampled = resampled[np.isfinite(resampled)]
    if not math.isfinite(value) or resampled.size == 0:
        return {"value": None, "low": None, "high": None}
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(resampled, [tail, 100 - tail])
    return {"value": value, "low": float(low), "high": float(high)}


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
    pred_arr, gt_arr = _check_pair(pred, gt)
    if pred_arr.ndim not in (2, 3):
        raise InvalidVolumeError(
            f"bootstrap_scores needs 2-D or 3-D arrays, got {pred_arr.ndim} dimensions"
        )
    thresholds_t = _check_thresholds(thresholds)
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

    block_of_voxel = _block_ids(shape, grid)
    n_blocks = int(np.prod(grid))
    known = np.ones(shape, dtype=bool) if ignore_label is None else gt_arr != ignore_label
    p_fg = (pred_arr != 0) & known
    g_fg = (gt_arr != 0) & known

    def per_block(mask: NDArray[np.bool_]) -> NDArray[np.float64]:
        return np.bincount(block_of_voxel[mask], minlength=n_blocks).astype(np.float64)

    inter, p_sum, g_sum = per_block(p_fg & g_fg), per_block(p_fg), per_block(g_fg)
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n_blocks, np.full(n_blocks, 1.0 / n_blocks), size=int(n_resamples))
    weights = weights.astype(np.float64)
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


def _ints(values: NDArray[Any]) -> list[int]:
    return [int(v) for v in np.rint(values)]


def _ratios(counts: dict[str, Any]) -> dict[str, tuple[NDArray[np.float64], NDArray[np.float64]]]:
    """Numerator and denominator per block of each pooled score in ``block_counts``."""
    inter = np.asarray(counts["intersection"], dtype=np.float64)
    p_sum = np.asarray(counts["predicted"], dtype=np.float64)
    g_sum = np.asarray(counts["truth"], dtype=np.float64)
    ratios = {"iou": (inter, p_sum + g_sum - inter), "dice": (2 * inter, p_sum + g_sum)}
    if "matched" in counts:
        objects = np.asarray(counts["n_gt"], dtype=np.float64) + np.asarray(
            counts["n_pred"], dtype=np.float64
        )
        for key, matched in counts["matched"].items():
            ratios[f"f1_at_{key}"] = (2 * np.asarray(matched, dtype=np.float64), objects)
    return ratios


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
        ``block_counts`` of :func:`bootstrap_scores` (``block_counts=True``) for each
        side, one per run, all on the same block grid of the same region.
    n_resamples : int, default 2000
        Bootstrap resamples.
    confidence : float, default 0.95
        Coverage of the percentile interval of the difference, in (0, 1).
    seed : int, default 0
        Seed of the resampling (the result is deterministic).

    Returns
    -------
    dict
        Per score every run has (``iou``, ``dice``, ``f1_at_0.5``, ...): ``a``, ``b``
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
    ratios_a, ratios_b = [_ratios(c) for c in runs_a], [_ratios(c) for c in runs_b]
    grids = {len(c["intersection"]) for c in runs_a + runs_b} | {
        len(part[0]) for r in ratios_a + ratios_b for part in r.values()
    }
    if len(grids) != 1:
        raise ConfigError(
            f"the block counts are of different block grids ({sorted(grids)} blocks): "
            "compare segmentations of the same region, scored on the same blocks"
        )
    n_blocks = grids.pop()
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n_blocks, np.full(n_blocks, 1.0 / n_blocks), size=int(n_resamples))
    weights = weights.astype(np.float64)

    def draws(n_runs: int) -> NDArray[np.float64]:
        """How often each run is drawn in each resample (all once for a single run)."""
        if n_runs == 1:
            return np.ones((int(n_resamples), 1))
        picks = rng.integers(n_runs, size=(int(n_resamples), n_runs))
        return np.stack([np.bincount(row, minlength=n_runs) for row in picks]).astype(float)

    draws_a, draws_b = draws(len(runs_a)), draws(len(runs_b))
    tail = (1.0 - confidence) / 2 * 100
    keys = [k for k in ratios_a[0] if all(k in r for r in ratios_a[1:] + ratios_b)]
    result: dict[str, dict[str, float | None]] = {}
    empty = dict.fromkeys(("a", "b", "difference", "low", "high", "p_better"))
    for key in keys:
        # (runs, blocks) numerators and denominators of each side
        num_a = np.stack([r[key][0] for r in ratios_a])
        den_a = np.stack([r[key][1] for r in ratios_a])
        num_b = np.stack([r[key][0] for r in ratios_b])
        den_b = np.stack([r[key][1] for r in ratios_b])
        total_a, total_b = float(den_a.sum()), float(den_b.sum())
        if not total_a or not total_b:
            result[key] = {**empty, "runs_a": len(runs_a), "runs_b": len(runs_b)}
            continue
        a, b = float(num_a.sum()) / total_a, float(num_b.sum()) / total_b

        def resampled(num: NDArray[Any], den: NDArray[Any], drawn: NDArray[Any]) -> Any:
            return ((weights @ num.T) * drawn).sum(axis=1) / ((weights @ den.T) * drawn).sum(axis=1)

        with np.errstate(invalid="ignore", divide="ignore"):
            delta = resampled(num_b, den_b, draws_b) - resampled(num_a, den_a, draws_a)
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
