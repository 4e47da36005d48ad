"""Inference capture: buffer answered requests cheaply, flush them idempotently to Parquet in storage.

Files land at ``s3://<drift bucket>/capture/<model>/<version>/date=YYYY-MM-DD/<first>_<last>.parquet``,
named after the first and last buffered entries they hold. Before writing, the flush records that range
as its plan; a flush that crashed is redone from the plan, so it rewrites the same files and never
duplicates rows.
"""

from __future__ import annotations

import base64
import json
import logging
import sys
import time
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd

from mlaas.adapters import telemetry
from mlaas.adapters.capture_buffer import CaptureBuffer
from mlaas.datasets.frames import write_frame
from mlaas.inference.payload import parse_rows
from mlaas.inference.predict import Columns, Prediction, feature_names
from mlaas.uris import S3Uri

log = logging.getLogger(__name__)
FLUSH_LOCK_SECONDS = 300


def record(buffer: CaptureBuffer, model: str, version: int, result: Prediction, request_id: str) -> bool:
    """Buffer one answered request; never raises, counts drops.

    The entry keeps only what a drift check reads: the columns the model was given (as scored, numbers
    packed column by column), the ids, and the outputs. Columns the request sent that the model ignored
    are not kept, so they cost neither Redis memory nor storage.
    """
    n = len(result.ids)
    entry = json.dumps({
        "ts": time.time(), "rid": request_id, "columns": feature_names(result.features),
        "cols": [_pack(values) for values in _arrays(result.features)],
        "ids": {"n": n} if result.ids == list(range(n)) else result.ids, "pred": result.labels,
        **({"proba": {"classes": list(result.probabilities[0]), "f8": _b64(result.proba, np.float64)}}
           if result.proba is not None and result.probabilities else {}),
    }, default=str)
    refused = buffer.append(model, version, entry, n)
    if refused:
        telemetry.capture_dropped(model, refused, len(result.ids))
    return refused is None


def _arrays(features: pd.DataFrame | Columns) -> list[np.ndarray]:
    if isinstance(features, Columns):
        return [features.arrays[name] for name in features.names]
    return [features[column].to_numpy() for column in features.columns]


def _pack(values: np.ndarray) -> dict[str, Any]:
    """One column of model inputs: numbers as packed float64/int64, anything else as JSON values (None: missing)."""
    kind = values.dtype.kind
    if kind == "f":
        return {"f8": _b64(values, np.float64)}
    if kind in "iub":
        return {"i8": _b64(values, np.int64)}
    if kind in "mM":
        return {"v": values.astype(str).tolist()}
    listed = values.tolist()
    try:
        return {"v": [None if v != v else v for v in listed]}  # NaN (missing) is the value unequal to itself
    except TypeError:  # pd.NA has no truth value
        return {"v": [None if pd.api.types.is_scalar(v) and pd.isna(v) else v for v in listed]}


def _b64(values: Any, dtype: Any) -> str:
    return base64.b64encode(np.ascontiguousarray(values, dtype=dtype).tobytes()).decode("ascii")


def _unpack(column: dict[str, Any]) -> Any:
    if "i8" in column:
        return np.frombuffer(base64.b64decode(column["i8"]), np.int64)
    if "f8" in column:
        return np.frombuffer(base64.b64decode(column["f8"]), np.float64)
    return column["v"]


def folder(drift_bucket: str, model: str, version: int, scheme: str = "s3") -> S3Uri:
    """Where a model version's captured rows are stored."""
    return S3Uri(drift_bucket, f"capture/{quote(model, safe='')}/{version}", scheme)


def entries_frame(entries: list[tuple[str, dict[str, Any]]]) -> pd.DataFrame:
    """One row per captured prediction: features plus ``_entry``, ``_ts``, ``_request_id``, ``_id``, outputs.

    An entry that cannot be read (not written by ``record``) is logged and left out, so one bad entry
    never blocks a stream; an empty frame comes back when none can be read.
    """
    parts = []
    for entry_id, entry in entries:
        try:
            parts.append(_entry_frame(entry_id, entry))
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("captured entry %s is unreadable (%s: %s); left out", entry_id, type(exc).__name__, exc)
    if not parts:
        return pd.DataFrame()
    combined = pd.concat(parts, ignore_index=True)
    for column in combined.columns:
        if combined[column].dtype == object:
            try:
                combined[column] = pd.to_numeric(combined[column])
            except (ValueError, TypeError):
                combined[column] = combined[column].map(lambda v: None if v is None else str(v))
    return combined


def _entry_frame(entry_id: str, entry: dict[str, Any]) -> pd.DataFrame:
    """One entry's rows (raises KeyError/TypeError/ValueError when it is not a captured request)."""
    if not isinstance(entry, dict):
        raise TypeError(f"a captured entry is a JSON object, not {type(entry).__name__}")
    if "body" in entry:  # an earlier release kept the request as sent: its rows, read by the parser that answered it
        rows = parse_rows(entry["body"], max_rows=sys.maxsize)
        frame = rows.frame[entry["columns"]].reset_index(drop=True)  # a missing column: KeyError, unreadable
        ids: Any = [str(i) for i in rows.ids]
    else:  # packed columns (and, from earlier releases, values as JSON rows)
        if "cols" in entry:
            frame = pd.DataFrame({c: _unpack(v) for c, v in zip(entry["columns"], entry["cols"], strict=True)})
        else:
            frame = pd.DataFrame(entry["data"], columns=entry["columns"])
        ids = entry["ids"]
        ids = [str(i) for i in (range(ids["n"]) if isinstance(ids, dict) else ids)]
    frame.insert(0, "_id", ids)
    frame.insert(0, "_request_id", entry.get("rid") or "")
    frame.insert(0, "_ts", pd.to_datetime(entry["ts"], unit="s", utc=True))
    frame.insert(0, "_entry", entry_id)
    frame["_prediction"] = [str(p) for p in entry["pred"]]
    proba = entry.get("proba")
    if isinstance(proba, dict):  # packed: one float64 matrix, a column per class
        matrix = np.frombuffer(base64.b64decode(proba["f8"]), np.float64).reshape(len(frame), -1)
        for i, cls in sorted(enumerate(proba["classes"]), key=lambda item: item[1]):
            frame[f"_proba_{cls}"] = matrix[:, i]
    elif proba:
        for cls in sorted(proba[0]):
            frame[f"_proba_{cls}"] = [float(p[cls]) for p in proba]
    return frame


def flush_stream(ctx: Any, buffer: CaptureBuffer, key: str) -> dict[str, Any]:
    """Write one stream's buffered entries (at most one batch) to Parquet; returns what was written."""
    model, version = buffer.parse_stream_key(key)
    with buffer.lock(f"flush:{key}", FLUSH_LOCK_SECONDS) as acquired:  # an expired lock: the plan keeps it safe
        if not acquired:
            return {"model": model, "version": version, "rows": 0, "files": [], "skipped": "another flush runs"}
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
        frame = entries_frame(entries) if entries else pd.DataFrame()
        if not frame.empty:
            base = folder(ctx.settings.drift_bucket, model, version, ctx.settings.storage_scheme)
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
