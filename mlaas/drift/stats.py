"""Two-sample drift statistics on numpy arrays: tests, distances, binning and p-value corrections.

Conventions shared by every function here:

- Numerical samples arrive SORTED and free of missing or infinite values; sorting once per column
  lets the Wasserstein distance, the distinct-value counts and the histograms share one pass.
- Categorical samples arrive as two aligned count vectors over the union of the categories seen on
  either side (a category unseen on one side has count 0 there).
- ``chisquare`` is the two-sample test of HOMOGENEITY on the 2 x k contingency table (reference and
  current rows, one column per category), i.e. ``scipy.stats.chi2_contingency`` without Yates'
  correction. It is not a goodness-of-fit test of the current counts against the reference
  proportions: that variant rejects unchanged columns on large samples because it ignores the
  sampling noise of the reference, and its p-value collapses to 0 when a category is unseen in the
  reference (expected count 0).
- Both categorical tests (``chisquare`` and ``z``) first POOL SPARSE CATEGORIES, the rule of the
  chi-square approximation (Cochran's: an expected count of at least 5 per cell): every category whose
  expected count is under ``MIN_EXPECTED`` on either side goes into one "other" cell, and an "other"
  cell still under it joins the smallest remaining category. Left apart, each category seen once adds
  about 1 to the statistic and 1 degree of freedom, so 30 new categories of one row each went unseen
  (p = 0.49); pooled, they are one cell with 0 reference rows, strong evidence. The pooling looks only
  at the category totals of both sides together, never at which side a row is on, so the test keeps
  its level. A pooled table of 2 cells that still has an expected count under 5 is tested with
  Fisher's exact test (``scipy.stats.fisher_exact``), which needs no approximation; a table pooled
  into 1 cell (every category rare, e.g. distinct ids or timestamps listed as categorical) carries no
  evidence about category frequencies at all and gets statistic 0 and p-value 1.
- ``jensenshannon`` is ``scipy.spatial.distance.jensenshannon`` on the normalised frequency vectors
  with the natural logarithm (its default), so it lies in [0, sqrt(ln 2)] ~ [0, 0.83].
- ``hellinger`` is sqrt(1 - sum(sqrt(p * q))), in [0, 1].
- ``psi`` is sum((p - q) * ln(p / q)) after replacing empty bins by ``PSI_EPSILON``.
- ``anderson`` is ``scipy.stats.anderson_ksamp``, whose p-value is interpolated from a table and
  therefore CAPPED to [0.001, 0.25]: a reported 0.25 means "0.25 or more", 0.001 "0.001 or less"
  (two samples of one and the same value, which scipy refuses, get statistic 0 and p-value 1).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import stats
from scipy.spatial import distance

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

PSI_EPSILON = 1e-4  # proportion given to an empty bin so that ln(p / q) stays finite
MIN_STD = 1e-3  # floor of the reference standard deviation that normalises the Wasserstein distance
INT64_LIMIT = 2.0**63  # whole floats below this in magnitude cast to int64 exactly
MIN_EXPECTED = 5.0  # smallest expected count per cell of a chi-square test (Cochran's rule)
MAX_DISCRETE = 20  # numerical samples with at most this many distinct values are counted per value


def ks(ref: FloatArray, cur: FloatArray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov test (scipy's ``method='auto'``): (statistic D, p-value)."""
    result = stats.ks_2samp(ref, cur)
    return float(result.statistic), float(result.pvalue)


def anderson(ref: FloatArray, cur: FloatArray) -> tuple[float, float]:
    """k-sample Anderson-Darling test: (statistic, p-value capped to [0.001, 0.25])."""
    if ref[0] == ref[-1] == cur[0] == cur[-1]:  # one value on both sides: scipy refuses, nothing differs
        return 0.0, 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns whenever the p-value hits its cap
        result = stats.anderson_ksamp([ref, cur])
    return float(result.statistic), float(result.pvalue)


