"""Candidate against production on the same rows: counters, and the summary and guard verdict read from them.

Pure functions and a small accumulator, no I/O: the worker adds a batch's counts to Redis, the status and the
guard read them back through ``summarize`` (with the live quality ``mlaas.rollouts.quality`` keeps).
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from mlaas.rollouts.specs import GuardSpec
from mlaas.training import scoring

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


def live(stats: Mapping[str, float], quality: Mapping[str, Any] | None) -> dict[str, Any]:
    """Live quality as a status shows it: the rows kept for it (and not), then each arm's figures from feedback."""
    figures = {k: v for k, v in (quality or {}).items() if k != "fingerprint"}
    return {"rows_kept": int(stats.get("quality.rows_kept", 0)),
            "rows_without_id": int(stats.get("quality.rows_without_id", 0)),
            "rows_not_kept": int(stats.get("quality.rows_not_kept", 0) + stats.get("quality.rows_not_stored", 0)),
            "joined": 0, "production": None, "candidate": None, "difference": None, "refreshed_at": None,
            **figures}


def summarize(stats: Mapping[str, float], task: str, quality: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The comparison a status shows: per-arm traffic, errors and latency, agreement or mean |difference|, and
    live quality (``quality``: the figures last computed from feedback on the compared ids)."""
    rows = stats.get("compared_rows", 0)
    comparison: dict[str, Any] = {"requests": int(stats.get("compared_requests", 0)), "rows": int(rows)}
    if task == "regression":
        comparison["mean_abs_diff"] = _ratio(stats.get("abs_diff_sum", 0), stats.get("numeric_rows", 0))
    else:
        comparison["agreement"] = _ratio(stats.get("agreed_rows", 0), rows)
    return {"production": _arm(stats, "production"), "candidate": _arm(stats, "candidate"),
            "comparison": comparison, "dropped": int(stats.get("dropped", 0)),
            "live_quality": live(stats, quality)}


def guard_verdict(summary: Mapping[str, Any], guard: GuardSpec) -> str | None:
    """Why the rollout should end now (None: keep it): worse agreement, difference, error rate or live quality
    than allowed."""
    candidate, production = summary["candidate"], summary["production"]
    attempts = candidate["requests"] + candidate["latency"].get("background", {}).get("requests", 0)
    attempts += candidate["errors"]
    if attempts < guard.min_requests:
        return quality_verdict(summary.get("live_quality"), guard)
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
    return quality_verdict(summary.get("live_quality"), guard)


def quality_verdict(live_quality: Mapping[str, Any] | None, guard: GuardSpec) -> str | None:
    """Why the rollout should end on live quality: the candidate's metric is worse than production's by more
    than ``max_quality_drop`` on at least ``min_quality_rows`` rows with feedback (None: keep it)."""
    if guard.max_quality_drop is None or not live_quality or not live_quality.get("candidate"):
        return None
    if live_quality.get("joined", 0) < guard.min_quality_rows or not live_quality.get("production"):
        return None
    prod, cand = live_quality["production"]["metrics"], live_quality["candidate"]["metrics"]
    metric = guard.quality_metric or ("accuracy" if "accuracy" in prod else "rmse")
    if metric not in prod or metric not in cand:
        return None
    worse = prod[metric] - cand[metric] if scoring.GREATER_IS_BETTER[metric] else cand[metric] - prod[metric]
    if worse <= guard.max_quality_drop:
        return None
    return (f"live {metric} {cand[metric]:.4g} is worse than production's {prod[metric]:.4g} by more than "
            f"{guard.max_quality_drop} on {live_quality['joined']} rows with feedback")
