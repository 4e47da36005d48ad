"""Quality conditions of monitors: judge a version's live (or estimated) metric against a floor or its evaluation."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from mlaas.context import Context
from mlaas.errors import InvalidInput
from mlaas.quality import estimate, performance
from mlaas.quality.specs import QualityCondition
from mlaas.training import scoring


def validate(condition: QualityCondition) -> None:
    """Refuse a metric the condition's source does not give (400 naming it)."""
    known = estimate.ESTIMATED if condition.source == "estimated" else tuple(scoring.GREATER_IS_BETTER)
    if condition.metric not in known:
        article = "an" if condition.source == "estimated" else "a"
        raise InvalidInput(f"quality.metric: {condition.metric!r} is not {article} {condition.source} metric; "
                           f"choose from {', '.join(known)}")


def judge(condition: QualityCondition, value: float, reference: float | None) -> list[str]:
    """Why the value breaches the condition (empty: it does not); ``reference``: the version's evaluation."""
    greater = scoring.GREATER_IS_BETTER.get(condition.metric, True)
    reasons = []
    if condition.floor is not None and (value < condition.floor if greater else value > condition.floor):
        reasons.append(f"{condition.metric} {value:.4g} is {'below' if greater else 'above'} {condition.floor:g}")
    if condition.max_drop is not None and reference is not None:
        drop = reference - value if greater else value - reference
        if drop > condition.max_drop:
            reasons.append(f"{condition.metric} {value:.4g} is {drop:.4g} worse than the evaluation's "
                           f"{reference:.4g} (more than {condition.max_drop:g})")
    return reasons


def check(condition: QualityCondition, model: str, version: int, *, ctx: Context, now: datetime,
          window_seconds: int | None) -> dict[str, Any]:
    """One quality check of a version over a monitor's window (or everything served), as a monitor outcome."""
    since = (now - timedelta(seconds=window_seconds)).isoformat() if window_seconds else None
    perf = performance.performance(model, version, ctx=ctx, since=since, window=366 * 24 * 3600)
    figures = perf["overall"] if condition.source == "realized" else perf["overall"].get("estimated") or {}
    n = int(figures.get("n", 0))
    outcome: dict[str, Any] = {"kind": "quality", "metric": condition.metric, "source": condition.source, "n": n,
                               "checked": False, "run_id": None}
    if n < condition.min_rows:
        return {**outcome, "reason": f"{n} {condition.source} rows, fewer than {condition.min_rows}"}
    value = figures.get("metrics", {}).get(condition.metric)
    if value is None:
        why = perf["overall"].get("undefined_metrics", {}).get(condition.metric, "not computed for this model")
        return {**outcome, "reason": f"{condition.metric} is undefined: {why}"}
    version_tags = ctx.registry.get_version(model, version).tags
    reference = json.loads(version_tags.get("eval.metrics") or "{}").get(condition.metric)
    if condition.max_drop is not None and reference is None and condition.floor is None:
        return {**outcome, "reason": f"v{version} records no evaluation of {condition.metric} to compare with"}
    reasons = judge(condition, float(value), reference)
    return {**outcome, "checked": True, "value": value, "reference": reference, "floor": condition.floor,
            "max_drop": condition.max_drop, "breached": bool(reasons), "reasons": reasons,
            "window": {"since": since, "rows": n}}
