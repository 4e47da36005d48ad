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
from mlaas.inference.cache import ModelCache, ServedModel
from mlaas.rollouts import quality, service
from mlaas.rollouts.compare import Tally
from mlaas.rollouts.quality import Kept

log = logging.getLogger(__name__)
BATCH = 200  # requests popped and counted at a time
TIME_BUDGET_SECONDS = 20.0  # then the task queues itself again, so other housekeeping is not held up
# Compared requests gathered before their rows are written as one live-quality part (and at the drain's end):
# each part is an S3 write, and the S3 server's CPU is taken from the API on a shared host.
KEEP_REQUESTS = 5_000


def drain(model: str, rollout_id: str, *, ctx: Context, cache: ModelCache) -> dict[str, Any]:
    """Score what the rollout's queue holds, add the counts, and let the guard end an active rollout."""
    store = ctx.rollouts
    store.unschedule(rollout_id)  # requests queued from now on schedule another task
    state = store.get(model)
    if state is None or state["id"] != rollout_id:
        store.forget(rollout_id)
        return {"model": model, "rollout": rollout_id, "scored": 0, "skipped": "not the model's rollout"}
    deadline = time.monotonic() + TIME_BUDGET_SECONDS
    scored, ended, kept = 0, None, Kept()
    try:
        while time.monotonic() < deadline:
            batch = store.pop(rollout_id, BATCH)
            if not batch:
                break
            tally = Tally()
            score_batch([json.loads(text) for text in batch], model, tally, ctx=ctx, cache=cache, kept=kept)
            if len(kept.requests) >= KEEP_REQUESTS:
                kept = _keep(model, rollout_id, kept, tally, ctx=ctx)
            store.add(rollout_id, dict(tally.counts))
            scored += len(batch)
            if state.get("state") == "active" and ended is None:
                ended = service.guard_check(model, state, ctx=ctx)
    finally:  # what was compared is kept, whatever stopped the drain
        if kept.requests:
            tally = Tally()
            _keep(model, rollout_id, kept, tally, ctx=ctx)
            store.add(rollout_id, dict(tally.counts))
    if scored and store.stats(rollout_id).get("quality.parts", 0) >= quality.COMPACT_PARTS:
        quality.compact(model, rollout_id, ctx=ctx)
    if store.queued(rollout_id) and store.schedule(rollout_id):
        ctx.queue.send(queues.ROLLOUT_SCORE, [model, rollout_id])
    return {"model": model, "rollout": rollout_id, "scored": scored, "ended": ended}


def _keep(model: str, rollout_id: str, kept: Kept, tally: Tally, *, ctx: Context) -> Kept:
    """Write the gathered compared rows as one part (counts to ``tally``); returns an empty gathering."""
    quality.keep(model, rollout_id, kept, tally, ctx=ctx, ids_of=lambda body: _ids(body, ctx))
    return Kept()


def score_batch(entries: list[dict[str, Any]], model: str, tally: Tally, *, ctx: Context,
                cache: ModelCache, kept: Kept | None = None) -> None:
    """Count each answered request and score the rows with the other version: record payloads in one vectorised
    predict per version (each request gets its share of the time), anything else, or a batch that fails, one by one.
    Each compared request goes to ``kept`` with both answers."""
    kept = kept if kept is not None else Kept()
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for entry in entries:
        if entry.get("error"):
            tally.error(entry["served"])
            continue
        tally.scored(entry["served"], "served", float(entry["ms"]), len(entry["labels"]))
        groups.setdefault((entry["served"], int(entry["ov"])), []).append(entry)
    for (served, number), group in groups.items():
        other = "candidate" if served == "production" else "production"
        try:
            loaded = cache.get(cache.resolve(model, number))
        except Exception as exc:  # the other version cannot be loaded: each request is its error
            log.warning("rollout of %s: %s v%s not loaded: %s", model, other, number, _message(exc))
            for _ in group:
                tally.error(other)
            continue
        for chunk in _chunks(group, ctx.settings.max_inference_rows):
            if not _score_together(chunk, loaded, other, tally, kept, ctx=ctx):
                for entry in chunk:
                    _score_one(entry, loaded, other, tally, kept, ctx=ctx)


