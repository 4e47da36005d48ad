"""The worker's side of live quality: join outcomes, fit calibrations, log changed windows as perf_ runs."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import unquote

from mlaas.context import Context
from mlaas.errors import MlaasError, Unavailable
from mlaas.quality import calibration, join, performance
from mlaas.rollouts import quality as rollout_quality

log = logging.getLogger(__name__)


def refresh(model: str, *, ctx: Context) -> dict[str, Any]:
    """Join a model's outcomes; when anything changed, log each changed window of each version joined. The
    model's rollout, if any, has its live quality recomputed (when its outcomes or compared rows changed)."""
    outcome = join.run(model, ctx=ctx)
    rollout = _rollout_quality(model, ctx=ctx)
    if rollout is not None:
        outcome["rollout_quality"] = rollout
    if not outcome["joined"]:
        return outcome
    logged: dict[str, list[str]] = {}
    for version in outcome["report"]["versions"]:
        mv = ctx.registry.get_version(model, version)
        if mv.tags.get("task", "classification") == "classification":
            calibration.ensure(ctx, model, version)
        logged[str(version)] = performance.log_windows(model, version, ctx=ctx)
    return {**outcome, "perf_runs": logged}


def _rollout_quality(model: str, *, ctx: Context) -> dict[str, Any] | None:
    try:
        return rollout_quality.refresh(model, ctx=ctx)
    except Unavailable:
        raise
    except MlaasError as exc:  # the join's own results still stand
        log.warning("live quality of the rollout of %s not computed: %s", model, exc.message)
        return {"refreshed": False, "error": exc.to_dict()}


def models_with_outcomes(ctx: Context) -> list[str]:
    """Every model that has received outcomes (a folder under feedback/)."""
    names = {o.uri.key.split("/")[1] for o in ctx.storage.list(ctx.settings.drift_bucket, "feedback/")
             if "/outcomes/" in o.uri.key}
    return sorted(unquote(name) for name in names)


def refresh_all(*, ctx: Context) -> list[dict[str, Any]]:
    """Refresh every model with outcomes; one failing model does not stop the others."""
    done = []
    for model in models_with_outcomes(ctx):
        try:
            done.append(refresh(model, ctx=ctx))
        except Unavailable:
            raise
        except MlaasError as exc:
            log.warning("feedback of %s not joined: %s", model, exc.message)
            done.append({"model": model, "joined": False, "error": exc.to_dict()})
    return done
