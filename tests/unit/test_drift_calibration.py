"""Calibration of the p-value drift tests: with no shift, they flag columns at their nominal rate."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlaas.drift import ColumnSpec, compare

ROWS = 500  # at most 1000 reference rows: the defaults are KS, chi-square and Z-tests
NUMERICAL = [f"num{i}" for i in range(15)]
CATEGORICAL = ["binary", "three", "five", "flag", "code"]
SPEC = ColumnSpec(numerical=NUMERICAL, categorical=CATEGORICAL)


def _sample(rng: np.random.Generator) -> pd.DataFrame:
    """One draw of 15 numerical columns of various shapes and 5 categorical ones of various kinds."""
    shapes = [
        lambda: rng.normal(10.0, 2.0, ROWS),
        lambda: rng.lognormal(0.0, 1.0, ROWS),
        lambda: rng.uniform(-1.0, 1.0, ROWS),
        lambda: rng.exponential(3.0, ROWS),
        lambda: rng.standard_t(3, ROWS),
    ]
    frame = pd.DataFrame({name: shapes[i % len(shapes)]() for i, name in enumerate(NUMERICAL)})
    frame.loc[rng.random(ROWS) < 0.05, "num0"] = np.nan
    frame["binary"] = rng.choice(np.array(["yes", "no"]), ROWS, p=[0.3, 0.7])
    frame["three"] = rng.choice(np.array(["a", "b", "c"]), ROWS, p=[0.2, 0.3, 0.5])
    frame["five"] = pd.Categorical(rng.choice(np.array(list("vwxyz")), ROWS, p=[0.1, 0.15, 0.2, 0.25, 0.3]))
    frame["flag"] = rng.random(ROWS) < 0.4
    frame["code"] = rng.integers(1, 5, ROWS).astype(float)
    frame.loc[rng.random(ROWS) < 0.05, "code"] = np.nan
    return frame


def _reports(seeds: range, correction: str | None) -> list[list[bool]]:
    """Per seed, which columns are flagged when both sides come from the same distribution."""
    flagged = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        report = compare(_sample(rng), _sample(rng), SPEC, correction=correction)
        assert {c.method for c in report.columns} == {"ks", "chisquare", "z"}
        flagged.append([c.drifted for c in report.columns])
    return flagged


def test_p_value_tests_flag_about_five_percent_of_unchanged_columns() -> None:
    flagged = np.array(_reports(range(200), correction=None))
    assert flagged.shape == (200, 20)
    assert 0.035 <= flagged.mean() <= 0.065


def test_bonferroni_keeps_the_family_wise_error_rate_at_five_percent() -> None:
    flagged = np.array(_reports(range(500), correction="bonferroni"))
    assert flagged.any(axis=1).mean() <= 0.075


def _zipf(k: int, a: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, k + 1) ** a
    return weights / weights.sum()


# Many categories, most of them rare: a long tail, three common values with a tail of 45 rare ones,
# 200 equally likely values (about 2.5 expected rows each), and near-unique ids.
MANY = {
    "long_tail": _zipf(60, 1.3),
    "rare_tail": np.r_[[0.3, 0.3, 0.25], np.full(45, 0.15 / 45)],
    "uniform200": np.full(200, 1 / 200),
    "ids": np.full(50_000, 1 / 50_000),
}


def _many_category_sample(rng: np.random.Generator) -> pd.DataFrame:
    return pd.DataFrame({name: rng.choice(p.size, ROWS, p=p).astype(str) for name, p in MANY.items()})


def test_chi_square_on_many_rare_categories_flags_about_five_percent_of_unchanged_columns() -> None:
    spec = ColumnSpec(categorical=list(MANY))
    flagged = []
    for seed in range(1000):
        rng = np.random.default_rng(10_000 + seed)
        report = compare(_many_category_sample(rng), _many_category_sample(rng), spec)
        assert {c.method for c in report.columns} == {"chisquare"}
        flagged.append([c.drifted for c in report.columns])
    rates = dict(zip(MANY, np.mean(flagged, axis=0), strict=True))
    # 3000 column tests: a standard error of 0.004 around 0.05; unpooled, these columns flagged 2-3%
    tail = (rates["long_tail"] + rates["rare_tail"] + rates["uniform200"]) / 3
    assert 0.04 <= tail <= 0.06, rates
    assert rates["ids"] <= 0.06, rates  # near-unique values: no evidence, never a flood of false alarms
