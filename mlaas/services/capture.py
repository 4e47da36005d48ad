"""Inference capture: buffer answered requests cheaply, flush them idempotently to Parquet in storage.

Files land at ``s3://<drift bucket>/capture/<model>/<version>/date=YYYY-MM-DD/<first>_<last>.parquet``,
named after the first and last buffered entries they hold. Before writing, the flush records that range
as its plan; a flush that crashed is redone from the plan, so it rewrites the same files and never
duplicates rows.
"""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import quote

import pandas as pd

from mlaas.adapters import telemetry
from mlaas.adapters.capture_buffer import CaptureBuffer
from mlaas.datasets import write_frame
from mlaas.services.inference import Prediction
from mlaas.uris import S3Uri

log = logging.getLogger(__name__)
FLUSH_LOCK_SECONDS = 300


def record(buffer: CaptureBuffer, model: str, version: int, result: Prediction, request_id: str) -> bool:
    """Buffer one answered request (ids, inputs, outputs, version, time); never raises, counts drops."""
    features = result.features
    entry: dict[str, Any] = {
        "ts": time.time(),
        "rid": request_id,
        "ids": [str(i) for i in result.ids],
        "columns": [str(c) for c in features.columns],
        "data": features.astype(object).where(features.notna(), None).to_numpy().tolist(),
        "pred": result.labels,
    }
    if result.probabilities is not None:
        entry["proba"] = result.probabilities
    refused = buffer.append(model, version, entry, len(result.ids))
    if refused:
        telemetry.capture_dropped(model, refused, len(result.ids))
    return refused is None


def folder(drift_bucket: str, model: str, version: int) -> S3Uri:
    """Where a model version's captured rows are stored."""
    return S3Uri(drift_bucket, f"capture/{quote(model, safe='')}/{version}")


def entries_frame(entries: list[tuple[str, dict[str, Any]]]) -> pd.DataFrame:
    """One row per captured prediction: features plus ``_entry``, ``_ts``, ``_request_id``, ``_id``, outputs."""
    parts = []
    for entry_id, entry in entries:
        frame = pd.DataFrame(entry["data"], columns=entry["columns"])
        frame.insert(0, "_id", entry["ids"])
        frame.insert(0, "_request_id", entry.get("rid") or "")
        frame.insert(0, "_ts", pd.to_datetime(entry["ts"], unit="s", utc=True))
        frame.insert(0, "_entry", entry_id)
        frame["_prediction"] = [str(p) for p in entry["pred"]]
        for cls in sorted(entry.get("proba", [{}])[0]):
            frame[f"_proba_{cls}"] = [float(p[cls]) for p in entry["proba"]]
        parts.append(frame)
    combined = pd.concat(parts, ignore_index=True)
    for column in combined.columns:
        if combined[column].dtype == object:
            try:
                combined[column] = pd.to_numeric(combined[column])
            except (ValueError, TypeError):
                combined[column] = combined[column].map(lambda v: None if v is None else str(v))
    return combined


def flush_stream(ctx: Any, buffer: CaptureBuffer, key: str) -> dict[str, Any]:
    """Write one stream's buffered entries (at most one batch) to Parquet; returns what was written."""
    model, version = buffer.parse_stream_key(key)
    lock = buffer.lock(f"flush:{key}", FLUSH_LOCK_SECONDS)
    if not lock.acquire(blocking=False):
        return {"model": model, "version": version, "rows": 0, "files": [], "skipped": "another flush runs"}
    try:
        plan = buffer.plan(key)
        if plan is None:
            head = buffer.head(key, ctx.settings.capture_flush_batch)
            if not head:
                return {"model": model, "version": version, "rows": 0, "files": []}
            plan = (head[0][0], head[-1][0])
            buffer.set_plan(key, *plan)
        entries = buffer.read(key, *plan)
        written: list[str] = []
        rows = 0
        if entries:
            frame = entries_frame(entries)
            base = folder(ctx.settings.drift_bucket, model, version)
            for day, part in frame.groupby(frame["_ts"].dt.strftime("%Y-%m-%d"), sort=True):
                name = f"{part['_entry'].iloc[0]}_{part['_entry'].iloc[-1]}.parquet"
                uri = base.child(f"date={day}").child(name)
                write_frame(ctx.storage, uri, part.reset_index(drop=True))
                written.append(str(uri))
            rows = len(frame)
        buffer.finish(key, [entry_id for entry_id, _ in entries])
        if rows:
            buffer.add_unchecked(key, rows)
        return {"model": model, "version": version, "rows": rows, "files": written}
    finally:
        try:
            lock.release()
        except Exception:  # the lock may have expired; the plan keeps the flush safe anyway
            log.warning("flush lock of %s expired before release", key)
