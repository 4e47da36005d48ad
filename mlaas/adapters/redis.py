"""The one way mlaas talks to Redis: clients with bounded timeouts, error translation, and locks."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import LockError
from redis.retry import Retry

from mlaas.errors import Unavailable
from mlaas.settings import Settings

log = logging.getLogger(__name__)


def connect(settings: Settings, *, fast: bool = False) -> redis.Redis:
    """A Redis client whose calls fail within seconds when the server is dead or hung.

    The default client waits ``redis_socket_timeout`` and retries once (redis-py's default is ten retries,
    each waiting the full socket timeout on a hung server). ``fast`` is for the request path (inference
    capture, rate limits): it waits ``capture_timeout`` and never retries.
    """
    timeout = settings.capture_timeout if fast else settings.redis_socket_timeout
    retry = Retry(NoBackoff(), 0) if fast else Retry(ExponentialBackoff(cap=0.5, base=0.1), 1)
    return redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=retry,
        health_check_interval=0 if fast else 30,
        decode_responses=True,
    )


@contextmanager
def redis_errors() -> Iterator[None]:
    """Translate redis-py connection errors into Unavailable('redis')."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise Unavailable("redis", f"redis does not answer ({type(exc).__name__})") from None


@contextmanager
def redis_lock(client: redis.Redis, name: str, ttl: float, wait: float = 0.0) -> Iterator[bool]:
    """Hold the lock ``name`` for the block if no one holds it (or frees it within ``wait`` seconds); yields
    whether it was acquired.

    A Redis that does not answer raises Unavailable('redis'). Releasing cannot fail the block: a lock that
    expired meanwhile, or a Redis gone at the end, leaves it to expire after ``ttl``.
    """
    if wait > 0:
        held = client.lock(name, timeout=ttl, blocking=True, blocking_timeout=wait)
        with redis_errors():
            acquired = bool(held.acquire())
    else:
        held = client.lock(name, timeout=ttl, blocking=False)
        with redis_errors():
            acquired = bool(held.acquire(blocking=False))
    try:
        yield acquired
    finally:
        if acquired:
            try:
                with redis_errors():
                    held.release()
            except (LockError, Unavailable) as exc:
                log.warning("lock %s not released (%s); it expires within %s s", name, type(exc).__name__, ttl)


def text(value: bytes | str | None) -> str | None:
    """A reply of a decoding client as the text it is (redis-py types replies as bytes or str)."""
    return value.decode() if isinstance(value, bytes) else value
