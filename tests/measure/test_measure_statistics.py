"""Group comparisons and correlations against scipy and a hand-worked Conover example."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from vemkit.errors import ConfigError, InvalidVolumeError
from vemkit.measure import compare_groups, conover_posthoc, correlate, holm_correction


def test_holm_hand_examples() -> None:
    # Sorted 0.01, 0.03, 0.04 -> 3 * 0.01, 2 * 0.03, max(0.06, 1 * 0.04).
    assert holm_correction([0.01, 0.04, 0.03]).tolist() == pytest.approx([0.03, 0.06, 0.06])
    assert holm_correction([0.5, 0.9]).tolist() == pytest.approx([1.0, 1.0])
    adjusted = holm_correction([0.02, math.nan, 0.01])
    assert adjusted[0] == pytest.approx(0.02)
    assert math.isnan(adjusted[1])
    assert adjusted[2] == pytest.approx(0.02)


def test_conover_hand_example_without_ties() -> None:
    # Ranks equal the values: mean ranks 2, 5, 8; N = 9, k = 3.
    # S^2 = N (N + 1) / 12 = 7.5; H = 12 / 90 * (36 + 225 + 576) / 3 - 30 = 7.2.
    # t = diff / sqrt(7.5 * (9 - 1 - 7.2) / 6 * (2 / 3)) = diff / sqrt(2 / 3), df = 6.
    samples = {"a": [1.0, 2, 3], "b": [4.0, 5, 6], "c": [7.0, 8, 9]}
    records = conover_posthoc(samples)
    assert [(r["group_a"], r["group_b"]) for r in records] == [("a", "b"), ("a", "c"), ("b", "c")]
    t_ab, t_ac = 3 / math.sqrt(2 / 3), 6 / math.sqrt(2 / 3)
    assert [r["statistic"] for r in records] == pytest.approx([t_ab, t_ac, t_ab])
    assert all(r["df"] == 6 for r in records)
    p_ab, p_ac = 2 * stats.t.sf(t_ab, 6), 2 * stats.t.sf(t_ac, 6)
    assert [r["p_value"] for r in records] == pytest.approx([p_ab, p_ac, p_ab])
    # Holm over 3 pairs: p_ac smallest (x3), then the two equal p_ab (x2, then x1 -> max).
    assert records[1]["p_holm"] == pytest.approx(3 * p_ac)
    assert records[0]["p_holm"] == pytest.approx(2 * p_ab)
    assert records[2]["p_holm"] == pytest.approx(2 * p_ab)
    assert p_ab == pytest.approx(0.010393, rel=1e-3)  # t = 3.674 on 6 df


def test_conover_with_ties_uses_tie_corrected_kruskal() -> None:
    samples = {"x": [1.0, 2, 2, 3], "y": [2.0, 3, 3, 4, 5], "z": [5.0, 5, 6]}
    records = conover_posthoc(samples)
    ranks = stats.rankdata(np.concatenate(list(samples.values())))
    n, k = len(ranks), 3
    h = stats.kruskal(*samples.values()).statistic
    s2 = (np.sum(ranks**2) - n * (n + 1) ** 2 / 4) / (n - 1)
    mean_x, mean_z = ranks[:4].mean(), ranks[-3:].mean()
    t = abs(mean_x - mean_z) / math.sqrt(s2 * (n - 1 - h) / (n - k) * (1 / 4 + 1 / 3))
    assert records[1]["statistic"] == pytest.approx(t)
    assert records[1]["p_value"] == pytest.approx(2 * stats.t.sf(t, n - k))


def test_two_groups_match_scipy() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 1.0, 25), rng.normal(1.8, 2.0, 30)
    table = pd.DataFrame({"volume_um3": np.concatenate([a, b]), "cell": ["c1"] * 25 + ["c2"] * 30})
    result = compare_groups(table, "volume_um3", "cell")
    welch = stats.ttest_ind(a, b, equal_var=False)
    assert result["welch_t"]["statistic"] == pytest.approx(welch.statistic)
    assert result["welch_t"]["p_value"] == pytest.approx(welch.pvalue)
    mwu = stats.mannwhitneyu(a, b, alternative="two-sided")
    assert result["mann_whitney_u"]["statistic"] == pytest.approx(mwu.statistic)
    assert result["mann_whitney_u"]["p_value"] == pytest.approx(mwu.pvalue)
    kw = stats.kruskal(a, b)
    assert result["kruskal_wallis"]["statistic"] == pytest.approx(kw.statistic)
    assert result["kruskal_wallis"]["p_value"] == pytest.approx(kw.pvalue)
    assert result["kruskal_wallis"]["df"] == 1
    assert result["groups"]["c1"]["n"] == 25
    assert result["groups"]["c2"]["mean"] == pytest.approx(b.mean())
    assert result["groups"]["c2"]["std"] == pytest.approx(b.std(ddof=1))
    assert len(result["posthoc"]) == 1


def test_three_groups_and_nan_rows() -> None:
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.normal(0, 1, 20), rng.normal(0.2, 1, 20), rng.normal(3, 1, 20)])
    groups = np.repeat(["a", "b", "c"], 20).astype(object)
    values[3] = np.nan
    groups[5] = None
    table = pd.DataFrame({"v": values, "g": groups})
    result = compare_groups(table, "v", "g")
    assert result["n_dropped"] == 2
    assert result["welch_t"] is None
    assert result["mann_whitney_u"] is None
    kept = table.dropna()
    kw = stats.kruskal(*(kept.loc[kept["g"] == g, "v"] for g in "abc"))
    assert result["kruskal_wallis"]["p_value"] == pytest.approx(kw.pvalue)
    pairs = {(r["group_a"], r["group_b"]): r for r in result["posthoc"]}
    assert set(pairs) == {("a", "b"), ("a", "c"), ("b", "c")}
    assert pairs[("a", "c")]["significant"]
    assert not pairs[("a", "b")]["significant"]


def test_correlate_matches_scipy() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=40)
    y = 0.6 * x + rng.normal(scale=0.8, size=40)
    table = pd.DataFrame({"sv": x, "dist": y})
    table.loc[0, "dist"] = np.nan
    pearson = correlate(table, "sv", "dist")
    reference = stats.pearsonr(x[1:], y[1:])
    assert pearson["n"] == 39
    assert pearson["n_dropped"] == 1
    assert pearson["r"] == pytest.approx(reference.statistic)
    assert pearson["p_value"] == pytest.approx(reference.pvalue)
    assert pearson["ci_low"] < pearson["r"] < pearson["ci_high"]
    spearman = correlate(table, "sv", "dist", method="spearman")
    reference = stats.spearmanr(x[1:], y[1:])
    assert spearman["r"] == pytest.approx(reference.statistic)
    assert spearman["p_value"] == pytest.approx(reference.pvalue)


def test_bad_input() -> None:
    table = pd.DataFrame({"v": [1.0, 2, 3, 4], "g": ["a", "a", "b", "b"], "s": list("wxyz")})
    with pytest.raises(ConfigError, match="not in the table"):
        compare_groups(table, "missing", "g")
    with pytest.raises(ConfigError, match="numeric"):
        compare_groups(table, "s", "g")
    with pytest.raises(InvalidVolumeError, match="at least 2 groups"):
        compare_groups(table.assign(g="a"), "v", "g")
    with pytest.raises(InvalidVolumeError, match="at least 2 values"):
        compare_groups(table.assign(g=["a", "b", "b", "b"]), "v", "g")
    with pytest.raises(ConfigError, match="method"):
        correlate(table, "v", "v", method="kendall")  # type: ignore[arg-type]
    with pytest.raises(InvalidVolumeError, match="at least 3"):
        correlate(table.iloc[:2], "v", "v")
