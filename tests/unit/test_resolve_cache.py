"""Version resolution in the model cache: a TTL, renewed ahead in the background, stale while the registry is down."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from mlaas.adapters.registry import ModelVersion
from mlaas.errors import NotFound, Unavailable
from mlaas.inference.cache import REFRESH_AHEAD, ModelCache

TTL = 10.0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Registry:
    """Answers the production reference with ``self.version``, or raises ``self.error``; counts the calls."""

    def __init__(self) -> None:
        self.version, self.error = 1, None
        self.calls = 0
        self.gate = threading.Event()
        self.gate.set()

    def resolve(self, name: str, ref: object) -> ModelVersion:
        self.calls += 1
        self.gate.wait(10)
        if self.error is not None:
            raise self.error
        return ModelVersion(name=name, version=self.version, run_id=None, source=f"models:/{name}/{self.version}")


def _cache() -> tuple[ModelCache, Registry, Clock]:
    registry, clock = Registry(), Clock()
    ctx = SimpleNamespace(settings=SimpleNamespace(resolve_ttl_seconds=TTL, model_cache_size=2), registry=registry)
    return ModelCache(ctx, clock=clock), registry, clock  # type: ignore[arg-type]


def _renewals_done(timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while any(t.name == "resolve-ahead" for t in threading.enumerate()):
        assert time.monotonic() < deadline, "a background renewal never finished"
        time.sleep(0.01)


def test_a_resolution_is_reused_within_its_ttl_without_asking_the_registry():
    cache, registry, clock = _cache()
    assert cache.resolve("m", None).version == 1
    registry.version = 2
    clock.now += TTL * (1 - REFRESH_AHEAD) - 0.5
    assert cache.resolve("m", None).version == 1
    _renewals_done()
    assert registry.calls == 1


def test_near_its_expiry_a_resolution_is_renewed_in_the_background_while_the_request_gets_the_current_one():
    cache, registry, clock = _cache()
    cache.resolve("m", None)
    registry.version = 2
    registry.gate.clear()  # the renewal waits on the registry: the request must not
    clock.now += TTL * (1 - REFRESH_AHEAD) + 0.5
    started = time.monotonic()
    assert cache.resolve("m", None).version == 1
    assert cache.resolve("m", None).version == 1  # one renewal at a time per reference
    assert time.monotonic() - started < 5
    registry.gate.set()
    _renewals_done()
    assert registry.calls == 2
    clock.now += REFRESH_AHEAD * TTL  # past the first answer's expiry: the renewed one holds, counted from its asking
    assert cache.resolve("m", None).version == 2
    assert registry.calls == 2


def test_a_resolution_left_unused_past_its_ttl_is_resolved_in_line():
    cache, registry, clock = _cache()
    cache.resolve("m", None)
    registry.version = 3
    clock.now += TTL + 1
    assert cache.resolve("m", None).version == 3
    assert registry.calls == 2


def test_a_failed_renewal_leaves_the_entry_to_expire_and_the_next_request_sees_the_error():
    cache, registry, clock = _cache()
    cache.resolve("m", None)
    registry.error = NotFound("model 'm' has no production version")
    clock.now += TTL * (1 - REFRESH_AHEAD) + 0.5
    assert cache.resolve("m", None).version == 1  # still within the TTL of a good answer
    _renewals_done()
    clock.now += TTL
    with pytest.raises(NotFound):
        cache.resolve("m", None)


def test_while_the_registry_is_down_the_last_answer_is_served():
    cache, registry, clock = _cache()
    cache.resolve("m", None)
    registry.error = Unavailable("mlflow down")
    clock.now += TTL + 1
    assert cache.resolve("m", None).version == 1
    calls = registry.calls
    assert cache.resolve("m", None).version == 1
    _renewals_done()
    assert registry.calls == calls
