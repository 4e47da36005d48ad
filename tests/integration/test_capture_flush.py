"""Batched flushes of captured requests against the real Redis and S3: every row once, types kept, flushers at once."""

from __future__ import annotations

import dataclasses
import io
import threading

import numpy as np
import pandas as pd
import pytest

from mlaas.adapters.capture_buffer import CaptureBuffer
from mlaas.context import Context
from mlaas.inference.predict import Columns, Prediction
from mlaas.monitoring import capture
from mlaas.monitoring.traffic import select_captured

pytestmark = pytest.mark.integration
CLASSES = ["no", "yes"]


def isolated(settings, unique, **changes) -> CaptureBuffer:
    """A buffer under a key prefix of its own: the stack's worker flushes the streams under the usual one."""
    return CaptureBuffer(dataclasses.replace(settings, redis_prefix=f"iso-{unique}", capture_batch_seconds=0,
                                             **changes))


def capture_requests(buffer: CaptureBuffer, model: str, count: int) -> int:
    """Buffer ``count`` answered requests of two shapes (a frame of 1-3 rows, or fast-path columns); their rows."""
    rng = np.random.default_rng(7)
    rows = 0
    for i in range(count):
        n = 1 if i % 10 else 3
        proba = rng.random((n, 2))
        if i % 4 == 3:
            features = Columns(["age", "sex"], {"age": rng.normal(30, 5, n), "sex": np.array(["f"] * n, object)})
        else:
            features = pd.DataFrame({"age": rng.normal(30, 5, n), "klass": rng.integers(1, 4, n),
                                     "sex": [None if (i + j) % 5 == 0 else "m" for j in range(n)]})
        probabilities = [dict(zip(CLASSES, map(float, p), strict=True)) for p in proba]
        result = Prediction([f"{i}.{j}" for j in range(n)], [CLASSES[int(p[1] > p[0])] for p in proba],
                            probabilities, [], features, proba)
        assert capture.record(buffer, model, 1, result, f"req-{i}")
        rows += n
    return rows


def stored(ctx: Context, model: str) -> pd.DataFrame:
    base = capture.folder(ctx.settings.drift_bucket, model, 1)
    frames = [pd.read_parquet(io.BytesIO(ctx.storage.get_bytes(o.uri)))
              for o in ctx.storage.list(base.bucket, base.key + "/")]
    return pd.concat(frames, ignore_index=True)


def test_flushers_at_once_write_every_captured_row_exactly_once_with_its_types(ctx, settings, unique):
    buffer = isolated(settings, unique, capture_flush_batch=150)
    key = buffer.stream_key(unique, 1)
    rows = capture_requests(buffer, unique, 1200)
    results: list[dict] = []
    errors: list[BaseException] = []

    def flusher() -> None:
        mine = isolated(settings, unique, capture_flush_batch=150)  # a client of its own, as a worker has
        try:
            while (out := capture.flush_stream(ctx, mine, key))["entries"]:
                results.append(out)
        except BaseException as exc:  # noqa: BLE001  (reported by the test thread)
            errors.append(exc)

    threads = [threading.Thread(target=flusher) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors and not any(t.is_alive() for t in threads)
    assert len({w for out in results for w in out["files"]}) == len(results) == 8  # 1200 entries, 150 a batch
    assert buffer.length(key) == 0 and buffer.claims(key) == [] and buffer.held_bytes(key) == 0
    frame = stored(ctx, unique)
    assert len(frame) == rows == sum(out["rows"] for out in results)
    assert not frame.duplicated(["_request_id", "_id"]).any()
    assert set(frame["_request_id"]) == {f"req-{i}" for i in range(1200)}
    assert buffer.add_unchecked(key, 0) == rows
    assert frame["age"].dtype == np.float64 and frame["_proba_yes"].dtype == np.float64
    assert pd.api.types.is_datetime64_any_dtype(frame["_ts"])
    assert frame["klass"].isna().sum() == 300  # the fast-path requests had no such column
    assert set(frame["klass"].dropna()) <= {1.0, 2.0, 3.0}
    assert set(frame["sex"].dropna()) == {"m", "f"} and frame["sex"].isna().any()
    one = frame[frame["_request_id"] == "req-0"]
    assert one["_id"].tolist() == ["0.0", "0.1", "0.2"] and one["_prediction"].isin(CLASSES).all()


def test_a_flusher_that_dies_after_writing_is_taken_over_into_the_same_files(ctx, settings, unique):
    buffer = isolated(settings, unique, capture_flush_batch=40)
    key = buffer.stream_key(unique, 1)
    rows = capture_requests(buffer, unique, 100)
    dying = isolated(settings, unique, capture_flush_batch=40)
    dying.claim_lease = 0.001  # it holds its batch 1 ms: dead at once, for the others

    def die(*_: object) -> bool:
        raise Crash

    dying.finish = die  # type: ignore[method-assign]
    with pytest.raises(Crash):
        capture.flush_stream(ctx, dying, key)
    written = set(stored(ctx, unique)["_entry"])
    assert len(written) == 40 and buffer.length(key) == 100 and len(buffer.claims(key)) == 1
    # a watermark stops short of the held batch (its files may have gaps before them while it is held)
    assert select_captured(ctx, unique, 1, unsettled_from=buffer.unsettled_from(key))[1] == []
    first = capture.flush_stream(ctx, buffer, key)  # the expired claim first, with the same range
    assert set(stored(ctx, unique)["_entry"]) == written and first["entries"] == 40
    while capture.flush_stream(ctx, buffer, key)["entries"]:
        pass
    frame = stored(ctx, unique)
    assert len(frame) == rows and not frame.duplicated(["_request_id", "_id"]).any()
    assert buffer.length(key) == 0 and buffer.claims(key) == [] and buffer.add_unchecked(key, 0) == rows


class Crash(Exception):
    pass
