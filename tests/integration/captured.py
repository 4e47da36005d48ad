"""Reading back captured inference rows in integration tests."""

from __future__ import annotations

import io
import time

import pandas as pd

from mlaas.adapters.capture_buffer import CaptureBuffer
from mlaas.context import Context
from mlaas.monitoring import capture, housekeeping


def count_captured(ctx: Context, model: str, version: int) -> int:
    """Captured rows of a model version already flushed to Parquet."""
    base = capture.folder(ctx.settings.drift_bucket, model, version, ctx.settings.storage_scheme)
    return sum(len(pd.read_parquet(io.BytesIO(ctx.storage.get_bytes(obj.uri))))
               for obj in ctx.storage.list(base.bucket, base.key + "/"))


def drain(ctx: Context, buffer: CaptureBuffer, key: str, rows: int, timeout: float = 60) -> None:
    """Flush a stream until ``rows`` captured rows are in storage and nothing waits in Redis (the API
    writes captured requests to Redis in batches, a moment after answering them)."""
    model, version = buffer.parse_stream_key(key)
    deadline = time.monotonic() + timeout
    while buffer.redis.xlen(key) or buffer.claims(key) or count_captured(ctx, model, version) < rows:
        housekeeping.flush_all(ctx, buffer)
        assert time.monotonic() < deadline, f"{rows} captured rows of {model} v{version} not flushed after {timeout} s"
        time.sleep(0.2)
