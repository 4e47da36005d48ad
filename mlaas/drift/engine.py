"""Data-drift report of a current data frame against a reference, column by column.

Method per column, unless overridden (Evidently's defaults; "distinct" counts both sides' non-missing
values together, "rows" the reference's non-missing values):

- reference <= 1000 rows: numerical with more than 5 distinct values -> ``ks``; any other column ->
  ``chisquare`` (more than 2 distinct values) or ``z`` (2 or fewer). Drift when p < 0.05.
- reference > 1000 rows: numerical with more than 5 distinct values -> ``wasserstein`` (normalised by
  the reference standard deviation); any other column -> ``jensenshannon``. Drift when >= 0.1.

Count-based methods (chisquare, z, psi, jensenshannon, hellinger) compare category frequencies over
the union of categories; on a numerical column they compare the frequencies of its distinct values
when both sides together hold at most 20 of them, else the counts in the Sturges bins of the pooled
range (``np.histogram_bin_edges(pooled, bins="sturges")``, the bins Evidently uses). Those bins also
make the histogram of the report.

Missing values (NaN, None, NA and, for numerical columns, infinities) are reported as a share of the
rows on each side and left out of the tests. A side with fewer than ``min_rows`` (default 30)
non-missing values gets status "insufficient_data" and is never counted as drifted: below ~30 the
chi-square approximation and the normalising standard deviation are unreliable. The dataset drifts
when the share of drifted columns, among the columns with status "ok", is at least ``drift_share``.
A ``correction`` ("bonferroni" or "bh") adjusts the p-values of the p-value tests together; distance
methods are never corrected.

The optional domain classifier looks at the columns jointly: a HistGradientBoostingClassifier (native
categorical splits on frequency-ranked category codes, native missing values) learns to tell current
rows from reference rows on the spec's columns, at most ``max_rows`` (default 10,000) sampled per side
with ``random_state``, and its stratified 5-fold ROC AUC is reported. It flags drift at AUC >= 0.55: a
single normal feature reaches that with a mean shift of ~0.18 sd, while with no drift the AUC has a
standard deviation of ~0.02 around 0.5 at 500 rows per side and ~0.01 at 2,000.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import StratifiedKFold, cross_val_score
from threadpoolctl import threadpool_limits

from mlaas.drift import stats
from mlaas.errors import InvalidInput

NUMERICAL = "numerical"
CATEGORICAL = "categorical"
OK = "ok"
INSUFFICIENT_DATA = "insufficient_data"
DEFAULT_MIN_ROWS = 30
SMALL_REFERENCE = 1000  # at most this many reference rows: p-value tests, above: distances
FEW_DISTINCT = 5  # numerical columns with at most this many distinct values are tested as categories
TOP_CATEGORIES = 20  # categories shown one by one in a histogram; the rest are summed as "other"
PARALLEL_FROM_ROWS = 50_000  # from this many rows on a side, columns are compared on a thread per core

Statistic = tuple[float, float | None]


@dataclass(frozen=True)
class ColumnSpec:
    """Which columns to compare, and as what."""

    numerical: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ColumnOptions:
    """Per-column override of the method (by name) and of its threshold."""

    method: str | None = None
    threshold: float | None = None


@dataclass(frozen=True)
class _Method:
    fn: Callable[[Any, Any], Statistic]
    threshold: float
    has_p_value: bool
    on_samples: bool  # True: sorted numerical samples, False: aligned counts
    numerical_only: bool = False


def _distance(fn: Callable[[Any, Any], float]) -> Callable[[Any, Any], Statistic]:
    return lambda ref, cur: (fn(ref, cur), None)


# Every p-value test shares the 0.05 level (Evidently gives "anderson" 0.1) so that the corrections
# act on one significance level.
METHODS: dict[str, _Method] = {
    "ks": _Method(stats.ks, 0.05, True, True, numerical_only=True),
    "anderson": _Method(stats.anderson, 0.05, True, True, numerical_only=True),
    "wasserstein": _Method(_distance(stats.wasserstein_norm), 0.1, False, True, numerical_only=True),
    "chisquare": _Method(stats.chisquare, 0.05, True, False),
    "z": _Method(stats.z_test, 0.05, True, False),
    "psi": _Method(_distance(stats.psi), 0.1, False, False),
    "jensenshannon": _Method(_distance(stats.jensenshannon), 0.1, False, False),
    "hellinger": _Method(_distance(stats.hellinger), 0.1, False, False),
}


@dataclass(frozen=True)
class Histogram:
    """Shared bins (numerical) or top categories (categorical) with the counts of each side."""

    edges: list[float] | None
    labels: list[Any] | None
    reference: list[int]
    current: list[int]
    other_reference: int = 0  # categorical: rows in the categories beyond the top ones
    other_current: int = 0


@dataclass(frozen=True)
class _Column:
    """Both sides of one column: sorted finite values (numerical) or aligned category counts."""

    name: str
    kind: str
    reference: np.ndarray
    current: np.ndarray
    sizes: tuple[int, int]  # non-missing values per side
    missing: tuple[float, float]  # share of missing rows per side
    n_distinct: int
    labels: pd.Index | None = None  # categorical: most frequent first

    def counts(self) -> tuple[stats.IntArray, stats.IntArray]:
        if self.kind == NUMERICAL:
            return stats.binned_counts(self.reference, self.current)
        return self.reference, self.current

    def histogram(self) -> Histogram | None:
        if not sum(self.sizes):
            return None
        if self.kind == NUMERICAL:
            edges, ref, cur = stats.pooled_histogram(self.reference, self.current)
            return Histogram(edges.tolist(), None, ref.tolist(), cur.tolist())
        ref, cur, top, rest = self.reference, self.current, slice(TOP_CATEGORIES), slice(TOP_CATEGORIES, None)
        shown: Any = self.labels[top] if self.labels is not None else []
        labels = [v.item() if isinstance(v, np.generic) else v for v in shown]
        return Histogram(
            None, labels, ref[top].tolist(), cur[top].tolist(), int(ref[rest].sum()), int(cur[rest].sum())
        )


def _prepare(name: str, kind: str, reference: pd.Series, current: pd.Series) -> _Column:
    ref: np.ndarray
    cur: np.ndarray
    labels = None
    if kind == CATEGORICAL:
        labels, ref, cur = stats.category_counts(reference, current)
        sizes, n_distinct = (int(ref.sum()), int(cur.sum())), len(labels)
    else:
        try:
            (ref, _), (cur, _) = stats.finite_sorted(reference), stats.finite_sorted(current)
        except (ValueError, TypeError) as ex:
            raise InvalidInput(f"column {name!r} is listed as numerical but holds non-numeric values") from ex
        sizes, n_distinct = (ref.size, cur.size), stats.pooled_distinct(ref, cur)
    return _Column(name, kind, ref, cur, sizes, _missing(sizes, reference, current), n_distinct, labels)


def _missing(sizes: tuple[int, int], reference: pd.Series, current: pd.Series) -> tuple[float, float]:
    ref_rows, cur_rows = len(reference), len(current)
    return (1.0 - sizes[0] / ref_rows if ref_rows else 0.0, 1.0 - sizes[1] / cur_rows if cur_rows else 0.0)


@dataclass(frozen=True)
class ColumnResult:
    """The drift verdict on one column; n_* count the non-missing values the test used."""

    column: str
    kind: str
    method: str
    statistic: float | None
    p_value: float | None
    adjusted_p_value: float | None
    threshold: float
    drifted: bool
    status: str
    missing_reference: float
    missing_current: float
    n_reference: int
    n_current: int
    histogram: Histogram | None


@dataclass(frozen=True)
class ClassifierOptions:
    """Settings of the domain classifier; ``max_rows`` caps each side by sampling without replacement."""

    threshold: float = 0.55
    max_rows: int = 10_000
    folds: int = 5


@dataclass(frozen=True)
class DomainClassifierResult:
    """Cross-validated ROC AUC of a model that tells current rows from reference rows."""

    model: str
    auc: float | None
    auc_folds: list[float]
    threshold: float
    drifted: bool
    status: str
    n_reference: int
    n_current: int


@dataclass(frozen=True)
class DriftReport:
    """Per-column results, the dataset verdict and the optional domain-classifier check."""

    columns: list[ColumnResult]
    drifted_columns: list[str]
    share_drifted: float
    drift_share: float
    dataset_drift: bool
    correction: str | None
    n_reference_rows: int
    n_current_rows: int
    domain_classifier: DomainClassifierResult | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable data: Python scalars only, None for any non-finite number."""
        data: dict[str, Any] = jsonable(asdict(self))
        return data


