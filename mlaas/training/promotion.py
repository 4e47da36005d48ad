"""The production alias: the promotion gate, promotion and rollback, with tags mirroring the alias."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from mlaas.adapters.registry import PROD_ALIAS, STAGE_TAG, ModelVersion
from mlaas.context import Context
from mlaas.errors import NotFound
from mlaas.training import scoring

HISTORY_TAG = "mlaas.promotions"
PRIMARY_METRIC_TAG = "primary_metric"
HISTORY_KEEP = 50


@dataclass(frozen=True)
class GateDecision:
    """Whether a candidate may replace production, and why."""

    passed: bool
    metric: str
    candidate: float | None
    incumbent: float | None
    incumbent_version: int | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def primary_metric(ctx: Context, name: str, task: str) -> str:
    """The model's configured primary metric (registered-model tag), else the task default."""
    configured = ctx.registry.get_model(name)["tags"].get(PRIMARY_METRIC_TAG)
    return configured if configured in scoring.GREATER_IS_BETTER else scoring.PRIMARY[task]


def current_production(ctx: Context, name: str) -> ModelVersion | None:
    try:
        return ctx.registry.production_version(name)
    except NotFound:
        return None


def decide(metric: str, candidate: Mapping[str, float], incumbent: Mapping[str, float] | None,
           incumbent_version: int | None) -> GateDecision:
    """The promotion rule: the candidate must be at least as good as production on ``metric``."""
    if incumbent is None or incumbent_version is None:
        return GateDecision(True, metric, _finite(candidate.get(metric)), None, None, "no other production version")
    cand_value, inc_value = _finite(candidate.get(metric)), _finite(incumbent.get(metric))
    if cand_value is None or inc_value is None:  # undefined: neither better nor worse, so not passed
        side, metrics = (("the candidate", candidate) if cand_value is None
                         else (f"production v{incumbent_version}", incumbent))
        known = metrics.undefined if isinstance(metrics, scoring.Metrics) else {}
        why = known.get(metric, "not computed on this test set")
        return GateDecision(False, metric, cand_value, inc_value, incumbent_version,
                            f"{metric} is undefined for {side}: {why}")
    passed = scoring.is_better_or_equal(metric, cand_value, inc_value)
    verb = "at least as good as" if passed else "worse than"
    reason = f"{metric} {cand_value:.4f} is {verb} production v{incumbent_version} ({inc_value:.4f})"
    return GateDecision(passed, metric, cand_value, inc_value, incumbent_version, reason)


def _finite(value: float | None) -> float | None:
    """A metric value, None when missing or not finite (an old evaluation may have recorded NaN)."""
    return value if value is not None and math.isfinite(value) else None


def gate(
    ctx: Context, name: str, candidate_metrics: dict[str, float], *, X: pd.DataFrame, y: pd.Series, task: str,
    exclude_version: int | None = None,
) -> GateDecision:
    """Compare a candidate's metrics with the production version's, computed on the same rows."""
    metric = primary_metric(ctx, name, task)
    incumbent = current_production(ctx, name)
    if incumbent is None or incumbent.version == exclude_version:
        return decide(metric, candidate_metrics, None, None)
    loaded = ctx.registry.load_model(incumbent)
    y_pred, proba, classes = scoring.predict(loaded.estimator, X, task)
    return decide(metric, candidate_metrics, scoring.compute(task, y, y_pred, proba, classes), incumbent.version)


def promote(ctx: Context, name: str, version: int, *, actor: str, reason: str) -> dict[str, Any]:
    """Point the ``prod`` alias at ``version`` (atomic), mirror it in ``stage`` tags, record the change."""
    ctx.registry.get_version(name, version)
    previous = current_production(ctx, name)
    ctx.registry.set_alias(name, PROD_ALIAS, version)
    ctx.registry.set_tags(name, version, {STAGE_TAG: "prod"})
    if previous is not None and previous.version != version:
        ctx.registry.set_tags(name, previous.version, {STAGE_TAG: "archived"})
    entry = {
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "from": previous.version if previous else None,
        "to": version,
        "by": actor,
        "reason": reason,
    }
    history = promotion_history(ctx, name)
    history.append(entry)
    ctx.registry.set_model_tag(name, HISTORY_TAG, json.dumps(history[-HISTORY_KEEP:]))
    return entry


def promotion_history(ctx: Context, name: str) -> list[dict[str, Any]]:
    raw = ctx.registry.get_model(name)["tags"].get(HISTORY_TAG)
    try:
        loaded = json.loads(raw) if raw else []
    except ValueError:
        loaded = []
    return loaded if isinstance(loaded, list) else []
