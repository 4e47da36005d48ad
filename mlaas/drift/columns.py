"""Column by column: preparing both sides of a column, choosing its method, testing it.

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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

import mlaas.drift.stats as stats
from mlaas.errors import InvalidInput

NUMERICAL = "numerical"
CATEGORICAL = "categorical"
OK = "ok"
INSUFFICIENT_DATA = "insufficient_data"
DEFAULT_MIN_ROWS = 30
SMALL_REFERENCE = 1000  # at most this many reference rows: p-value tests, above: distances
FEW_DISTINCT = 5  # numerical columns with at most this many distinct values are tested as categories
TOP_CATEGORIES = 20  # categories shown one by one in a histogram; the rest are summed as "other"

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


def prepare(name: str, kind: str, reference: pd.Series, current: pd.Series) -> _Column:
    """Both sides of one column, ready to test: sorted finite values or aligned category counts."""
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



def evaluate(column: _Column, options: ColumnOptions, min_rows: int) -> ColumnResult:
    """Test one prepared column with its method (chosen by the rules unless overridden)."""
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


def correct(results: list[ColumnResult], correction: str) -> list[ColumnResult]:
    """The results with their p-values adjusted together and the verdicts taken on the adjusted values."""
    tested = [i for i, r in enumerate(results) if r.status == OK and r.p_value is not None]
    adjusted = adjust_p_values([results[i].p_value for i in tested], correction)
    corrected = list(results)
    for i, p in zip(tested, adjusted, strict=True):
        corrected[i] = replace(results[i], adjusted_p_value=float(p), drifted=bool(p < results[i].threshold))
    return corrected

