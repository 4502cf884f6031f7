"""Group comparisons and correlations for measurement tables (scipy.stats underneath).

- :func:`compare_groups`: summary per group, Welch's t-test and the Mann–Whitney U
  test (exactly 2 groups), the Kruskal–Wallis H test (2 or more groups) and Conover's
  pairwise post-hoc test with Holm's step-down correction;
- :func:`correlate`: Pearson or Spearman correlation of two columns;
- :func:`conover_posthoc` and :func:`holm_correction`, the building blocks.

Results are plain, JSON-ready dicts; NaN values in the analysed columns are dropped
(and counted).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import stats

from vemkit.errors import ConfigError, InvalidVolumeError

__all__ = ["compare_groups", "conover_posthoc", "correlate", "holm_correction"]


def holm_correction(p_values: Sequence[float]) -> NDArray[np.float64]:
    """Holm–Bonferroni step-down adjusted p-values (family-wise error control).

    With ``m`` p-values sorted ascending, ``p_adj(i) = max_{j <= i} min(1, (m - j + 1)
    p(j))`` (1-based ranks), returned in the input order; as
    ``statsmodels.stats.multitest.multipletests(..., method="holm")``. NaN inputs stay
    NaN and do not count towards ``m``.

    Parameters
    ----------
    p_values : sequence of float
        Raw p-values in [0, 1].

    Returns
    -------
    (m,) ndarray of float64
        Adjusted p-values.

    Examples
    --------
    >>> holm_correction([0.01, 0.04, 0.03]).round(4).tolist()
    [0.03, 0.06, 0.06]
    """
    p = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    if valid.size == 0:
        return adjusted
    order = valid[np.argsort(p[valid], kind="stable")]
    m = order.size
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted


def conover_posthoc(
    samples: Mapping[str, Sequence[float] | NDArray[np.floating[Any]]],
) -> list[dict[str, Any]]:
    """Conover–Iman pairwise comparisons after a Kruskal–Wallis test, Holm-adjusted.

    All observations are ranked together (average ranks for ties). With ``N``
    observations in ``k`` groups, mean ranks ``Rbar_i``, tie-corrected Kruskal–Wallis
    statistic ``H`` and ``S^2 = (sum(rank^2) - N (N + 1)^2 / 4) / (N - 1)``, the pair
    ``(i, j)`` gets

    ``t = |Rbar_i - Rbar_j| / sqrt(S^2 (N - 1 - H) / (N - k) (1/n_i + 1/n_j))``

    with ``N - k`` degrees of freedom (Conover & Iman 1979; Conover 1999, section
    5.2), as ``scikit_posthocs.posthoc_conover``. Holm's correction runs over all
    ``k (k - 1) / 2`` pairs.

    Parameters
    ----------
    samples : mapping of str to sequence or 1-D ndarray of float
        Values per group (NaN-free), at least 2 groups and ``N > k``.

    Returns
    -------
    list of dict
        One record per pair, in the mapping's order: ``group_a``, ``group_b``,
        ``mean_rank_a``, ``mean_rank_b``, ``statistic`` (t), ``df``, ``p_value`` and
        ``p_holm``. When every observation is tied, ``statistic`` and the p-values are
        NaN.
    """
    names = list(samples)
    arrays = [np.asarray(samples[name], dtype=np.float64) for name in names]
    sizes = np.asarray([a.size for a in arrays], dtype=np.float64)
    k = len(arrays)
    n = float(sizes.sum())
    if k < 2 or n <= k or (sizes == 0).any():
        raise InvalidVolumeError(
            "Conover's test needs at least 2 non-empty groups and more observations "
            f"than groups; got group sizes {sizes.astype(int).tolist()}"
        )
    ranks = stats.rankdata(np.concatenate(arrays))
    splits = np.split(ranks, np.cumsum(sizes.astype(int))[:-1])
    mean_ranks = np.asarray([r.mean() for r in splits])
    s2 = (np.sum(ranks**2) - n * (n + 1.0) ** 2 / 4.0) / (n - 1.0)
    records: list[dict[str, Any]] = []
    # Tie-corrected Kruskal-Wallis H; undefined when every observation is tied.
    h = float(np.sum(sizes * (mean_ranks - (n + 1.0) / 2.0) ** 2) / s2) if s2 > 0 else math.nan
    df = n - k
    for i, j in itertools.combinations(range(k), 2):
        if math.isnan(h):
            t, p = math.nan, math.nan
        else:
            scale = math.sqrt(s2 * (n - 1.0 - h) / df * (1.0 / sizes[i] + 1.0 / sizes[j]))
            diff = abs(mean_ranks[i] - mean_ranks[j])
            t = diff / scale if scale > 0 else (math.inf if diff > 0 else 0.0)
            p = float(2.0 * stats.t.sf(t, df))
        records.append(
            {
                "group_a": names[i],
                "group_b": names[j],
                "mean_rank_a": float(mean_ranks[i]),
                "mean_rank_b": float(mean_ranks[j]),
                "statistic": float(t),
                "df": df,
                "p_value": p,
            }
        )
    adjusted = holm_correction([r["p_value"] for r in records])
    for record, p_adj in zip(records, adjusted, strict=True):
        record["p_holm"] = float(p_adj)
    return records


def _column(df: pd.DataFrame, name: str) -> pd.Series:
    if name not in df.columns:
        raise ConfigError(
            f"column {name!r} is not in the table; available: {', '.join(map(str, df.columns))}"
        )
    return df[name]


def _numeric(series: pd.Series, name: str) -> pd.Series:
    if not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        raise ConfigError(f"column {name!r} must be numeric, got dtype {series.dtype}")
    return series.astype(np.float64)


def _summary(values: NDArray[np.float64]) -> dict[str, float | int]:
    return {
        "n": int(values.size),
        "mean": float(values.mean()),
        "std": float(values.std(ddof=1)) if values.size > 1 else math.nan,
        "median": float(np.median(values)),
        "q1": float(np.percentile(values, 25)),
        "q3": float(np.percentile(values, 75)),
    }


def compare_groups(
    df: pd.DataFrame,
    value: str,
    group: str,
    *,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """Compare a measurement between groups (e.g. mitochondria volume per cell).

    Parameters
    ----------
    df : pandas.DataFrame
        One row per object.
    value : str
        Numeric column to compare.
    group : str
        Column holding the group of each row (any hashable values; shown as strings).
    alpha : float, optional
        Level for the ``significant`` flags. Default 0.05.

    Returns
    -------
    dict
        JSON-ready:

        - ``value``, ``group``, ``n_dropped`` (rows with NaN value or group), ``alpha``;
        - ``groups``: per group ``n``, ``mean``, ``std`` (``ddof=1``), ``median``,
          ``q1``, ``q3``, in sorted group order;
        - ``welch_t`` and ``mann_whitney_u`` (exactly 2 groups, else None):
          ``statistic``, ``p_value`` (two-sided), ``significant``
          (``scipy.stats.ttest_ind(equal_var=False)``,
          ``scipy.stats.mannwhitneyu(alternative="two-sided")``);
        - ``kruskal_wallis``: ``statistic`` (tie-corrected H), ``df``, ``p_value``,
          ``significant`` (``scipy.stats.kruskal``);
        - ``posthoc``: Conover pairwise records (see :func:`conover_posthoc`) with a
          ``significant`` flag from the Holm-adjusted p-value.

    Raises
    ------
    ConfigError
        If a column is missing, ``value`` is not numeric, or ``alpha`` is not in (0, 1).
    InvalidVolumeError
        If fewer than 2 groups have values, or a group has fewer than 2 values.

    Examples
    --------
    >>> table = pd.DataFrame({"v": [1.0, 2, 3, 4, 5, 6], "g": list("aaabbb")})
    >>> result = compare_groups(table, "v", "g")
    >>> round(result["welch_t"]["p_value"], 4), result["posthoc"][0]["group_b"]
    (0.0213, 'b')
    """
    if not 0.0 < float(alpha) < 1.0:
        raise ConfigError(f"alpha must lie in (0, 1), got {alpha!r}")
    values = _numeric(_column(df, value), value)
    groups = _column(df, group)
    keep = values.notna() & groups.notna()
    values, groups = values[keep], groups[keep]
    samples: dict[str, NDArray[np.float64]] = {}
    for key in sorted(groups.unique(), key=str):
        samples[str(key)] = values[groups == key].to_numpy()
    if len(samples) < 2:
        raise InvalidVolumeError(
            f"comparing {value!r} needs at least 2 groups in {group!r}, got {len(samples)}"
        )
    small = {k: len(v) for k, v in samples.items() if len(v) < 2}
    if small:
        raise InvalidVolumeError(
            f"every group needs at least 2 values of {value!r}; too few in {small}"
        )
    arrays = list(samples.values())

    def _test(statistic: float, p_value: float) -> dict[str, Any]:
        return {
            "statistic": float(statistic),
            "p_value": float(p_value),
            "significant": bool(p_value < alpha),
        }

    welch = mann_whitney = None
    if len(arrays) == 2:
        t_result = stats.ttest_ind(arrays[0], arrays[1], equal_var=False)
        welch = _test(t_result.statistic, t_result.pvalue)
        u_result = stats.mannwhitneyu(arrays[0], arrays[1], alternative="two-sided")
        mann_whitney = _test(u_result.statistic, u_result.pvalue)
    pooled = np.concatenate(arrays)
    if np.all(pooled == pooled[0]):  # scipy raises when every value is identical
        kruskal = {"statistic": math.nan, "p_value": math.nan, "significant": False}
    else:
        h_result = stats.kruskal(*arrays)
        kruskal = _test(h_result.statistic, h_result.pvalue)
    kruskal["df"] = len(arrays) - 1
    posthoc = conover_posthoc(samples)
    for record in posthoc:
        record["significant"] = bool(record["p_holm"] < alpha)
    return {
        "value": value,
        "group": group,
        "n_dropped": int((~keep).sum()),
        "alpha": float(alpha),
        "groups": {name: _summary(array) for name, array in samples.items()},
        "welch_t": welch,
        "mann_whitney_u": mann_whitney,
        "kruskal_wallis": kruskal,
        "posthoc": posthoc,
    }


def correlate(
    df: pd.DataFrame,
    x: str,
    y: str,
    *,
    method: Literal["pearson", "spearman"] = "pearson",
) -> dict[str, Any]:
    """Correlation of two numeric columns (e.g. S/V ratio vs distance to the nucleus).

    Parameters
    ----------
    df : pandas.DataFrame
        One row per object.
    x, y : str
        Numeric columns.
    method : {"pearson", "spearman"}, optional
        ``scipy.stats.pearsonr`` or ``scipy.stats.spearmanr``. Default "pearson".

    Returns
    -------
    dict
        ``x``, ``y``, ``method``, ``n`` (rows where both are finite), ``n_dropped``,
        ``r`` (coefficient; Spearman's rho), ``p_value`` (two-sided test of zero
        correlation) and, for Pearson, ``ci_low`` / ``ci_high`` (95 % Fisher-z
        interval; NaN when ``n < 4``).

    Raises
    ------
    ConfigError
        If a column is missing or not numeric, or ``method`` is unknown.
    InvalidVolumeError
        If fewer than 3 rows have finite values in both columns.

    Examples
    --------
    >>> table = pd.DataFrame({"a": [1.0, 2, 3, 4], "b": [2.0, 4, 5, 9]})
    >>> correlate(table, "a", "b", method="spearman")["r"]
    1.0
    """
    if method not in ("pearson", "spearman"):
        raise ConfigError(f"method must be 'pearson' or 'spearman', got {method!r}")
    xs = _numeric(_column(df, x), x).to_numpy()
    ys = _numeric(_column(df, y), y).to_numpy()
    keep = np.isfinite(xs) & np.isfinite(ys)
    n = int(keep.sum())
    if n < 3:
        raise InvalidVolumeError(
            f"correlating {x!r} and {y!r} needs at least 3 rows with both values, got {n}"
        )
    result: dict[str, Any] = {
        "x": x,
        "y": y,
        "method": method,
        "n": n,
        "n_dropped": int((~keep).sum()),
    }
    if method == "pearson":
        pearson = stats.pearsonr(xs[keep], ys[keep])
        result["r"] = float(pearson.statistic)
        result["p_value"] = float(pearson.pvalue)
        if n >= 4 and abs(result["r"]) < 1.0:
            interval = pearson.confidence_interval(confidence_level=0.95)
            result["ci_low"], result["ci_high"] = float(interval.low), float(interval.high)
        else:
            result["ci_low"] = result["ci_high"] = math.nan
    else:
        spearman = stats.spearmanr(xs[keep], ys[keep])
        result["r"] = float(spearman.statistic)
        result["p_value"] = float(spearman.pvalue)
    return result
