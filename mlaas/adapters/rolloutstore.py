"""Rollouts kept in Redis, shared by every API replica and worker: the state, its counters, its scoring queue
and its live quality summary."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import redis

from mlaas.adapters.redis import connect, redis_errors
from mlaas.settings import Settings

SCHEDULE_SECONDS = 60  # a scoring task is queued at most once per this long while one is pending


class RolloutStore:
    """One JSON state per model, and per rollout id a hash of counters and a capped list of requests to score."""

    def __init__(self, settings: Settings) -> None:
        self.prefix = f"{settings.redis_prefix}:rollout"
        self.redis = connect(settings)
        self.fast = connect(settings, fast=True)  # the request path: fails within capture_timeout, no retry
        self.max_queue = settings.rollout_queue_max
        self.max_bytes = settings.rollout_queue_max_bytes

    def _state_key(self, model: str) -> str:
        return f"{self.prefix}:state:{quote(model, safe='')}"

    def get(self, model: str, *, fast: bool = False) -> dict[str, Any] | None:
        """The model's rollout (active or the last one ended), None when it never had one."""
        with redis_errors():
            raw = (self.fast if fast else self.redis).get(self._state_key(model))
        return dict(json.loads(raw)) if raw else None

    def put(self, state: dict[str, Any]) -> None:
        with redis_errors():
            self.redis.set(self._state_key(state["model"]), json.dumps(state, allow_nan=False))

    def replace(self, state: dict[str, Any], expected_id: str | None) -> bool:
        """Write ``state`` only if the stored rollout's id is still ``expected_id`` (None: none stored)."""
        key = self._state_key(state["model"])
        with redis_errors(), self.redis.pipeline() as pipe:
            try:
                pipe.watch(key)
                raw = pipe.get(key)
                current = json.loads(raw)["id"] if raw else None
                if current != expected_id:
                    return False
                pipe.multi()
                pipe.set(key, json.dumps(state, allow_nan=False))
                pipe.execute()
            except redis.WatchError:
                return False
        return True

    def stats(self, rollout_id: str) -> dict[str, float]:
        with redis_errors():
            raw = self.redis.hgetall(f"{self.prefix}:stats:{rollout_id}")
        return {str(k): float(v) for k, v in raw.items()}

    def add(self, rollout_id: str, counts: dict[str, float]) -> None:
        """Add counts to a rollout's totals, in one round trip."""
        if not counts:
            return
        with redis_errors(), self.redis.pipeline(transaction=False) as pipe:
            for field, value in counts.items():
                pipe.hincrbyfloat(f"{self.prefix}:stats:{rollout_id}", field, value)
            pipe.execute()

    def reserve(self, rollout_id: str, rows: int, limit: int) -> int:
        """Of ``rows`` more rows to keep, how many fit under ``limit`` kept per rollout (atomic across workers)."""
        if rows <= 0:
            return 0
        with redis_errors():
            total = int(self.redis.hincrby(f"{self.prefix}:stats:{rollout_id}", "quality.reserved", rows))
        return max(0, min(rows, limit - (total - rows)))

    def release(self, rollout_id: str, rows: int) -> None:
        """Give back reserved rows that were not kept after all."""
        if rows > 0:
            with redis_errors():
                self.redis.hincrby(f"{self.prefix}:stats:{rollout_id}", "quality.reserved", -rows)

    def quality(self, rollout_id: str) -> dict[str, Any] | None:
        """The live quality last computed for a rollout (None before the first)."""
        with redis_errors():
            raw = self.redis.get(f"{self.prefix}:quality:{rollout_id}")
        return dict(json.loads(raw)) if raw else None

    def set_quality(self, rollout_id: str, summary: dict[str, Any]) -> None:
        with redis_errors():
            self.redis.set(f"{self.prefix}:quality:{rollout_id}", json.dumps(summary, allow_nan=False))

    def push(self, rollout_id: str, entries: list[str]) -> int:
        """Queue requests for scoring while the queue holds fewer than MLAAS_ROLLOUT_QUEUE_MAX of them and
        MLAAS_ROLLOUT_QUEUE_MAX_BYTES of text; returns how many (the last ones) did not fit."""
        key, size_key = f"{self.prefix}:queue:{rollout_id}", f"{self.prefix}:bytes:{rollout_id}"
        with redis_errors():
            with self.redis.pipeline(transaction=False) as pipe:
                pipe.llen(key)
                pipe.get(size_key)
                length, held = pipe.execute()
            room, budget = self.max_queue - int(length), self.max_bytes - int(held or 0)
            taken, used = 0, 0
            for entry in entries:
                if taken >= room or used + len(entry) > budget:
                    break
                taken += 1
                used += len(entry)
            if taken:
                with self.redis.pipeline(transaction=False) as pipe:
                    pipe.rpush(key, *entries[:taken])
                    pipe.incrby(size_key, used)
                    pipe.execute()
        return len(entries) - taken

    def pop(self, rollout_id: str, count: int) -> list[str]:
        """Take up to ``count`` queued requests, giving their size back to the byte cap."""
        with redis_errors():
            taken = [str(v) for v in self.redis.lpop(f"{self.prefix}:queue:{rollout_id}", count) or []]
            if taken and int(self.redis.decrby(f"{self.prefix}:bytes:{rollout_id}", sum(map(len, taken)))) < 0:
                self.redis.set(f"{self.prefix}:bytes:{rollout_id}", 0)
        return taken

    def forget(self, rollout_id: str) -> None:
        """Delete a replaced rollout's counters and queue (its history entries keep the final comparison)."""
        with redis_errors():
            self.redis.delete(*(f"{self.prefix}:{part}:{rollout_id}" for part in ("stats", "queue", "bytes",
                                                                                  "scheduled", "quality")))

    def queued(self, rollout_id: str) -> int:
        with redis_errors():
            return int(self.redis.llen(f"{self.prefix}:queue:{rollout_id}"))

    def schedule(self, rollout_id: str) -> bool:
        """True for the one caller that should queue a scoring task now (none is pending)."""
        with redis_errors():
            return bool(self.redis.set(f"{self.prefix}:scheduled:{rollout_id}", "1", nx=True, ex=SCHEDULE_SECONDS))

    def unschedule(self, rollout_id: str) -> None:
        with redis_errors():
            self.redis.delete(f"{self.prefix}:scheduled:{rollout_id}")
