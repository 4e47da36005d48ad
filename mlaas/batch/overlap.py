"""Reading the next chunk and writing the previous part in threads while the current chunk is scored.

Decoding Parquet or CSV, encoding the parts and the storage round trips release the GIL, so on two cores
they cost little beside the scoring. At most one chunk is read ahead and one part is being written, so a
job holds a few chunks whatever the size of its data set.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


@contextmanager
def read_ahead(items: Iterator[T], *, name: str = "read-ahead") -> Iterator[Iterator[T]]:
    """``items`` produced one ahead in a thread; an error raised producing an item is raised where it is taken.

    Leaving the block (at the end or on an error) stops the thread and closes ``items`` in it.
    """
    slot: queue.Queue[object] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def offer(item: object) -> bool:
        while not stop.is_set():
            try:
                slot.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer(item):
                    break
            else:
                offer(_DONE)
        except BaseException as exc:  # handed to the consumer, which raises it at this position
            offer(_Raised(exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()

    def consume() -> Iterator[T]:
        while True:
            item = slot.get()
            if item is _DONE:
                return
            if isinstance(item, _Raised):
                raise item.error
            yield item  # type: ignore[misc]

    try:
        yield consume()
    finally:
        stop.set()
        thread.join()


class _Raised:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class Writer:
    """Runs one write at a time in a thread: ``submit`` first waits for (and raises the error of) the previous one."""

    def __init__(self, name: str = "part-writer") -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._pending: Future[None] | None = None

    def submit(self, write: Callable[[], None]) -> None:
        """Start ``write`` once the previous write has finished."""
        self.wait()
        self._pending = self._pool.submit(write)

    def wait(self) -> None:
        """Wait for the write in flight; its error, if any, is raised here."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        try:
            if exc_type is None:
                self.wait()  # the job succeeds only once its last part is stored
            elif self._pending is not None:
                self._pending.exception()  # let the write in flight end; the job's own error is the one raised
        finally:
            self._pool.shutdown(wait=True)