def wasserstein(ref_sorted: FloatArray, cur_sorted: FloatArray) -> float:
    """1-D Wasserstein (earth mover's) distance of two sorted samples, in O(n) after the sorts."""
    pooled = np.concatenate([ref_sorted, cur_sorted])
    order = np.argsort(pooled, kind="stable")  # timsort merges the two sorted runs in linear time
    steps = np.diff(pooled[order])
    # F_ref - F_cur after each pooled value: one running sum of +1/n (reference) and -1/m (current) steps
    gaps = np.cumsum(np.where(order[:-1] < ref_sorted.size, 1.0 / ref_sorted.size, -1.0 / cur_sorted.size))
    return float(np.dot(np.abs(gaps, out=gaps), steps))


def wasserstein_norm(ref_sorted: FloatArray, cur_sorted: FloatArray) -> float:
    """Wasserstein distance divided by the reference standard deviation (floored at ``MIN_STD``)."""
    return wasserstein(ref_sorted, cur_sorted) / max(float(np.std(ref_sorted)), MIN_STD)


def pool_sparse(ref_counts: ArrayLike, cur_counts: ArrayLike) -> FloatArray:
    """The 2 x k table of counts with the categories whose expected count is under ``MIN_EXPECTED`` pooled."""
    table = np.vstack([ref_counts, cur_counts]).astype(np.float64)
    table = table[:, table.sum(axis=0) > 0]
    rows = table.sum(axis=1)
    # the smaller side has the smaller expected count: category total * its share of all rows
    sparse = table.sum(axis=0) * (rows.min() / max(rows.sum(), 1.0)) < MIN_EXPECTED
    if not sparse.any():
        return table
    kept, other = table[:, ~sparse], table[:, sparse].sum(axis=1)
    if kept.shape[1] >= 2 and other.sum() * rows.min() / rows.sum() < MIN_EXPECTED:
        kept[:, np.argmin(kept.sum(axis=0))] += other
        return kept
    return np.column_stack([kept, other])


def _table_test(table: FloatArray) -> tuple[float, float]:
    """Pearson's X^2 of a pooled table and its p-value (Fisher's exact one for a sparse 2 x 2)."""
    if table.shape[1] < 2 or table.sum(axis=1).min() == 0:
        return 0.0, 1.0
    result = stats.chi2_contingency(table, correction=False)
    p_value = float(result.pvalue)
    if table.shape[1] == 2 and result.expected_freq.min() < MIN_EXPECTED:
        p_value = float(stats.fisher_exact(table.astype(np.int64)).pvalue)
    return float(result.statistic), p_value


def chisquare(ref_counts: ArrayLike, cur_counts: ArrayLike) -> tuple[float, float]:
    """Chi-square test of homogeneity on the 2 x k table of counts, sparse categories pooled: (X^2, p)."""
    return _table_test(pool_sparse(ref_counts, cur_counts))


def z_test(ref_counts: ArrayLike, cur_counts: ArrayLike) -> tuple[float, float]:
    """Pooled two-proportion Z-test on the share of the first of (at most) two categories: (z, p).

    With an expected count under ``MIN_EXPECTED`` the p-value is Fisher's exact test's (the normal
    approximation fails there); z stays the statistic.
    """
    ref, cur = np.asarray(ref_counts, dtype=np.float64), np.asarray(cur_counts, dtype=np.float64)
    if ref.size > 2:
        raise ValueError(f"the two-proportion Z-test needs at most 2 categories, got {ref.size}")
    n_ref, n_cur = ref.sum(), cur.sum()
    p_ref, p_cur = ref[0] / n_ref, cur[0] / n_cur
    pooled = (ref[0] + cur[0]) / (n_ref + n_cur)
    variance = pooled * (1.0 - pooled) * (1.0 / n_ref + 1.0 / n_cur)
    if variance <= 0.0:  # one category on both sides
        return 0.0, 1.0
    z = (p_ref - p_cur) / math.sqrt(variance)
    table = pool_sparse(ref, cur)
    if table.shape[1] == 2 and table.sum(axis=0).min() * min(n_ref, n_cur) / (n_ref + n_cur) < MIN_EXPECTED:
        return float(z), _table_test(table)[1]
    return float(z), float(2.0 * stats.norm.sf(abs(z)))


