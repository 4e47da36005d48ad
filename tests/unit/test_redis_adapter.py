"""The Redis adapter: one way to connect, errors translated, locks that never leak redis-py errors."""

from __future__ import annotations

import logging
import socket
from typing import Any

import pytest
import redis
from redis.exceptions import LockNotOwnedError

from mlaas.adapters.capture_buffer import CaptureBuffer
from mlaas.adapters.monitorstore import MonitorStore
from mlaas.adapters.redis import connect, redis_lock
from mlaas.context import Context
from mlaas.errors import Unavailable
from mlaas.monitoring import capture, monitors
from mlaas.settings import Settings


@pytest.fixture
def stopped_redis() -> Settings:
    """Settings pointing at a local port nothing listens on: a Redis that is down."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return Settings(redis_url=f"redis://127.0.0.1:{port}/0", redis_socket_timeout=0.5, capture_timeout=0.2)


def test_monitor_check_against_a_stopped_redis_is_unavailable_so_the_task_retries(stopped_redis):
    ctx = Context(stopped_redis, {"monitors": MonitorStore(stopped_redis)})
    with pytest.raises(Unavailable) as err:
        monitors.run_check("m1", None, ctx=ctx, buffer=CaptureBuffer(stopped_redis))
    assert err.value.dependency == "redis"


def test_flush_against_a_stopped_redis_is_unavailable(stopped_redis):
    buffer = CaptureBuffer(stopped_redis)
    with pytest.raises(Unavailable) as err:
        capture.flush_stream(None, buffer, buffer.stream_key("m", 1))
    assert err.value.dependency == "redis"


def test_lock_acquire_against_a_stopped_redis_raises_unavailable_and_skips_the_block(stopped_redis):
    ran = []
    with pytest.raises(Unavailable) as err, MonitorStore(stopped_redis).lock("m1", 10):
        ran.append(True)
    assert err.value.dependency == "redis" and ran == []


class FakeLock:
    def __init__(self, free: bool, release_error: Exception | None = None) -> None:
        self.free, self.release_error, self.released = free, release_error, False

    def acquire(self, blocking: bool = True) -> bool:
        assert blocking is False
        return self.free

    def release(self) -> None:
        if self.release_error:
            raise self.release_error
        self.released = True


class FakeClient:
    def __init__(self, held: FakeLock) -> None:
        self.held = held
        self.calls: list[tuple[str, Any]] = []

    def lock(self, name: str, timeout: float, blocking: bool) -> FakeLock:
        self.calls.append((name, timeout))
        return self.held


def test_lock_held_by_another_yields_false_and_is_not_released():
    held = FakeLock(free=False)
    with redis_lock(FakeClient(held), "k", 5) as acquired:  # type: ignore[arg-type]
        assert acquired is False
    assert not held.released


def test_lock_is_released_after_the_block_even_when_it_raises():
    held = FakeLock(free=True)
    with pytest.raises(KeyError), redis_lock(FakeClient(held), "k", 5) as acquired:  # type: ignore[arg-type]
        assert acquired is True
        raise KeyError("boom")
    assert held.released


@pytest.mark.parametrize("error", [LockNotOwnedError("expired"), redis.ConnectionError("gone")])
def test_a_lock_that_cannot_be_released_does_not_fail_the_finished_work(error, caplog):
    with caplog.at_level(logging.WARNING), redis_lock(FakeClient(FakeLock(True, error)), "k", 5):  # type: ignore[arg-type]
        result = "done"
    assert result == "done"
    assert "lock k not released" in caplog.text


def test_fast_client_waits_less_and_never_retries():
    settings = Settings(redis_socket_timeout=3.0, capture_timeout=0.25)
    fast, default = connect(settings, fast=True), connect(settings)
    assert fast.connection_pool.connection_kwargs["socket_timeout"] == 0.25
    assert default.connection_pool.connection_kwargs["socket_timeout"] == 3.0
    assert fast.get_retry().get_retries() == 0 and default.get_retry().get_retries() == 1
