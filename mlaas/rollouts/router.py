"""The request path of a rollout: which version answers, and handing the rows to the scoring queue.

Nothing here waits on the other version: the request is answered by one version, and the rows with its answer
are held in the process and queued in Redis every MLAAS_ROLLOUT_BATCH_SECONDS by a background thread; a
worker scores them with the other version (``mlaas.rollouts.scoring``). Held requests beyond MAX_PENDING, or
while Redis is away, are dropped and counted.

A request is held as the JSON text it arrived in when the route hands it over (``raw``): the queued entry is
that text spliced in beside the answer, so the API process never serialises the body again (its CPU, and its
GIL, are what production's latency depends on). Without it, the parsed body is serialised when queued.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from mlaas import queues
from mlaas.adapters.registry import ModelVersion
from mlaas.context import Context
from mlaas.errors import MlaasError
from mlaas.inference.payload import Rows
from mlaas.rollouts import choice

log = logging.getLogger(__name__)
MAX_PENDING = 10_000  # requests held in the process at most
MAX_COMPARED_ROWS = 1_000  # larger requests are answered as usual but not compared (counted as dropped)
BREAKER_SECONDS = 5.0
RAW = "_raw"  # a held entry's request text, valid UTF-8 JSON, spliced in as its body when queued
Answer = Callable[[ModelVersion], tuple[dict[str, Any], list[Any]]]  # a version -> (response body, labels)


def entry_text(entry: dict[str, Any]) -> str:
    """A held request as the queued JSON object: its ``raw`` request text becomes the ``body`` member unparsed."""
    raw = entry.pop(RAW, None)
    text = json.dumps(entry, default=str)
    if raw is None:
        return text
    return "".join((text[:-1], ', "body": ' if len(text) > 2 else '{"body": ', raw.decode(), "}"))


class Router:
    """One per API process: rollout states read with a short cache, and the requests waiting to be queued."""

    def __init__(self, ctx: Context, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.ctx = ctx
        self.ttl = ctx.settings.resolve_ttl_seconds
        self.clock = clock
        self._states: dict[str, tuple[dict[str, Any] | None, float]] = {}
        self._open_until = 0.0
        self._pending: list[tuple[str, str, dict[str, Any]]] = []  # (model, rollout id, entry)
        self._dropped: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._flusher: threading.Thread | None = None

    def active(self, model: str) -> dict[str, Any] | None:
        """The model's active rollout, from a cache of ``resolve_ttl_seconds``; Redis away: the last known."""
        now = self.clock()
        hit = self._states.get(model)
        if hit is not None and (hit[1] > now or now < self._open_until):
            return hit[0]
        if now < self._open_until:
            return None
        try:
            state = self.ctx.rollouts.get(model, fast=True)
        except MlaasError as exc:
            self._open_until = now + BREAKER_SECONDS
            log.warning("rollout state of %s unreadable (%s); %s", model, exc.message,
                        "using the last known" if hit else "serving production")
            return hit[0] if hit else None
        active = state if state is not None and state.get("state") == "active" else None
        self._states[model] = (active, now + self.ttl)
        return active

    def forget(self, model: str) -> None:
        """Drop the cached state (this process just changed it)."""
        self._states.pop(model, None)

    def serve(self, rollout: dict[str, Any], production: ModelVersion, rows: Rows, body: dict[str, Any],
              request_id: str, resolve: Callable[[int], ModelVersion], answer: Answer, *,
              raw: bytes | None = None) -> dict[str, Any]:
        """Answer with the version the rollout chooses and queue the request for the other one to score."""
        model, number = rollout["model"], int(rollout["version"])
        if rollout["mode"] == "canary" and choice.serves_candidate(
                model, number, float(rollout["weight"]), choice.routing_id(rows.ids, rows.explicit_ids, request_id)):
            started = time.perf_counter()
            try:
                response, labels = answer(resolve(number))
            except Exception as exc:  # the candidate never fails a request production can answer
                log.warning("rollout of %s: candidate v%s failed (%s); production answers", model, number,
                            getattr(exc, "message", type(exc).__name__))
                self._hold(model, rollout["id"], {"served": "candidate", "error": True})
            else:
                self._queue(rollout, "candidate", production.version, rows, body, raw, labels, started)
                return response
        started = time.perf_counter()
        response, labels = answer(production)
        self._queue(rollout, "production", number, rows, body, raw, labels, started)
        return response

    def _queue(self, rollout: dict[str, Any], arm: str, other: int, rows: Rows, body: dict[str, Any],
               raw: bytes | None, labels: list[Any], started: float) -> None:
        ms = (time.perf_counter() - started) * 1000
        if len(rows.ids) > MAX_COMPARED_ROWS:
            self._count_drop(rollout["model"], rollout["id"])
            return
        entry: dict[str, Any] = {"served": arm, "ov": other, "ms": ms, "labels": labels}
        if raw is not None and json.detect_encoding(raw) == "utf-8":
            entry[RAW] = raw
        else:  # UTF-16/32 or a BOM cannot be spliced into a UTF-8 entry
            entry["body"] = body
        self._hold(rollout["model"], rollout["id"], entry)

    def _hold(self, model: str, rollout_id: str, entry: dict[str, Any]) -> None:
        with self._lock:
            if len(self._pending) >= MAX_PENDING:
                self._dropped[(model, rollout_id)] = self._dropped.get((model, rollout_id), 0) + 1
                return
            self._pending.append((model, rollout_id, entry))
            if self._flusher is None:
                self._flusher = threading.Thread(target=self._flush_forever, name="rollout-queue", daemon=True)
                self._flusher.start()

    def _count_drop(self, model: str, rollout_id: str, n: int = 1) -> None:
        with self._lock:
            self._dropped[(model, rollout_id)] = self._dropped.get((model, rollout_id), 0) + n

    def _flush_forever(self) -> None:
        while True:
            time.sleep(self.ctx.settings.rollout_batch_seconds)
            try:
                self.flush()
            except Exception:  # never let the thread die: later requests still need it
                log.exception("queueing rollout requests failed")

    def flush(self) -> None:
        """Queue the held requests in Redis (one list per rollout) and a scoring task where none is pending."""
        with self._lock:
            batch, self._pending = self._pending, []
            dropped, self._dropped = self._dropped, {}
        groups: dict[tuple[str, str], list[str]] = {}
        for model, rollout_id, entry in batch:
            groups.setdefault((model, rollout_id), []).append(entry_text(entry))
        store = self.ctx.rollouts
        for key in dict.fromkeys([*groups, *dropped]):
            model, rollout_id = key
            entries = groups.get(key, [])
            try:
                lost = dropped.get(key, 0) + (store.push(rollout_id, entries) if entries else 0)
                if lost:
                    store.add(rollout_id, {"dropped": float(lost)})
                if entries and store.schedule(rollout_id):
                    self.ctx.queue.send(queues.ROLLOUT_SCORE, [model, rollout_id])
            except MlaasError as exc:
                log.warning("rollout %s: %d requests not queued (%s)", rollout_id, len(entries), exc.message)
                self._count_drop(model, rollout_id, len(entries))