def _proportions(counts: ArrayLike) -> FloatArray:
    values = np.asarray(counts, dtype=np.float64)
    shares: FloatArray = values / values.sum()
    return shares


def psi(ref_counts: ArrayLike, cur_counts: ArrayLike) -> float:
    """Population stability index of two count vectors over the same bins."""
    p = np.maximum(_proportions(ref_counts), PSI_EPSILON)
    q = np.maximum(_proportions(cur_counts), PSI_EPSILON)
    return float(np.sum((p - q) * np.log(p / q)))


def jensenshannon(ref_counts: ArrayLike, cur_counts: ArrayLike) -> float:
    """Jensen-Shannon distance (natural logarithm) of two count vectors over the same bins."""
    return float(distance.jensenshannon(_proportions(ref_counts), _proportions(cur_counts)))


def hellinger(ref_counts: ArrayLike, cur_counts: ArrayLike) -> float:
    """Hellinger distance of two count vectors over the same bins."""
    affinity = float(np.sum(np.sqrt(_proportions(ref_counts) * _proportions(cur_counts))))
    return math.sqrt(max(0.0, 1.0 - min(affinity, 1.0)))


def as_float(values: pd.Series) -> FloatArray:
    """A numeric (or boolean) series as float64, NaN for missing and infinite values."""
    if not (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)):
        values = pd.to_numeric(values.astype(object))  # numbers stored as objects or strings
    array = values.to_numpy(dtype=np.float64, na_value=np.nan)
    return np.where(np.isinf(array), np.nan, array)


def finite_sorted(values: pd.Series) -> tuple[FloatArray, int]:
    """Sorted finite values of a numeric series and how many were missing or infinite."""
    array = as_float(values) if not pd.api.types.is_numeric_dtype(values) else values.to_numpy(
        dtype=np.float64, na_value=np.nan, copy=True)
    array.sort()  # in place: -inf first, then the finite values, +inf, and NaN last
    low, high = int(np.searchsorted(array, -np.inf, side="right")), int(np.searchsorted(array, np.inf, side="left"))
    return array[low:high], int(array.size - (high - low))


def n_distinct(values_sorted: FloatArray) -> int:
    """Number of distinct values in a sorted array."""
    return int(np.count_nonzero(values_sorted[1:] != values_sorted[:-1])) + 1 if values_sorted.size else 0


def distinct_values(values_sorted: FloatArray) -> tuple[FloatArray, IntArray]:
    """Distinct values of a sorted array and how often each occurs."""
    starts = np.flatnonzero(
        np.r_[values_sorted[:1] == values_sorted[:1], values_sorted[1:] != values_sorted[:-1]]
    )
    return values_sorted[starts], np.diff(np.append(starts, values_sorted.size)).astype(np.int64)


def aligned_counts(ref_sorted: FloatArray, cur_sorted: FloatArray) -> tuple[FloatArray, IntArray, IntArray]:
    """Count every distinct value of either sorted sample on both sides: (values, ref, cur)."""
    (ref_values, ref_n), (cur_values, cur_n) = distinct_values(ref_sorted), distinct_values(cur_sorted)
    values = np.union1d(ref_values, cur_values)
    ref_counts, cur_counts = np.zeros(values.size, np.int64), np.zeros(values.size, np.int64)
    ref_counts[np.searchsorted(values, ref_values)] = ref_n
    cur_counts[np.searchsorted(values, cur_values)] = cur_n
    return values, ref_counts, cur_counts


def pooled_distinct(ref_sorted: FloatArray, cur_sorted: FloatArray) -> int:
    """Distinct values of both samples together: exact up to ``MAX_DISCRETE``, else a larger bound."""
    largest = max(n_distinct(ref_sorted), n_distinct(cur_sorted))
    return largest if largest > MAX_DISCRETE else aligned_counts(ref_sorted, cur_sorted)[0].size


