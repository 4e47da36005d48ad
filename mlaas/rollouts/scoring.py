"""The worker side of a rollout: score the queued requests with the version that did not answer, and compare."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from mlaas import queues
from mlaas.context import Context
from mlaas.errors import MlaasError
from mlaas.inference import payload, predict
from mlaas.inference.cache import ModelCache
from mlaas.rollouts import service
from mlaas.rollouts.compare import Tally

log = logging.getLogger(__name__)
BATCH = 200  # requests popped and counted at a time
TIME_BUDGET_SECONDS = 20.0  # then the task queues itself again, so other housekeeping is not held up


def drain(model: str, rollout_id: str, *, ctx: Context, cache: ModelCache) -> dict[str, Any]:
    """Score what the rollout's queue holds, add the counts, and let the guard end an active rollout."""
    store = ctx.rollouts
    store.unschedule(rollout_id)  # requests queued from now on schedule another task
    state = store.get(model)
    if state is None or state["id"] != rollout_id:
        return {"model": model, "rollout": rollout_id, "scored": 0, "skipped": "not the model's rollout"}
    deadline = time.monotonic() + TIME_BUDGET_SECONDS
    scored, ended = 0, None
    while time.monotonic() < deadline:
        batch = store.pop(rollout_id, BATCH)
        if not batch:
            break
        tally = Tally()
        for text in batch:
            score_entry(json.loads(text), model, tally, ctx=ctx, cache=cache)
        store.add(rollout_id, dict(tally.counts))
        scored += len(batch)
        if state.get("state") == "active" and ended is None:
            ended = service.guard_check(model, state, ctx=ctx)
    if store.queued(rollout_id) and store.schedule(rollout_id):
        ctx.queue.send(queues.ROLLOUT_SCORE, [model, rollout_id])
    return {"model": model, "rollout": rollout_id, "scored": scored, "ended": ended}


def score_entry(entry: dict[str, Any], model: str, tally: Tally, *, ctx: Context, cache: ModelCache) -> None:
    """Count one answered request, and score its rows with the other version (a failure counts as its error)."""
    served = entry["served"]
    if entry.get("error"):
        tally.error(served)
        return
    labels = entry["labels"]
    tally.scored(served, "served", float(entry["ms"]), len(labels))
    other = "candidate" if served == "production" else "production"
    try:
        version = cache.resolve(model, int(entry["ov"]))
        loaded = cache.get(version)
        started = time.perf_counter()
        rows = payload.parse_rows(entry["body"], max_rows=ctx.settings.max_inference_rows)
        features, ignored = predict.prepare_features(rows, loaded)
        result = predict.predict(loaded, features, rows, ignored)
        ms = (time.perf_counter() - started) * 1000
    except Exception as exc:  # any failure of the other version is its error, never the end of the batch
        log.info("rollout of %s: %s v%s failed on a request: %s", model, other, entry["ov"],
                 exc.message if isinstance(exc, MlaasError) else repr(exc)[:300])
        tally.error(other)
        return
    tally.scored(other, "background", ms, len(result.labels))
    if loaded.task == "regression":
        tally.counts["regression_rows"] += len(labels)
    tally.compared(labels, result.labels)
