"""Start, change, read, end and promote a model's rollout; every change is in the model's promotion history."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from mlaas import models
from mlaas.context import Context
from mlaas.errors import Conflict, MlaasError, NotFound
from mlaas.rollouts import compare, quality
from mlaas.rollouts.specs import GuardSpec, RolloutPromoteSpec, RolloutSpec
from mlaas.training import promotion

log = logging.getLogger(__name__)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _record(ctx: Context, name: str, event: str, state: dict[str, Any], by: str, reason: str,
            **extra: Any) -> None:
    """Append a rollout event to the model's promotion history (the same capped tag as promotions)."""
    entry = {"at": _now(), "event": event, "candidate": state["version"],
             "production": state["production_version"], "mode": state["mode"], "weight": state["weight"],
             "rollout_id": state["id"], "by": by, "reason": reason, **extra}
    promotion.append_history(ctx, name, entry)


def start(name: str, spec: RolloutSpec, *, ctx: Context, actor: str) -> dict[str, Any]:
    """Start a rollout of ``spec.version`` against production, or change the running one of that version."""
    ctx.registry.get_version(name, spec.version)  # NotFound for an unknown model or version
    production = promotion.current_production(ctx, name)
    if production is None:
        raise Conflict(f"model {name!r} has no production version to compare a candidate with: promote one first")
    if production.version == spec.version:
        raise Conflict(f"{name} v{spec.version} is the production version; choose another candidate")
    current = ctx.rollouts.get(name)
    active = current if current is not None and current.get("state") == "active" else None
    settings = {"mode": spec.mode, "weight": spec.weight, "guard": spec.guard.model_dump()}
    if active is not None:
        if active["version"] != spec.version:
            raise Conflict(f"model {name!r} already has a rollout of v{active['version']}: end it first "
                           f"(DELETE /models/{name}/rollout)", details={"rollout": active["id"]})
        changed = {**active, **settings, "production_version": production.version}
        if not ctx.rollouts.replace(changed, active["id"]):
            raise Conflict(f"the rollout of {name!r} changed meanwhile: read it and try again")
        _record(ctx, name, "rollout_changed", changed, actor, f"{spec.mode}" + (
            f" at weight {spec.weight}" if spec.weight is not None else ""))
        return status(name, ctx=ctx)
    state = {"id": uuid.uuid4().hex[:16], "model": name, "version": spec.version,
             "production_version": production.version, **settings, "state": "active",
             "started_at": _now(), "started_by": actor}
    if not ctx.rollouts.replace(state, current["id"] if current else None):
        raise Conflict(f"another rollout of {name!r} started meanwhile: read it first")
    if current is not None:
        ctx.rollouts.forget(current["id"])
        try:
            quality.delete(ctx, name, current["id"])
        except MlaasError as exc:  # the new rollout stands; the old rows stay until the next start
            log.warning("rollout %s of %s: kept rows not deleted: %s", current["id"], name, exc.message)
    _record(ctx, name, "rollout_started", state, actor, "started by request")
    return status(name, ctx=ctx)


def task_of(stats: dict[str, float]) -> str:
    """The task a rollout's comparison shows: regression once a regression model scored rows."""
    return "regression" if stats.get("regression_rows", 0) > 0 else "classification"


def summary(ctx: Context, state: dict[str, Any]) -> dict[str, Any]:
    """The comparison of candidate and production so far."""
    stats = ctx.rollouts.stats(state["id"])
    task = task_of(stats)
    return {"task": task, **compare.summarize(stats, task, ctx.rollouts.quality(state["id"]))}


def status(name: str, *, ctx: Context) -> dict[str, Any]:
    """The model's rollout (the active one, else the last one ended) with its comparison."""
    ctx.registry.get_model(name)
    state = ctx.rollouts.get(name)
    if state is None:
        raise NotFound(f"model {name!r} has no rollout")
    return {**state, "queued": ctx.rollouts.queued(state["id"]), **summary(ctx, state)}


def active_state(name: str, *, ctx: Context) -> dict[str, Any]:
    """The active rollout, NotFound when there is none."""
    ctx.registry.get_model(name)
    state = ctx.rollouts.get(name)
    if state is None or state.get("state") != "active":
        raise NotFound(f"model {name!r} has no active rollout")
    return state


def end(name: str, *, ctx: Context, actor: str, reason: str, event: str = "rollout_ended",
        expected_id: str | None = None, **extra: Any) -> dict[str, Any]:
    """End the active rollout (only rollout ``expected_id`` when given); production answers everything again."""
    state = active_state(name, ctx=ctx)
    if expected_id is not None and state["id"] != expected_id:
        raise NotFound(f"rollout {expected_id} of {name!r} is no longer active")
    ended = {**state, "state": "ended", "ended_at": _now(), "ended_by": actor, "ended_reason": reason}
    if not ctx.rollouts.replace(ended, state["id"]):
        raise Conflict(f"the rollout of {name!r} changed meanwhile: read it and try again")
    _record(ctx, name, event, ended, actor, reason, comparison=summary(ctx, ended)["comparison"], **extra)
    return status(name, ctx=ctx)


def promote(name: str, spec: RolloutPromoteSpec, *, ctx: Context, actor: str) -> dict[str, Any]:
    """Promote the candidate through the usual gate, then end the rollout; both are recorded."""
    state = active_state(name, ctx=ctx)
    entry = models.promote(name, int(state["version"]), ctx=ctx, require_better=spec.require_better, actor=actor)
    return end(name, ctx=ctx, actor=actor, reason=f"promoted to production: {entry['reason']}",
               event="rollout_promoted", promotion=entry)


def guard_check(name: str, state: dict[str, Any], *, ctx: Context) -> str | None:
    """End an active rollout whose guard says the candidate does worse; returns the reason when it did."""
    reason = compare.guard_verdict(summary(ctx, state), GuardSpec(**state["guard"]))
    if reason is None:
        return None
    try:
        end(name, ctx=ctx, actor="rollout guard", reason=f"guard: {reason}", expected_id=state["id"])
    except (NotFound, Conflict):
        return None  # ended or replaced meanwhile
    return reason