def jsonable(value: Any) -> Any:
    """Nested dicts, lists and scalars as plain JSON data: numpy scalars unwrapped, NaN and inf as None."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value if value is None or isinstance(value, str | int | float) else str(value)


def default_method(kind: str, n_reference: int, n_distinct: int) -> str:
    """The method Evidently's rules choose for a column."""
    if kind == NUMERICAL and n_distinct > FEW_DISTINCT:
        return "ks" if n_reference <= SMALL_REFERENCE else "wasserstein"
    if n_reference <= SMALL_REFERENCE:
        return "chisquare" if n_distinct > 2 else "z"
    return "jensenshannon"


def adjust_p_values(p_values: Any, correction: str) -> np.ndarray:
    """Adjust p-values for multiple testing: "bonferroni" or "bh" (Benjamini-Hochberg)."""
    if correction not in stats.CORRECTIONS:
        raise InvalidInput(f"unknown correction {correction!r}; use one of {sorted(stats.CORRECTIONS)}")
    return stats.CORRECTIONS[correction](p_values)


def _check_inputs(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    spec: ColumnSpec,
    overrides: Mapping[str, ColumnOptions],
    drift_share: float,
    min_rows: int,
) -> None:
    columns = [*spec.numerical, *spec.categorical]
    if not columns:
        raise InvalidInput("the column spec lists no column")
    duplicated = {c for frame in (reference, current) for c in frame.columns[frame.columns.duplicated()]}
    problems = {
        "columns listed more than once in the spec": {c for c in columns if columns.count(c) > 1},
        "columns missing from the reference data": set(columns) - set(reference.columns),
        "columns missing from the current data": set(columns) - set(current.columns),
        "columns duplicated in the data": set(columns) & duplicated,
        "overrides name columns that are not in the spec": set(overrides) - set(columns),
    }
    for problem, names in problems.items():
        if names:
            raise InvalidInput(f"{problem}: {sorted(names, key=str)}")
    for name, options in overrides.items():
        method = METHODS.get(options.method or "ks")
        if method is None:
            raise InvalidInput(
                f"unknown method {options.method!r} for {name!r}; use one of {sorted(METHODS)}"
            )
        if options.method and method.numerical_only and name not in spec.numerical:
            raise InvalidInput(f"method {options.method!r} needs a numerical column, {name!r} is categorical")
        if options.threshold is not None and not (np.isfinite(options.threshold) and options.threshold > 0):
            raise InvalidInput(f"threshold for column {name!r} must be a positive number")
    if not 0.0 < drift_share <= 1.0:
        raise InvalidInput("drift_share must be in (0, 1]")
    if min_rows < 1:
        raise InvalidInput("min_rows must be at least 1")


