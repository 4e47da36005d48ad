"""The inference capture buffer against the real Redis: per-request and batched writes, refusals, a lost script."""

from __future__ import annotations

import dataclasses
import json

import pytest

from mlaas.adapters.capture_buffer import MAX_PER_CALL, CaptureBuffer
from tests.waiting import wait_for

pytestmark = pytest.mark.integration


def isolated(settings, unique, **changes):
    """A buffer under a key prefix of its own: the stack's worker flushes the streams under the usual one."""
    return CaptureBuffer(dataclasses.replace(settings, redis_prefix=f"iso-{unique}", **changes))


def wait_for_length(buffer: CaptureBuffer, key: str, length: int, timeout: float = 30.0) -> None:
    wait_for(lambda: buffer.redis.xlen(key) >= length, timeout, f"{length} entries in {key}", interval=0.02)


def entry(i: int) -> str:
    return json.dumps({"i": i})


@pytest.mark.parametrize("batch_seconds", [0.0, 0.05])
def test_every_request_is_written_once_in_order(settings, unique, batch_seconds):
    buffer = isolated(settings, unique, capture_batch_seconds=batch_seconds)
    key = buffer.stream_key(unique, 1)
    assert [buffer.append(unique, 1, entry(i), 2) for i in range(40)] == [None] * 40
    wait_for_length(buffer, key, 40)
    buffer.write_pending()  # whatever the process still held goes out now: a duplicate would show below
    assert [e["i"] for _, e in buffer.head(key, 100)] == list(range(40))
    assert key in buffer.streams()


def test_a_batch_spanning_streams_and_script_calls_keeps_each_stream_in_order(settings, unique):
    buffer = isolated(settings, unique, capture_batch_seconds=60)  # written below, not by the thread
    n = MAX_PER_CALL * 2 + 7
    for i in range(n):
        assert buffer.append(unique, 1 + i % 2, entry(i), 1) is None
    buffer.write_pending()
    for version in (1, 2):
        key = buffer.stream_key(unique, version)
        assert [e["i"] for _, e in buffer.head(key, n)] == list(range(version - 1, n, 2))
        assert buffer.dropped(key) == 0


@pytest.mark.parametrize("batch_seconds", [0.0, 0.05])
def test_a_full_stream_refuses_and_counts_the_rows(settings, unique, batch_seconds):
    buffer = isolated(settings, unique, capture_max_entries=3, capture_batch_seconds=batch_seconds)
    key = buffer.stream_key(unique, 1)
    answers = [buffer.append(unique, 1, entry(i), 5) for i in range(5)]
    if batch_seconds:
        assert answers == [None] * 5  # held in the process: Redis refuses later, and the refusal is counted there
        buffer.write_pending()
    else:
        assert answers == [None, None, None, "buffer_full", "buffer_full"]
    assert buffer.redis.xlen(key) == 3 and buffer.dropped(key) == 10
    assert [e["i"] for _, e in buffer.head(key, 10)] == [0, 1, 2]


@pytest.mark.parametrize("batch_seconds", [0.0, 60])
def test_writes_go_on_after_redis_forgets_the_script(settings, unique, batch_seconds):
    buffer = isolated(settings, unique, capture_batch_seconds=batch_seconds)
    key = buffer.stream_key(unique, 1)
    for i in range(3):
        assert buffer.append(unique, 1, entry(i), 1) is None
        buffer.write_pending()
        if i == 0:
            buffer.redis.script_flush()
    assert [e["i"] for _, e in buffer.head(key, 10)] == [0, 1, 2] and buffer.failures == 0


@pytest.mark.parametrize("batch_seconds", [0.0, 0.05])
def test_a_stream_at_its_byte_cap_refuses_and_counts_until_a_flush_frees_room(settings, unique, batch_seconds):
    buffer = isolated(settings, unique, capture_max_bytes=100, capture_batch_seconds=batch_seconds)
    key = buffer.stream_key(unique, 1)
    entries = [json.dumps({"i": i, "pad": "x" * 30}) for i in range(4)]  # 41 bytes each: two fit in 100
    size = len(entries[0])
    for text in entries:
        buffer.append(unique, 1, text, 3)
    buffer.write_pending()
    assert buffer.redis.xlen(key) == 2 and buffer.dropped(key) == 6 and buffer.held_bytes(key) == 2 * size
    first = buffer.claim(key, 1)
    assert first is not None and buffer.finish(key, first)  # a flush removes what it wrote and gives its bytes back
    assert buffer.held_bytes(key) == size
    assert buffer.append(unique, 1, entries[3], 3) is None
    buffer.write_pending()
    assert [e["i"] for _, e in buffer.head(key, 10)] == [1, 3] and buffer.dropped(key) == 6


def test_a_claim_given_back_is_taken_over_at_once_with_the_same_entries(settings, unique):
    """A flush whose write failed (storage away) gives its batch back: the next flush retries it now, not after
    the claim's lease, and a released claim that another flusher finished is not given back twice."""
    buffer = isolated(settings, unique)
    key = buffer.stream_key(unique, 1)
    for i in range(3):
        buffer.append(unique, 1, json.dumps({"i": i}), 1)
    buffer.write_pending()
    first = buffer.claim(key, 2)
    assert first is not None and buffer.claim(key, 2).range != first.range  # held: the next flush takes others
    assert buffer.release(key, first)
    again = buffer.claim(key, 2)
    assert again is not None and again.range == first.range and again.entries == first.entries
    assert buffer.finish(key, again) and not buffer.release(key, again)
