"""The drift engine: each method against scipy/numpy, method selection, corrections, edge cases."""

from __future__ import annotations

import json
import math
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats
from scipy.spatial import distance

from mlaas.drift import (
    INSUFFICIENT_DATA,
    ClassifierOptions,
    ColumnOptions,
    ColumnResult,
    ColumnSpec,
    Histogram,
    adjust_p_values,
    benjamini_hochberg,
    bonferroni,
    compare,
    default_method,
)
from mlaas.drift import stats as drift_stats
from mlaas.errors import InvalidInput

NUMERICAL = [f"num{i}" for i in range(15)]
CATEGORICAL = ["color", "size", "member", "region", "channel"]
SPEC = ColumnSpec(numerical=NUMERICAL, categorical=CATEGORICAL)
SHIFTED = {"num0", "num1", "color"}


def synthetic(rows: int, seed: int, *, shift: bool = False) -> pd.DataFrame:
    """15 normal columns and 5 categorical ones; the shift moves num0 and num1 by 0.5 sd and black to 30%."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({name: rng.normal(0.0, 1.0, rows) for name in NUMERICAL})
    if shift:
        frame[["num0", "num1"]] += 0.5
    black = 0.3 if shift else 0.1
    colors = np.array(["red", "green", "blue", "black"])
    frame["color"] = rng.choice(colors, rows, p=[(1 - black) / 3] * 3 + [black])
    frame["size"] = rng.choice(np.array(["S", "M", "L"]), rows)
    frame["member"] = rng.random(rows) < 0.4
    frame["region"] = rng.integers(1, 6, rows)
    frame["channel"] = pd.Categorical(rng.choice(np.array(["web", "app"]), rows))
    frame["row_id"] = np.arange(rows) + (rows if shift else 0)  # not in the spec: never compared
    return frame


def one_column(
    ref: Any, cur: Any, method: str | None = None, *, kind: str = "numerical", **kw: Any
) -> ColumnResult:
    """Compare a single column ``x``, optionally with a method override."""
    spec = ColumnSpec(numerical=["x"]) if kind == "numerical" else ColumnSpec(categorical=["x"])
    overrides = {"x": ColumnOptions(method=method)} if method else None
    report = compare(pd.DataFrame({"x": ref}), pd.DataFrame({"x": cur}), spec, overrides=overrides, **kw)
    return report.columns[0]


def number(value: float | None) -> float:
    """A statistic that must be there."""
    assert value is not None
    return value


def histogram_of(result: ColumnResult) -> Histogram:
    """A histogram that must be there."""
    assert result.histogram is not None
    return result.histogram


def labels(result: ColumnResult) -> list[Any]:
    """The categories shown in a column's histogram."""
    return list(histogram_of(result).labels or [])


