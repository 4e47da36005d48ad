"""Categorical tests with many and rare categories: sparse categories pooled, checked against scipy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats
from scipy.stats.contingency import expected_freq

from mlaas.drift import ColumnResult, ColumnSpec, compare
from mlaas.drift import stats as drift_stats


def categorical(ref: list[str], cur: list[str]) -> ColumnResult:
    """The default test of one categorical column."""
    report = compare(pd.DataFrame({"x": ref}), pd.DataFrame({"x": cur}), ColumnSpec(categorical=["x"]))
    return report.columns[0]


def pooled_by_hand(ref: np.ndarray, cur: np.ndarray) -> np.ndarray:
    """Cochran's rule with scipy's expected counts: cells under 5 pooled, a sparse pool merged once."""
    table = np.vstack([ref, cur])
    table = table[:, table.sum(axis=0) > 0]
    sparse = expected_freq(table).min(axis=0) < 5
    if not sparse.any():
        return table
    kept, other = table[:, ~sparse], table[:, sparse].sum(axis=1, keepdims=True)
    if kept.shape[1] >= 2 and expected_freq(np.hstack([kept, other]))[:, -1].min() < 5:
        kept[:, np.argmin(kept.sum(axis=0))] += other[:, 0]
        return kept
    return np.hstack([kept, other])


def test_thirty_new_categories_of_one_row_each_are_as_strong_evidence_as_one_new_category() -> None:
    ref = ["a", "b", "c"] * 100
    spread = categorical(ref, ["a", "b", "c"] * 90 + [f"new{i}" for i in range(30)])
    single = categorical(ref, ["a", "b", "c"] * 90 + ["new"] * 30)
    expected = scipy_stats.chi2_contingency([[100, 100, 100, 0], [90, 90, 90, 30]], correction=False)
    for result in (spread, single):
        assert result.method == "chisquare" and result.drifted
        assert (result.statistic, result.p_value) == (
            pytest.approx(expected.statistic), pytest.approx(expected.pvalue))
    assert expected.pvalue < 1e-6


@pytest.mark.parametrize("seed", range(40))
def test_chisquare_equals_scipy_on_the_pooled_table_of_random_sparse_tables(seed: int) -> None:
    rng = np.random.default_rng(seed)
    k = int(rng.integers(3, 120))
    weights = rng.dirichlet(np.full(k, rng.choice([0.1, 0.5, 2.0])))
    ref = rng.multinomial(int(rng.integers(30, 800)), weights)
    cur = rng.multinomial(int(rng.integers(30, 800)), rng.dirichlet(weights * 50 + 0.01))
    table = pooled_by_hand(ref, cur)
    statistic, p_value = drift_stats.chisquare(ref, cur)
    if table.shape[1] < 2:
        assert (statistic, p_value) == (0.0, 1.0)
        return
    expected = scipy_stats.chi2_contingency(table, correction=False)
    assert statistic == pytest.approx(expected.statistic)
    if table.shape[1] == 2 and expected.expected_freq.min() < 5:
        assert p_value == pytest.approx(scipy_stats.fisher_exact(table).pvalue)
    else:
        assert expected.expected_freq.min() >= 5  # every cell tested meets the rule
        assert p_value == pytest.approx(expected.pvalue)


def test_rare_categories_left_in_a_sparse_two_by_two_are_tested_exactly_with_fisher() -> None:
    ref = ["a"] * 300
    fisher = scipy_stats.fisher_exact([[300, 0], [297, 3]]).pvalue
    as_z = categorical(ref, ["a"] * 297 + ["b"] * 3)
    as_chisquare = categorical(ref, ["a"] * 297 + ["b", "c", "d"])  # pooled: the same 2 x 2 table
    assert (as_z.method, as_chisquare.method) == ("z", "chisquare")
    for result in (as_z, as_chisquare):
        assert result.p_value == pytest.approx(fisher) and not result.drifted
    moved = categorical(ref, ["a"] * 285 + ["b"] * 15)  # 7.5 expected rows of b per side: the normal Z-test
    z = scipy_stats.chi2_contingency([[300, 0], [285, 15]], correction=False)
    assert moved.p_value == pytest.approx(z.pvalue) and moved.drifted


def test_columns_of_distinct_values_carry_no_evidence_about_category_frequencies() -> None:
    ids = categorical([f"r{i}" for i in range(300)], [f"c{i}" for i in range(300)])
    assert (ids.statistic, ids.p_value, ids.drifted) == (0.0, 1.0, False)