def _evaluate(column: _Column, options: ColumnOptions, min_rows: int) -> ColumnResult:
    (n_ref, n_cur), n_distinct = column.sizes, column.n_distinct
    name = options.method or default_method(column.kind, n_ref, n_distinct)
    method = METHODS[name]
    threshold = method.threshold if options.threshold is None else float(options.threshold)
    statistic: float | None = None
    p_value: float | None = None
    enough = min(n_ref, n_cur) >= min_rows
    if enough:
        if name == "z" and n_distinct > 2:
            raise InvalidInput(
                f"method 'z' needs at most 2 distinct values; {column.name!r} has {n_distinct}"
            )
        samples = (column.reference, column.current) if method.on_samples else column.counts()
        statistic, p_value = method.fn(*samples)
    score = p_value if method.has_p_value else statistic
    drifted = score is not None and (score < threshold if method.has_p_value else score >= threshold)
    return ColumnResult(
        column=column.name,
        kind=column.kind,
        method=name,
        statistic=statistic,
        p_value=p_value,
        adjusted_p_value=None,
        threshold=threshold,
        drifted=bool(drifted),
        status=OK if enough else INSUFFICIENT_DATA,
        missing_reference=column.missing[0],
        missing_current=column.missing[1],
        n_reference=n_ref,
        n_current=n_cur,
        histogram=column.histogram(),
    )


def _correct(results: list[ColumnResult], correction: str) -> list[ColumnResult]:
    tested = [i for i, r in enumerate(results) if r.status == OK and r.p_value is not None]
    adjusted = adjust_p_values([results[i].p_value for i in tested], correction)
    corrected = list(results)
    for i, p in zip(tested, adjusted, strict=True):
        corrected[i] = replace(results[i], adjusted_p_value=float(p), drifted=bool(p < results[i].threshold))
    return corrected


def _encode(values: pd.Series, kind: str) -> stats.FloatArray:
    """Numbers as floats; categories as frequency ranks (capped for the model's 255 bins); NaN if missing."""
    if kind == NUMERICAL:
        return stats.as_float(values)
    codes, _ = pd.factorize(values)
    counts = np.bincount(codes[codes >= 0])
    ranks = np.empty(counts.size + 1)  # the extra slot serves code -1, missing
    ranks[np.argsort(-counts, kind="stable")] = np.arange(counts.size)
    encoded = np.minimum(ranks[codes], 254.0)
    encoded[codes < 0] = np.nan
    return encoded


