"""Monitors kept durably in Redis (AOF), with claims that make each due time run once."""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

from celery.schedules import crontab

from mlaas.adapters.redis import connect, redis_errors, redis_lock, text
from mlaas.errors import InvalidInput, NotFound
from mlaas.settings import Settings


def next_cron_time(expression: str, after: datetime) -> datetime:
    """The first time after ``after`` that a five-field crontab expression fires (UTC)."""
    fields = expression.split()
    if len(fields) != 5:
        raise InvalidInput(f"schedule.cron: {expression!r} needs five fields (minute hour day month weekday)")
    minute, hour, day, month, weekday = fields
    try:
        schedule = crontab(minute=minute, hour=hour, day_of_month=day, month_of_year=month, day_of_week=weekday,
                           nowfun=lambda: after)
        delta = schedule.remaining_estimate(after)
    except (ValueError, KeyError) as exc:
        raise InvalidInput(f"schedule.cron: {expression!r} is not a valid crontab expression ({exc})") from None
    return after + max(delta, timedelta(seconds=1))


class MonitorStore:
    """CRUD of monitor records plus per-due-time claims."""

    def __init__(self, settings: Settings) -> None:
        self.redis = connect(settings)
        self.key = f"{settings.redis_prefix}:monitors"
        self.prefix = settings.redis_prefix

    def put(self, monitor: dict[str, Any]) -> None:
        with redis_errors():
            self.redis.hset(self.key, monitor["id"], json.dumps(monitor, default=str, allow_nan=False))

    def add(self, monitor: dict[str, Any]) -> bool:
        """Store a new monitor; False when the id exists."""
        with redis_errors():
            return bool(self.redis.hsetnx(self.key, monitor["id"], json.dumps(monitor, default=str, allow_nan=False)))

    def get(self, monitor_id: str) -> dict[str, Any]:
        with redis_errors():
            raw = self.redis.hget(self.key, monitor_id)
        if raw is None:
            raise NotFound(f"monitor {monitor_id!r} does not exist")
        return dict(json.loads(raw))

    def all(self) -> list[dict[str, Any]]:
        with redis_errors():
            raw = self.redis.hgetall(self.key)
        return sorted((json.loads(v) for v in raw.values()), key=lambda m: m["id"])

    def delete(self, monitor_id: str) -> None:
        with redis_errors():
            if not self.redis.hdel(self.key, monitor_id):
                raise NotFound(f"monitor {monitor_id!r} does not exist")

    def claim(self, monitor_id: str, due: str, ttl: int) -> bool:
        """True for exactly one caller per (monitor, due time), however many sweeps run."""
        with redis_errors():
            return bool(self.redis.set(f"{self.prefix}:monitor-claim:{monitor_id}:{due}", "1", nx=True, ex=ttl))

    def release(self, monitor_id: str, due: str) -> None:
        """Drop a claim (a pending check on enough waiting rows is claimed until it starts)."""
        with redis_errors():
            self.redis.delete(f"{self.prefix}:monitor-claim:{monitor_id}:{due}")

    def lock(self, monitor_id: str, ttl: int, wait: float = 0.0) -> AbstractContextManager[bool]:
        """The lock that keeps two checks of a monitor apart (``with store.lock(...) as acquired``); also
        other read-modify-writes named by ``monitor_id`` (a model's promotion history)."""
        return redis_lock(self.redis, f"{self.prefix}:monitor-lock:{monitor_id}", ttl, wait)

    def text(self, name: str) -> str | None:
        with redis_errors():
            return text(self.redis.get(f"{self.prefix}:{name}"))

    def set_text(self, name: str, value: str, ttl: int | None = None) -> None:
        with redis_errors():
            self.redis.set(f"{self.prefix}:{name}", value, ex=ttl)


def utcnow() -> datetime:
    return datetime.now(UTC)
