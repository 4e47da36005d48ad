"""Reading ahead and writing behind: errors surface where they happened, nothing outlives the job."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from mlaas.batch import overlap


def test_items_come_in_order_and_an_error_is_raised_after_the_items_before_it():
    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("unreadable chunk 2")

    got = []
    with overlap.read_ahead(items()) as ahead, pytest.raises(ValueError, match="chunk 2"):
        for item in ahead:
            got.append(item)
    assert got == [1, 2]


def test_leaving_early_stops_the_reader_and_closes_its_source():
    closed, produced = threading.Event(), []

    def items() -> Iterator[int]:
        try:
            for i in range(1000):
                produced.append(i)
                yield i
        finally:
            closed.set()

    with pytest.raises(RuntimeError), overlap.read_ahead(items()) as ahead:
        for item in ahead:
            if item == 3:
                raise RuntimeError("cancelled")
    assert closed.is_set()
    assert len(produced) <= 6  # one item ahead (plus the one being offered), not the whole source
    assert not [t for t in threading.enumerate() if t.name == "read-ahead"]


def test_writes_run_one_at_a_time_and_the_last_is_finished_when_the_block_ends():
    done: list[int] = []

    def write(i: int) -> None:
        time.sleep(0.02)
        done.append(i)

    with overlap.Writer() as writer:
        for i in range(3):
            writer.submit(lambda i=i: write(i))
            assert done == list(range(i))  # the previous write finished before this one started
    assert done == [0, 1, 2]


def test_a_failed_write_is_raised_by_the_next_submit_and_no_later_write_starts():
    done: list[int] = []

    def fail() -> None:
        raise OSError("storage refused the part")

    with pytest.raises(OSError, match="refused"), overlap.Writer() as writer:
        writer.submit(fail)
        writer.submit(lambda: done.append(1))
    assert done == []
    with pytest.raises(OSError, match="refused"), overlap.Writer() as writer:
        writer.submit(fail)  # the last write: raised when the block ends
