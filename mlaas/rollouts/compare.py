"""Candidate against production on the same rows: counters, and the summary and guard verdict read from them.

Pure functions and a small accumulator, no I/O: the worker adds a batch's counts to Redis, the status and the
guard read them back through ``summarize``.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from mlaas.rollouts.specs import GuardSpec

ARMS = ("production", "candidate")
PATHS = ("served", "background")  # answered the request / scored the same rows off the request path
# Latency histogram bucket upper bounds, in milliseconds (the last bucket is everything slower).
BOUNDS_MS = (0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 1000, 2000, 5000)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def compare_answers(served: Sequence[Any], other: Sequence[Any]) -> tuple[int, int, float, int]:
    """(rows, rows that agree exactly, sum of |difference| over numeric pairs, numeric pairs) of two answers."""
    if len(served) != len(other):
        raise ValueError(f"answers of {len(served)} and {len(other)} rows cannot be compared")
    agreed, diff, numeric = 0, 0.0, 0
    for a, b in zip(served, other, strict=True):
        agreed += a == b
        x, y = _number(a), _number(b)
        if x is not None and y is not None:
            diff += abs(x - y)
            numeric += 1
    return len(served), agreed, diff, numeric


class Tally:
    """Counts to add to a rollout's totals (one Redis round trip per batch)."""

    def __init__(self) -> None:
        self.counts: dict[str, float] = defaultdict(float)

    def scored(self, arm: str, path: str, ms: float, rows: int) -> None:
        """One request answered (``served``) or scored off the request path (``background``) by ``arm``."""
        c = self.counts
        c[f"{arm}.attempts"] += 1
        c[f"{arm}.{path}"] += 1
        c[f"{arm}.{path}_rows"] += rows
        c[f"{arm}.{path}_ms"] += ms
        c[f"{arm}.{path}.h{bisect.bisect_left(BOUNDS_MS, ms)}"] += 1

    def error(self, arm: str) -> None:
        """One request ``arm`` failed to score."""
        self.counts[f"{arm}.attempts"] += 1
        self.counts[f"{arm}.errors"] += 1

    def compared(self, served: Sequence[Any], other: Sequence[Any]) -> None:
        """Both arms' answers for the same rows."""
        rows, agreed, diff, numeric = compare_answers(served, other)
        c = self.counts
        c["compared_requests"] += 1
        c["compared_rows"] += rows
        c["agreed_rows"] += agreed
        c["abs_diff_sum"] += diff
        c["numeric_rows"] += numeric

    def dropped(self, requests: int) -> None:
        """Requests not compared because a queue was full or Redis did not answer."""
        self.counts["dropped"] += requests


def percentile(stats: Mapping[str, float], prefix: str, q: float) -> float | None:
    """The upper bound (ms) of the histogram bucket holding quantile ``q``; None without samples."""
    counts = [stats.get(f"{prefix}.h{i}", 0.0) for i in range(len(BOUNDS_MS) + 1)]
    total = sum(counts)
    if total <= 0:
        return None
    rank, seen = q * total, 0.0
    for i, count in enumerate(counts):
        seen += count
        if seen >= rank and count:
            return float(BOUNDS_MS[i]) if i < len(BOUNDS_MS) else math.inf
    return None


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def _arm(stats: Mapping[str, float], arm: str) -> dict[str, Any]:
    out: dict[str, Any] = {"requests": int(stats.get(f"{arm}.served", 0)),
                           "rows": int(stats.get(f"{arm}.served_rows", 0)),
                           "errors": int(stats.get(f"{arm}.errors", 0)),
                           "error_rate": _ratio(stats.get(f"{arm}.errors", 0), stats.get(f"{arm}.attempts", 0))}
    latency = {}
    for path in PATHS:
        n = stats.get(f"{arm}.{path}", 0)
        if n:
            p99 = percentile(stats, f"{arm}.{path}", 0.99)
            latency[path] = {"requests": int(n), "mean_ms": round(stats.get(f"{arm}.{path}_ms", 0) / n, 3),
                             "p50_ms_at_most": percentile(stats, f"{arm}.{path}", 0.5),
                             "p99_ms_at_most": None if p99 is None or math.isinf(p99) else p99}
    out["latency"] = latency
    return out


def summarize(stats: Mapping[str, float], task: str) -> dict[str, Any]:
    """The comparison a status shows: per-arm traffic, errors and latency, then agreement or mean |difference|."""
    rows = stats.get("compared_rows", 0)
    comparison: dict[str, Any] = {"requests": int(stats.get("compared_requests", 0)), "rows": int(rows)}
    if task == "regression":
        comparison["mean_abs_diff"] = _ratio(stats.get("abs_diff_sum", 0), stats.get("numeric_rows", 0))
    else:
        comparison["agreement"] = _ratio(stats.get("agreed_rows", 0), rows)
    return {"production": _arm(stats, "production"), "candidate": _arm(stats, "candidate"),
            "comparison": comparison, "dropped": int(stats.get("dropped", 0)),
            "live_quality": None}  # filled from feedback on the compared ids once that feature exists


def guard_verdict(summary: Mapping[str, Any], guard: GuardSpec) -> str | None:
    """Why the rollout should end now (None: keep it): worse agreement, difference or error rate than allowed."""
    candidate, production = summary["candidate"], summary["production"]
    attempts = candidate["requests"] + candidate["latency"].get("background", {}).get("requests", 0)
    attempts += candidate["errors"]
    if attempts < guard.min_requests:
        return None
    cand_rate, prod_rate = candidate["error_rate"] or 0.0, production["error_rate"] or 0.0
    if cand_rate > prod_rate + guard.max_extra_error_rate:
        return (f"the candidate's error rate {cand_rate:.3f} exceeds production's {prod_rate:.3f} by more than "
                f"{guard.max_extra_error_rate}")
    agreement = summary["comparison"].get("agreement")
    if guard.min_agreement is not None and agreement is not None and agreement < guard.min_agreement:
        return f"agreement {agreement:.3f} with production is below the floor {guard.min_agreement}"
    mad = summary["comparison"].get("mean_abs_diff")
    if guard.max_mean_abs_diff is not None and mad is not None and mad > guard.max_mean_abs_diff:
        return f"mean absolute difference {mad:.4g} from production is above {guard.max_mean_abs_diff}"
    return None