def sturges_edges(low: float, high: float, size: int) -> FloatArray:
    """The edges ``np.histogram_bin_edges(pooled, bins='sturges')`` gives for a pooled sample."""
    if low == high:
        return np.linspace(low - 0.5, high + 0.5, 2)
    width = (high - low) / (math.log2(size) + 1.0)
    return np.linspace(low, high, math.ceil((high - low) / width) + 1)


def histogram_sorted(values_sorted: FloatArray, edges: FloatArray) -> IntArray:
    """``np.histogram(values, edges)[0]`` for a sorted array, by binary search."""
    positions = np.searchsorted(values_sorted, edges, side="left")
    positions[-1] = np.searchsorted(values_sorted, edges[-1], side="right")  # the last bin is closed
    return np.diff(positions).astype(np.int64)


def pooled_histogram(ref_sorted: FloatArray, cur_sorted: FloatArray) -> tuple[FloatArray, IntArray, IntArray]:
    """Sturges bins over the pooled range and the counts of each (non-empty, sorted) side."""
    ends = [a[i] for a in (ref_sorted, cur_sorted) if a.size for i in (0, -1)]
    edges = sturges_edges(float(min(ends)), float(max(ends)), ref_sorted.size + cur_sorted.size)
    return edges, histogram_sorted(ref_sorted, edges), histogram_sorted(cur_sorted, edges)


def binned_counts(ref_sorted: FloatArray, cur_sorted: FloatArray) -> tuple[IntArray, IntArray]:
    """Counts per distinct value (at most ``MAX_DISCRETE`` of them), else per pooled Sturges bin."""
    if pooled_distinct(ref_sorted, cur_sorted) <= MAX_DISCRETE:
        return aligned_counts(ref_sorted, cur_sorted)[1:]
    return pooled_histogram(ref_sorted, cur_sorted)[1:]


def _value_counts(values: pd.Series) -> pd.Series:
    present = values.dropna()
    numbers = present.to_numpy(dtype=np.float64) if pd.api.types.is_float_dtype(present) else None
    if numbers is not None and bool(np.all(np.isfinite(numbers) & (numbers == np.floor(numbers)))):
        # integer codes turned float by missing values; beyond int64 (|x| >= 2**63) a cast would wrap
        # around, so those columns become exact Python ints (every float that large is a whole number)
        fits = bool(np.all(np.abs(numbers) < INT64_LIMIT))
        present = present.astype(np.int64) if fits else pd.Series([int(v) for v in numbers], dtype=object)
    counts = present.value_counts(sort=False)
    counts = counts[counts > 0]  # a categorical dtype lists its unused categories too
    counts.index = pd.Index(counts.index.to_numpy(dtype=object), dtype=object)
    return counts


def category_counts(ref: pd.Series, cur: pd.Series) -> tuple[pd.Index, IntArray, IntArray]:
    """Categories seen on either side, most frequent first, with their counts on each side."""
    ref_counts, cur_counts = _value_counts(ref), _value_counts(cur)
    labels = ref_counts.index.union(cur_counts.index, sort=False)
    ref_n = ref_counts.reindex(labels, fill_value=0).to_numpy(np.int64)
    cur_n = cur_counts.reindex(labels, fill_value=0).to_numpy(np.int64)
    order = np.argsort(-(ref_n + cur_n), kind="stable")
    return labels.take(order), ref_n[order], cur_n[order]


def bonferroni(p_values: ArrayLike) -> FloatArray:
    """Bonferroni-adjusted p-values: min(1, p * m)."""
    p = np.asarray(p_values, dtype=np.float64)
    return np.minimum(p * p.size, 1.0)


def benjamini_hochberg(p_values: ArrayLike) -> FloatArray:
    """Benjamini-Hochberg adjusted p-values (step-up false discovery rate), in the input order."""
    p = np.asarray(p_values, dtype=np.float64)
    if p.size == 0:
        return p.copy()
    order = np.argsort(p)
    scaled = p[order] * p.size / np.arange(1, p.size + 1)
    adjusted = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    out = np.empty_like(adjusted)
    out[order] = adjusted
    return out


CORRECTIONS = {"bonferroni": bonferroni, "bh": benjamini_hochberg}
