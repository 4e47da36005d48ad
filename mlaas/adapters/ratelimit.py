"""Per-key request limits: a fixed one-minute window counted in Redis, shared by every API process.

It fails open: when Redis does not answer, requests pass (inference must keep answering) and the
failure is logged; a breaker skips Redis for a few seconds after an error.
"""

from __future__ import annotations

import logging
import time

import redis

from mlaas.adapters.redis import connect
from mlaas.settings import Settings

log = logging.getLogger(__name__)
WINDOW = 60
BREAKER_SECONDS = 5.0


class RateLimiter:
    def __init__(self, settings: Settings) -> None:
        self.limit = settings.rate_limit_per_minute
        self.prefix = f"{settings.redis_prefix}:rate"
        self.redis = connect(settings, fast=True)  # on the request path: fail once, fast
        self._open_until = 0.0

    def check(self, key_name: str, limit: int | None = None) -> int | None:
        """None when the request may pass, else the seconds until the window resets."""
        limit = self.limit if limit is None else limit
        if limit <= 0 or time.monotonic() < self._open_until:
            return None
        now = time.time()
        window = int(now // WINDOW)
        name = f"{self.prefix}:{key_name}:{window}"
        try:
            pipe = self.redis.pipeline()
            pipe.incr(name)
            pipe.expire(name, WINDOW + 5)
            count = int(pipe.execute()[0])
        except redis.RedisError as exc:
            self._open_until = time.monotonic() + BREAKER_SECONDS
            log.warning("rate limiting skipped: redis unavailable (%s)", type(exc).__name__)
            return None
        if count > limit:
            return max(1, int((window + 1) * WINDOW - now) + 1)
        return None