def proportions(ref: pd.Series, cur: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies of each side over the union of categories, computed the plain pandas way."""
    table = pd.crosstab(
        pd.concat([ref, cur], ignore_index=True),
        np.repeat(["ref", "cur"], [len(ref), len(cur)]),
    )
    return (table["ref"] / table["ref"].sum()).to_numpy(), (table["cur"] / table["cur"].sum()).to_numpy()


RNG = np.random.default_rng(42)
REF_NUM = np.where(RNG.random(400) < 0.1, np.nan, RNG.normal(0.0, 1.0, 400))
CUR_NUM = RNG.normal(0.25, 1.2, 600)
REF_CAT = pd.Series(RNG.choice(np.array(["a", "b", "c"]), 300, p=[0.5, 0.3, 0.2]))
CUR_CAT = pd.Series(RNG.choice(np.array(["a", "b", "c", "d"]), 500, p=[0.4, 0.3, 0.2, 0.1]))


# --- every method against a direct scipy / numpy computation -------------------------------------


def test_ks_matches_scipy_on_the_non_missing_values() -> None:
    result = one_column(REF_NUM, CUR_NUM, "ks")
    expected = scipy_stats.ks_2samp(REF_NUM[~np.isnan(REF_NUM)], CUR_NUM)
    assert result.statistic == pytest.approx(expected.statistic)
    assert result.p_value == pytest.approx(expected.pvalue)
    assert result.drifted == (expected.pvalue < 0.05)
    assert (result.n_reference, result.missing_reference) == (
        int((~np.isnan(REF_NUM)).sum()),
        pytest.approx(0.1, abs=0.05),
    )


@pytest.mark.parametrize("shift, capped_p", [(0.0, None), (3.0, 0.001)])
def test_anderson_matches_scipy_with_its_capped_p_value(shift: float, capped_p: float | None) -> None:
    rng = np.random.default_rng(1)
    ref, cur = rng.normal(0.0, 1.0, 300), rng.normal(shift, 1.0, 300)
    result = one_column(ref, cur, "anderson")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = scipy_stats.anderson_ksamp([ref, cur])
    assert result.statistic == pytest.approx(expected.statistic)
    assert result.p_value == pytest.approx(expected.pvalue)
    assert 0.001 <= number(result.p_value) <= 0.25
    if capped_p is not None:
        assert result.p_value == capped_p and result.drifted


@pytest.mark.parametrize(
    "ref, cur",
    [
        (np.random.default_rng(2).normal(0, 1, 1000), np.random.default_rng(3).normal(0.3, 2, 777)),
        (
            np.random.default_rng(4).integers(0, 10, 500).astype(float),
            np.random.default_rng(5).integers(3, 12, 900),
        ),
        (np.array([1.0]), np.array([4.0, 5.0])),
        (np.full(50, 2.0), np.full(80, 2.0)),
        (np.array([0.0, 0.0, 1.0, 1.0]), np.array([1.0, 1.0, 0.0])),
    ],
)
def test_wasserstein_from_sorted_samples_equals_scipy(ref: np.ndarray, cur: np.ndarray) -> None:
    ours = drift_stats.wasserstein(np.sort(ref).astype(float), np.sort(cur).astype(float))
    assert ours == pytest.approx(scipy_stats.wasserstein_distance(ref, cur), rel=1e-9, abs=1e-12)


def test_wasserstein_method_is_normalised_by_the_reference_standard_deviation() -> None:
    result = one_column(REF_NUM, CUR_NUM, "wasserstein")
    ref = REF_NUM[~np.isnan(REF_NUM)]
    expected = scipy_stats.wasserstein_distance(ref, CUR_NUM) / np.std(ref)
    assert result.statistic == pytest.approx(expected, rel=1e-9)
    assert result.p_value is None and result.drifted == (expected >= 0.1)


def test_chisquare_is_the_two_sample_homogeneity_test_even_with_a_category_new_in_current() -> None:
    result = one_column(REF_CAT, CUR_CAT, "chisquare", kind="categorical")
    table = pd.crosstab(pd.concat([REF_CAT, CUR_CAT]), np.repeat([0, 1], [len(REF_CAT), len(CUR_CAT)]))
    expected = scipy_stats.chi2_contingency(table.to_numpy(), correction=False)
    assert result.statistic == pytest.approx(expected.statistic)
    assert result.p_value == pytest.approx(expected.pvalue)
    assert 0.0 < number(result.p_value) < 0.05 and result.drifted


def test_chisquare_does_not_flag_identical_proportions_on_samples_of_different_sizes() -> None:
    ref = pd.Series(np.tile(["a", "b", "b", "c"], 2_500))
    cur = pd.Series(np.tile(["a", "b", "b", "c"], 25_000))
    result = one_column(ref, cur, "chisquare", kind="categorical")
    assert (result.statistic, result.p_value, result.drifted) == (
        pytest.approx(0.0),
        pytest.approx(1.0),
        False,
    )


def test_z_test_matches_the_pooled_two_proportion_formula_and_the_2x2_chi_square() -> None:
    ref = pd.Series(["yes"] * 120 + ["no"] * 180)
    cur = pd.Series(["yes"] * 250 + ["no"] * 250)
    result = one_column(ref, cur, kind="categorical")
    p1, p2, pooled = 0.4, 0.5, 370 / 800
    z = (p1 - p2) / math.sqrt(pooled * (1 - pooled) * (1 / 300 + 1 / 500))
    assert result.method == "z"
    assert abs(number(result.statistic)) == pytest.approx(abs(z))
    assert result.p_value == pytest.approx(2 * scipy_stats.norm.sf(abs(z)))
    chi2 = scipy_stats.chi2_contingency([[120, 180], [250, 250]], correction=False)
    assert result.p_value == pytest.approx(chi2.pvalue)
    as_chisquare = one_column(ref, cur, "chisquare", kind="categorical")  # no Yates correction on 2 x 2
    assert (as_chisquare.statistic, as_chisquare.p_value) == (pytest.approx(z**2), pytest.approx(chi2.pvalue))


def _psi(p: np.ndarray, q: np.ndarray) -> float:
    p, q = np.maximum(p, 1e-4), np.maximum(q, 1e-4)
    return float(np.sum((p - q) * np.log(p / q)))


DISTANCES = {
    "psi": _psi,
    "jensenshannon": lambda p, q: float(distance.jensenshannon(p, q)),
    "hellinger": lambda p, q: math.sqrt(1 - np.sum(np.sqrt(p * q))),
}


@pytest.mark.parametrize("method", sorted(DISTANCES))
def test_distances_on_categories_use_frequencies_over_the_union(method: str) -> None:
    result = one_column(REF_CAT, CUR_CAT, method, kind="categorical")
    assert result.statistic == pytest.approx(DISTANCES[method](*proportions(REF_CAT, CUR_CAT)))
    assert result.p_value is None and result.threshold == 0.1


@pytest.mark.parametrize("method", sorted(DISTANCES))
def test_distances_on_numbers_use_the_sturges_bins_of_the_pooled_range(method: str) -> None:
    ref = REF_NUM[~np.isnan(REF_NUM)]
    edges = np.histogram_bin_edges(np.concatenate([ref, CUR_NUM]), bins="sturges")
    p, q = (np.histogram(x, edges)[0] / x.size for x in (ref, CUR_NUM))
    result = one_column(REF_NUM, CUR_NUM, method)
    assert result.statistic == pytest.approx(DISTANCES[method](p, q))
    assert result.histogram is not None and result.histogram.edges == pytest.approx(edges.tolist())
    assert result.histogram.reference == np.histogram(ref, edges)[0].tolist()


@pytest.mark.parametrize("method", sorted(DISTANCES))
def test_distances_on_numbers_with_few_values_count_each_value(method: str) -> None:
    ref = pd.Series(np.random.default_rng(6).integers(0, 10, 800).astype(float))
    cur = pd.Series(np.random.default_rng(7).integers(2, 12, 900).astype(float))
    result = one_column(ref, cur, method)
    assert result.statistic == pytest.approx(DISTANCES[method](*proportions(ref, cur)))


@pytest.mark.parametrize("size", [1, 2, 7, 8, 33, 1000, 1024, 4096, 100_000])
def test_sturges_edges_and_sorted_histogram_equal_numpy(size: int) -> None:
    values = np.sort(np.random.default_rng(size).integers(-5, 6, size).astype(float))
    edges = drift_stats.sturges_edges(values[0], values[-1], size)
    assert np.array_equal(edges, np.histogram_bin_edges(values, bins="sturges"))
    assert np.array_equal(drift_stats.histogram_sorted(values, edges), np.histogram(values, edges)[0])


# --- method selection --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, n_reference, n_distinct, expected",
    [
        ("numerical", 1000, 6, "ks"),
        ("numerical", 1001, 6, "wasserstein"),
        ("numerical", 1000, 5, "chisquare"),
        ("numerical", 1000, 2, "z"),
        ("numerical", 1001, 5, "jensenshannon"),
        ("categorical", 1000, 3, "chisquare"),
        ("categorical", 1000, 2, "z"),
        ("categorical", 1001, 2, "jensenshannon"),
        ("categorical", 5000, 40, "jensenshannon"),
    ],
)
def test_default_method(kind: str, n_reference: int, n_distinct: int, expected: str) -> None:
    assert default_method(kind, n_reference, n_distinct) == expected


def test_selection_counts_the_non_missing_reference_rows() -> None:
    ref = np.where(np.arange(1200) < 300, np.nan, np.random.default_rng(8).normal(size=1200))
    assert one_column(ref, np.random.default_rng(9).normal(size=1200)).method == "ks"


@pytest.mark.parametrize("rows, method", [(500, "ks"), (50_000, "wasserstein")])
def test_injected_shifts_are_flagged_at_the_defaults(rows: int, method: str) -> None:
    report = compare(synthetic(rows, 1), synthetic(rows, 2, shift=True), SPEC)
    assert set(report.drifted_columns) >= SHIFTED
    assert report.columns[0].method == method


def test_unshifted_large_data_flags_no_column() -> None:
    report = compare(synthetic(50_000, 1), synthetic(50_000, 2), SPEC)
    assert {c.method for c in report.columns} == {"wasserstein", "jensenshannon"}
    assert report.drifted_columns == [] and not report.dataset_drift


def test_overrides_change_method_and_threshold() -> None:
    overrides = {"num2": ColumnOptions(method="psi"), "num3": ColumnOptions(threshold=1e-9)}
    report = compare(synthetic(500, 1), synthetic(500, 2), SPEC, overrides=overrides)
    by_name = {c.column: c for c in report.columns}
    assert (by_name["num2"].method, by_name["num2"].threshold) == ("psi", 0.1)
    assert (by_name["num3"].method, by_name["num3"].threshold, by_name["num3"].drifted) == ("ks", 1e-9, False)


# --- multiple-testing corrections ----------------------------------------------------------------


def test_bonferroni_on_fixed_p_values() -> None:
    assert bonferroni([0.01, 0.02, 0.2, 0.6]) == pytest.approx([0.04, 0.08, 0.8, 1.0])


@pytest.mark.parametrize(
    "p_values, expected",
    [
        ([0.01, 0.04, 0.03, 0.20], [0.04, 0.16 / 3, 0.16 / 3, 0.20]),
        ([0.5, 0.5, 0.9], [0.75, 0.75, 0.9]),
        ([0.001, 0.8], [0.002, 0.8]),
        ([0.9, 0.95], [0.95, 0.95]),
    ],
)
def test_benjamini_hochberg_on_fixed_p_values(p_values: list[float], expected: list[float]) -> None:
    assert benjamini_hochberg(p_values) == pytest.approx(expected)


def test_corrections_accept_no_p_values_and_reject_unknown_names() -> None:
    assert adjust_p_values([], "bh").size == 0 and bonferroni([]).size == 0
    with pytest.raises(InvalidInput, match="holm"):
        adjust_p_values([0.1], "holm")


@pytest.mark.parametrize("correction", ["bonferroni", "bh"])
def test_correction_applies_to_p_value_tests_only(correction: str) -> None:
    same = ["yes"] * 100 + ["no"] * 100
    ref = pd.DataFrame({"a": same, "b": same, "c": same, "d": same, "e": same})
    cur = ref.copy()
    cur["a"] = ["yes"] * 122 + ["no"] * 78  # z-test p ~ 0.03
    cur["e"] = ["yes"] * 150 + ["no"] * 50
    spec = ColumnSpec(categorical=list("abcde"))
    raw = compare(ref, cur, spec)
    corrected = compare(ref, cur, spec, correction=correction, overrides={"e": ColumnOptions(method="psi")})
    assert raw.drifted_columns == ["a", "e"] and corrected.drifted_columns == ["e"]
    a = corrected.columns[0]
    assert a.adjusted_p_value == pytest.approx(
        min(1.0, number(a.p_value) * 4)
    )  # 4 p-value tests, the rest p = 1
    assert corrected.columns[4].adjusted_p_value is None and corrected.correction == correction


# --- edge cases ----------------------------------------------------------------------------------


@pytest.mark.parametrize("rows", [50, 2000])
@pytest.mark.parametrize(
    "method", [None, "ks", "anderson", "wasserstein", "chisquare", "z", *sorted(DISTANCES)]
)
def test_constant_columns(rows: int, method: str | None) -> None:
    same = one_column(np.full(rows, 3.0), np.full(rows + 7, 3.0), method)
    moved = one_column(np.full(rows, 3.0), np.full(rows + 7, 4.0), method)
    assert (same.drifted, moved.drifted) == (False, True)
    assert all(math.isfinite(number(r.statistic)) for r in (same, moved))


def test_categorical_constants_and_categories_on_one_side_only() -> None:
    assert not one_column(["x"] * 2000, ["x"] * 40, kind="categorical").drifted
    assert one_column(["x"] * 2000, ["y"] * 40, kind="categorical").drifted
    result = one_column(["a", "b"] * 1000, ["a", "b", "c"] * 1000, kind="categorical")
    assert result.method == "jensenshannon" and result.drifted and math.isfinite(number(result.statistic))


def test_missing_values_are_reported_and_left_out_of_the_tests() -> None:
    ref = pd.Series([1.5, None, np.inf, 2.5] * 50, dtype="Float64")
    cur = pd.Series(np.r_[np.arange(150.0), [np.nan] * 50])
    result = one_column(ref.astype(object), cur, "ks")
    assert (result.missing_reference, result.missing_current) == (0.5, 0.25)
    assert (result.n_reference, result.n_current) == (100, 150)
    assert result.p_value == pytest.approx(scipy_stats.ks_2samp([1.5, 2.5] * 50, np.arange(150.0)).pvalue)
    labels = pd.Series(["a", None, "b", np.nan] * 50)
    cat = one_column(labels, pd.Series(["a", "b"] * 50, dtype="category"), kind="categorical")
    assert (cat.missing_reference, cat.missing_current, cat.drifted) == (0.5, 0.0, False)


def test_booleans_are_categories() -> None:
    result = one_column(
        [True, False] * 100, pd.array([True, None, False, True] * 50, dtype="boolean"), kind="categorical"
    )
    assert result.method == "z" and result.missing_current == 0.25
    assert sorted(labels(result)) == [False, True] and all(type(v) is bool for v in labels(result))


def test_integer_codes_listed_as_categorical_stay_categories_when_missing_values_make_them_float() -> None:
    ref = pd.Series(np.tile([1, 2, 3, 4], 100))
    cur = pd.Series(np.r_[np.tile([1.0, 2.0, 3.0, 4.0], 100), [np.nan] * 10])
    result = one_column(ref, cur, kind="categorical")
    assert result.method == "chisquare" and result.p_value == pytest.approx(1.0) and not result.drifted
    assert sorted(labels(result)) == [1, 2, 3, 4] and all(type(v) is int for v in labels(result))


def test_whole_numbers_beyond_int64_stay_distinct_and_exact_categories() -> None:
    ref = pd.Series([1e19] * 50 + [2e19] * 50 + [np.nan] * 5)
    cur = pd.Series([2e19] * 88 + [3.0] * 12)
    result = one_column(ref, cur, kind="categorical")
    expected = scipy_stats.chi2_contingency([[50, 50, 0], [0, 88, 12]], correction=False)
    assert result.method == "chisquare" and result.drifted
    assert result.p_value == pytest.approx(expected.pvalue) and number(result.p_value) < 1e-10
    assert sorted(labels(result)) == [3, 10**19, 2 * 10**19] and all(type(v) is int for v in labels(result))
    assert histogram_of(result).reference == [50, 50, 0]


def test_text_dtypes_align_across_sides_and_unused_categories_are_ignored() -> None:
    values = ["p", "q", "r"] * 200
    cur = pd.Series(pd.Categorical(values, categories=["p", "q", "r", "never"]))
    for ref in (pd.Series(values, dtype="str"), pd.Series(values, dtype=object)):
        result = one_column(ref, cur, kind="categorical")
        assert result.statistic == pytest.approx(0.0) and not result.drifted
        assert sorted(labels(result)) == ["p", "q", "r"]


def test_numbers_stored_as_objects_are_numerical_and_words_are_rejected_by_name() -> None:
    ref = pd.Series(list(np.arange(100.0)), dtype=object)
    assert one_column(ref, np.arange(100.0), "ks").p_value == pytest.approx(1.0)
    with pytest.raises(InvalidInput, match="'x'.*numerical"):
        one_column(["a", "b"] * 50, np.arange(100.0))


def test_mismatched_columns_are_named() -> None:
    ref, cur = synthetic(100, 1).drop(columns=["num3"]), synthetic(100, 2).drop(columns=["color", "size"])
    with pytest.raises(InvalidInput, match=r"reference data: \['num3'\]"):
        compare(ref, cur, SPEC)
    with pytest.raises(InvalidInput, match=r"current data: \['color', 'size'\]"):
        compare(synthetic(100, 1), cur, SPEC)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"spec": ColumnSpec()}, "no column"),
        ({"spec": ColumnSpec(numerical=["num0"], categorical=["num0"])}, r"more than once.*num0"),
        ({"overrides": {"nope": ColumnOptions(method="ks")}}, "not in the spec.*nope"),
        ({"overrides": {"num0": ColumnOptions(method="magic")}}, "unknown method 'magic'"),
        ({"overrides": {"color": ColumnOptions(method="ks")}}, "numerical column, 'color'"),
        ({"overrides": {"num0": ColumnOptions(threshold=-1)}}, "threshold"),
        ({"overrides": {"size": ColumnOptions(method="z")}}, "at most 2 distinct values; 'size' has 3"),
        ({"drift_share": 0}, "drift_share"),
        ({"min_rows": 0}, "min_rows"),
        ({"correction": "holm"}, "holm"),
        ({"domain_classifier": ClassifierOptions(folds=1)}, "folds >= 2"),
    ],
)
def test_invalid_requests_raise_invalid_input(kwargs: dict[str, Any], message: str) -> None:
    arguments = {"spec": SPEC, **kwargs}
    with pytest.raises(InvalidInput, match=message):
        compare(synthetic(100, 1), synthetic(100, 2), **arguments)


def test_duplicated_column_is_rejected() -> None:
    ref = synthetic(100, 1)
    with pytest.raises(InvalidInput, match="duplicated.*num0"):
        compare(pd.concat([ref, ref[["num0"]]], axis=1), synthetic(100, 2), SPEC)


def test_too_few_rows_is_insufficient_data_not_drift() -> None:
    small = one_column(np.zeros(20), np.ones(500))
    assert (small.status, small.drifted, small.statistic, small.p_value) == (
        INSUFFICIENT_DATA,
        False,
        None,
        None,
    )
    assert one_column(np.zeros(20), np.ones(500), min_rows=10).drifted
    empty = one_column([np.nan] * 50, [np.nan] * 50)
    assert (empty.status, empty.missing_reference, empty.histogram) == (INSUFFICIENT_DATA, 1.0, None)


def test_dataset_verdict_uses_the_share_of_tested_columns() -> None:
    ref = pd.DataFrame({"a": np.zeros(100), "b": np.zeros(100), "c": np.zeros(100), "d": np.zeros(100)})
    cur = pd.DataFrame({"a": np.ones(100), "b": np.ones(100), "c": np.zeros(100), "d": np.zeros(100)})
    cur.loc[5:, "d"] = np.nan  # 5 rows left: insufficient, not counted
    spec = ColumnSpec(numerical=list("abcd"))
    report = compare(ref, cur, spec)
    assert report.drifted_columns == ["a", "b"] and report.share_drifted == pytest.approx(2 / 3)
    assert report.dataset_drift and not compare(ref, cur, spec, drift_share=0.7).dataset_drift


def test_histograms_share_bins_and_cap_categories() -> None:
    ref = pd.Series([f"c{i:02d}" for i in range(30)] * 10 + ["c00"] * 100)
    cur = pd.Series([f"c{i:02d}" for i in range(30)] * 20)
    histogram = histogram_of(one_column(ref, cur, kind="categorical"))
    assert histogram.labels is not None and histogram.labels[0] == "c00" and len(histogram.labels) == 20
    assert sum(histogram.reference) + histogram.other_reference == len(ref)
    assert (histogram.other_current, histogram.edges) == (10 * 20, None)


def test_to_dict_is_plain_json() -> None:
    report = compare(synthetic(300, 1), synthetic(300, 2, shift=True), SPEC, correction="bh")
    data = report.to_dict()
    assert json.loads(json.dumps(data, allow_nan=False)) == data
    assert data["columns"][0]["column"] == "num0" and data["domain_classifier"] is None

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        else:
            assert value is None or type(value) in (str, int, float, bool)

    walk(data)


# --- domain classifier ---------------------------------------------------------------------------

FAST = ClassifierOptions(max_rows=800)


def test_domain_classifier_detects_the_shift_on_shared_columns_only() -> None:
    drifted = compare(synthetic(1200, 1), synthetic(1200, 2, shift=True), SPEC, domain_classifier=FAST)
    steady = compare(synthetic(1200, 1), synthetic(1200, 2), SPEC, domain_classifier=FAST)
    assert drifted.domain_classifier is not None and steady.domain_classifier is not None
    assert drifted.domain_classifier.drifted and number(drifted.domain_classifier.auc) > 0.6
    assert not steady.domain_classifier.drifted  # row_id differs completely but is not in the spec
    assert (steady.domain_classifier.n_reference, len(steady.domain_classifier.auc_folds)) == (800, 5)


def test_domain_classifier_is_reproducible_and_reports_insufficient_data() -> None:
    runs = [compare(synthetic(300, 1), synthetic(300, 2), SPEC, domain_classifier=True) for _ in range(2)]
    assert runs[0].domain_classifier == runs[1].domain_classifier
    small = compare(synthetic(20, 1), synthetic(300, 2), SPEC, domain_classifier=True).domain_classifier
    assert small is not None and (small.status, small.auc, small.drifted) == (INSUFFICIENT_DATA, None, False)
