"""The production alias: the promotion gate, promotion and rollback, with tags mirroring the alias."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from mlaas.adapters.registry import PROD_ALIAS, STAGE_TAG, ModelVersion
from mlaas.context import Context
from mlaas.datasets.config import DataConfig
from mlaas.datasets.frames import checked_uri, read_config, read_dataset
from mlaas.errors import InvalidInput, NotFound, Unavailable
from mlaas.training import scoring

HISTORY_TAG = "mlaas.promotions"
PRIMARY_METRIC_TAG = "primary_metric"
HISTORY_KEEP = 50
HISTORY_LOCK_SECONDS = 30  # a writer that dies holding the lock frees it after this
HISTORY_LOCK_WAIT = 10.0
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GateDecision:
    """Whether a candidate may replace production, and why."""

    passed: bool
    metric: str
    candidate: float | None
    incumbent: float | None
    incumbent_version: int | None
    reason: str
    production_test_set: dict[str, Any] | None = None  # the same comparison on production's own recorded test set

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
    candidate: Any, exclude_version: int | None = None,
) -> GateDecision:
    """Compare a candidate with production on the job's test rows, then on production's own recorded test set.

    The job's rows are the caller's choice; production's test set (its ``test_dataset`` tag, else the data
    set of its recorded evaluation) is not, so a candidate that only wins on rows chosen for it fails.
    """
    metric = primary_metric(ctx, name, task)
    incumbent = current_production(ctx, name)
    if incumbent is None or incumbent.version == exclude_version:
        return decide(metric, candidate_metrics, None, None)
    estimator = ctx.registry.load_model(incumbent).estimator
    on_rows = decide(metric, candidate_metrics, _scores(estimator, X, y, task), incumbent.version)
    if not on_rows.passed:
        return on_rows
    own = _on_production_test_set(ctx, incumbent, estimator, candidate, metric, task)
    if own is None:
        return GateDecision(True, metric, on_rows.candidate, on_rows.incumbent, incumbent.version,
                            f"{on_rows.reason}; production v{incumbent.version} records no test set of its own")
    return GateDecision(own.passed, metric, on_rows.candidate, on_rows.incumbent, incumbent.version,
                        f"on the job's test rows: {on_rows.reason}; on production's own test set: {own.reason}",
                        production_test_set=own.to_dict())


def _scores(estimator: Any, X: pd.DataFrame, y: pd.Series, task: str) -> scoring.Metrics:
    y_pred, proba, classes = scoring.predict(estimator, X, task)
    return scoring.compute(task, y, y_pred, proba, classes)


def _on_production_test_set(ctx: Context, incumbent: ModelVersion, estimator: Any, candidate: Any, metric: str,
                            task: str) -> GateDecision | None:
    """The gate's rule on the test set production records (None when it records none); unreadable: failed."""
    number = incumbent.version
    uri = incumbent.tags.get("test_dataset") or incumbent.tags.get("eval.dataset")
    if not uri:
        return None
    try:
        config_uri = checked_uri(incumbent.tags.get("data_config", ""), settings=ctx.settings,
                                 field=f"production v{number} data_config")
        config = DataConfig.parse(read_config(ctx.storage, config_uri), source=str(config_uri))
        data = read_dataset(ctx.storage, uri, settings=ctx.settings, field=f"production v{number} test_dataset")
        config.check_columns(data.frame, source=f"production v{number} test_dataset {uri}")
        frame = data.frame.dropna(subset=[config.target_column])
        X, y = frame[config.features], frame[config.target_column]
        candidate_scores = _scores(candidate, X, y, task)
        decision = decide(metric, candidate_scores, _scores(estimator, X, y, task), number)
    except InvalidInput as exc:
        return GateDecision(False, metric, None, None, number, f"not comparable on {uri}: {exc.message}")
    except (ValueError, KeyError, TypeError) as exc:
        return GateDecision(False, metric, None, None, number, f"the candidate could not score {uri}: {exc}")
    return GateDecision(decision.passed, metric, decision.candidate, decision.incumbent, number,
                        f"{decision.reason} (on {uri}, {len(frame)} rows)")


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
    append_history(ctx, name, entry)
    return entry


def append_history(ctx: Context, name: str, entry: dict[str, Any]) -> None:
    """Add a promotion or rollout event to the model's history tag, kept to ``HISTORY_KEEP`` entries.

    The tag is read, extended and written under a lock per model, so that two events recorded at once (a
    promotion and a rollout change, from two API processes) both stay. The event is never lost for the lock:
    one not had within HISTORY_LOCK_WAIT seconds (a writer stuck past it), or a Redis that does not answer
    (the alias has moved already), and it is written without."""
    def write() -> None:
        history = promotion_history(ctx, name)
        history.append(entry)
        ctx.registry.set_model_tag(name, HISTORY_TAG, json.dumps(trimmed(history, HISTORY_KEEP)))

    written = False
    try:
        with ctx.monitors.lock(f"promotion-history:{name}", HISTORY_LOCK_SECONDS, wait=HISTORY_LOCK_WAIT) as held:
            if not held:
                log.warning("promotion history of %s: lock not had within %s s; writing anyway", name,
                            HISTORY_LOCK_WAIT)
            write()
            written = True
    except Unavailable as exc:
        if written or exc.dependency != "redis":
            raise
        log.warning("promotion history of %s: no lock (redis unavailable); writing without it", name)
        write()


def _is_move(entry: Mapping[str, Any]) -> bool:
    return "event" not in entry and "to" in entry


def trimmed(history: list[dict[str, Any]], keep: int) -> list[dict[str, Any]]:
    """The newest ``keep`` entries, and the newest production move whatever its age: rollback reads it, and
    rollout events (which share the history) must not push it out."""
    if len(history) <= keep:
        return history
    newest = history[-keep:]
    if any(_is_move(e) for e in newest):
        return newest
    moves = [e for e in history[:-keep] if _is_move(e)]
    return ([moves[-1]] + history[-(keep - 1):]) if moves else newest


def promotion_history(ctx: Context, name: str) -> list[dict[str, Any]]:
    raw = ctx.registry.get_model(name)["tags"].get(HISTORY_TAG)
    try:
        loaded = json.loads(raw) if raw else []
    except ValueError:
        loaded = []
    return loaded if isinstance(loaded, list) else []