def _message(exc: Exception) -> str:
    return exc.message if isinstance(exc, MlaasError) else repr(exc)[:300]


def _chunks(group: list[dict[str, Any]], max_rows: int) -> list[list[dict[str, Any]]]:
    chunks: list[list[dict[str, Any]]] = [[]]
    rows = 0
    for entry in group:
        n = len(entry["labels"])
        if chunks[-1] and rows + n > max_rows:
            chunks.append([])
            rows = 0
        chunks[-1].append(entry)
        rows += n
    return chunks


def _predict(body: dict[str, Any], loaded: ServedModel, ctx: Context) -> predict.Prediction:
    rows = payload.parse_rows(body, max_rows=ctx.settings.max_inference_rows)
    features, ignored = predict.prepare_features(rows, loaded)
    return predict.predict(loaded, features, rows, ignored)


def _ids(body: dict[str, Any], ctx: Context) -> tuple[list[Any], list[bool]]:
    """A request's row ids and which of them it gave itself (the others are positions: feedback cannot name them)."""
    rows = payload.parse_rows(body, max_rows=ctx.settings.max_inference_rows)
    return rows.ids, rows.explicit_ids


def _score_together(chunk: list[dict[str, Any]], loaded: ServedModel, other: str, tally: Tally, kept: Kept, *,
                    ctx: Context) -> bool:
    """Score record payloads as one request (ids left out: they may repeat across requests); False: not done."""
    if len(chunk) < 2 or not all(isinstance(e["body"].get("data"), list) for e in chunk):
        return False
    if loaded.columns is not None and not all(_covers(e["body"]["data"], loaded.columns) for e in chunk):
        return False  # alone, that request is refused for a missing column; together, other rows would fill it
    drop = {payload.ID_KEY, loaded.id_column} - set(loaded.columns or ())
    records = [{k: v for k, v in r.items() if k not in drop} if isinstance(r, dict) else r
               for entry in chunk for r in entry["body"]["data"]]
    started = time.perf_counter()
    try:
        answer = _predict({"data": records}, loaded, ctx)
    except Exception:  # one bad request fails the batch: score them one by one to find it
        return False
    ms = (time.perf_counter() - started) * 1000
    at = 0
    for entry in chunk:
        n = len(entry["labels"])
        proba = None if answer.proba is None else answer.proba[at:at + n]
        _compared(entry, answer.labels[at:at + n], proba, ms * n / len(records), loaded, other, tally, kept)
        at += n
    return True


def _covers(records: list[Any], columns: list[str]) -> bool:
    present: set[str] = set()
    for record in records:
        if not isinstance(record, dict):
            return False
        present.update(record)
    return set(columns) <= present


def _score_one(entry: dict[str, Any], loaded: ServedModel, other: str, tally: Tally, kept: Kept, *,
               ctx: Context) -> None:
    started = time.perf_counter()
    try:
        answer = _predict(entry["body"], loaded, ctx)
    except Exception as exc:  # any failure of the other version is its error, never the end of the batch
        log.info("rollout of %s: %s v%s failed on a request: %s", loaded.name, other, loaded.version, _message(exc))
        tally.error(other)
        return
    _compared(entry, answer.labels, answer.proba, (time.perf_counter() - started) * 1000, loaded, other, tally, kept)


def _compared(entry: dict[str, Any], labels: list[Any], proba: Any, ms: float, loaded: ServedModel, other: str,
              tally: Tally, kept: Kept) -> None:
    tally.scored(other, "background", ms, len(labels))
    regression = loaded.task == "regression"
    if regression:
        tally.counts["regression_rows"] += len(labels)
    tally.compared(entry["labels"], labels)
    classes = [str(c) for c in loaded.classes or range(proba.shape[1])] if proba is not None else []
    kept.add(entry, other, labels, proba, classes, regression)