def _domain_classifier(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    kinds: list[tuple[str, str]],
    *,
    options: ClassifierOptions,
    min_rows: int,
    random_state: int,
) -> DomainClassifierResult:
    """Cross-validated ROC AUC of a gradient-boosting model telling current rows from reference rows."""
    if options.folds < 2 or options.max_rows < options.folds or not 0.5 <= options.threshold <= 1.0:
        raise InvalidInput("domain classifier: need folds >= 2, max_rows >= folds, 0.5 <= threshold <= 1")
    rng = np.random.default_rng(random_state)
    columns = [name for name, _ in kinds]
    ref, cur = (
        frame[columns].iloc[np.sort(rng.choice(len(frame), options.max_rows, replace=False))]
        if len(frame) > options.max_rows
        else frame[columns]
        for frame in (reference, current)
    )
    model = HistGradientBoostingClassifier(
        categorical_features=[kind == CATEGORICAL for _, kind in kinds], random_state=random_state
    )
    result = DomainClassifierResult(
        type(model).__name__, None, [], options.threshold, False, INSUFFICIENT_DATA, len(ref), len(cur)
    )
    if min(len(ref), len(cur)) < max(min_rows, options.folds):
        return result
    features = np.column_stack(
        [_encode(pd.concat([ref[name], cur[name]], ignore_index=True), kind) for name, kind in kinds]
    )
    target = np.concatenate([np.zeros(len(ref)), np.ones(len(cur))])
    folds = StratifiedKFold(options.folds, shuffle=True, random_state=random_state)
    # One OpenMP thread: jobs run side by side in the workers, and on a busy machine OpenMP's spinning
    # threads made this fit 5-10x slower than a single thread.
    with threadpool_limits(limits=1, user_api="openmp"):
        aucs = cross_val_score(model, features, target, cv=folds, scoring="roc_auc")
    auc = float(np.mean(aucs))
    return replace(result, auc=auc, auc_folds=aucs.tolist(), drifted=auc >= options.threshold, status=OK)


def compare(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    spec: ColumnSpec,
    *,
    overrides: Mapping[str, ColumnOptions] | None = None,
    drift_share: float = 0.5,
    correction: str | None = None,
    min_rows: int = DEFAULT_MIN_ROWS,
    domain_classifier: bool | ClassifierOptions = False,
    random_state: int = 0,
) -> DriftReport:
    """Compare ``current`` with ``reference`` on the columns of ``spec``; other columns are ignored."""
    overrides = dict(overrides or {})
    _check_inputs(reference, current, spec, overrides, drift_share, min_rows)
    if correction is not None:
        adjust_p_values([], correction)  # reject an unknown name before any work
    kinds = [(c, NUMERICAL) for c in spec.numerical] + [(c, CATEGORICAL) for c in spec.categorical]

    def one(column: tuple[str, str]) -> ColumnResult:
        name, kind = column
        prepared = _prepare(name, kind, reference[name], current[name])
        return _evaluate(prepared, overrides.get(name, ColumnOptions()), min_rows)

    threads = min(os.cpu_count() or 1, len(kinds))
    if threads > 1 and max(len(reference), len(current)) >= PARALLEL_FROM_ROWS:
        with ThreadPoolExecutor(threads, thread_name_prefix="drift") as pool:  # numpy sorts without the GIL
            results = list(pool.map(one, kinds))
    else:
        results = [one(column) for column in kinds]
    if correction is not None:
        results = _correct(results, correction)
    tested = [r for r in results if r.status == OK]
    share = sum(r.drifted for r in tested) / len(tested) if tested else 0.0
    classifier = None
    if domain_classifier:
        options = (
            domain_classifier if isinstance(domain_classifier, ClassifierOptions) else ClassifierOptions()
        )
        classifier = _domain_classifier(
            reference, current, kinds, options=options, min_rows=min_rows, random_state=random_state
        )
    return DriftReport(
        columns=results,
        drifted_columns=[r.column for r in results if r.drifted],
        share_drifted=share,
        drift_share=drift_share,
        dataset_drift=bool(tested) and share >= drift_share,
        correction=correction,
        n_reference_rows=len(reference),
        n_current_rows=len(current),
        domain_classifier=classifier,
    )
