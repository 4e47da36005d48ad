"""The inference capture buffer against the real Redis: per-request and batched writes, refusals, a lost script."""

from __future__ import annotations

import dataclasses
import time

import pytest

from mlaas.adapters.capture_buffer import CaptureBuffer

pytestmark = pytest.mark.integration


def isolated(settings, unique, **changes):
    """A buffer under a key prefix of its own: the stack's worker flushes the streams under the usual one."""
    return CaptureBuffer(dataclasses.replace(settings, redis_prefix=f"iso-{unique}", **changes))


def wait_for_length(buffer: CaptureBuffer, key: str, length: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while buffer.redis.xlen(key) < length:
        assert time.monotonic() < deadline, f"{key} has {buffer.redis.xlen(key)} entries, not {length}"
        time.sleep(0.02)


@pytest.mark.parametrize("batch_seconds", [0.0, 0.05])
def test_every_request_is_written_once_in_order(settings, unique, batch_seconds):
    buffer = isolated(settings, unique, capture_batch_seconds=batch_seconds)
    key = buffer.stream_key(unique, 1)
    assert [buffer.append(unique, 1, {"i": i}, 2) for i in range(40)] == [None] * 40
    wait_for_length(buffer, key, 40)
    time.sleep(3 * batch_seconds)
    assert [entry["i"] for _, entry in buffer.head(key, 100)] == list(range(40))
    assert key in buffer.streams()


@pytest.mark.parametrize("batch_seconds", [0.0, 0.05])
def test_a_full_stream_refuses_and_counts_the_rows(settings, unique, batch_seconds):
    buffer = isolated(settings, unique, capture_max_entries=3, capture_batch_seconds=batch_seconds)
    key = buffer.stream_key(unique, 1)
    answers = [buffer.append(unique, 1, {"i": i}, 5) for i in range(5)]
    if batch_seconds:
        assert answers == [None] * 5  # held in the process: Redis refuses later, and the refusal is counted there
        buffer.write_pending()
    else:
        assert answers == [None, None, None, "buffer_full", "buffer_full"]
    assert buffer.redis.xlen(key) == 3 and buffer.dropped(key) == 10


def test_writes_go_on_after_redis_forgets_the_script(settings, unique):
    buffer = isolated(settings, unique)
    key = buffer.stream_key(unique, 1)
    assert buffer.append(unique, 1, {"i": 0}, 1) is None
    buffer.redis.script_flush()
    assert buffer.append(unique, 1, {"i": 1}, 1) is None
    assert buffer.append(unique, 1, {"i": 2}, 1) is None
    assert [entry["i"] for _, entry in buffer.head(key, 10)] == [0, 1, 2] and buffer.failures == 0
