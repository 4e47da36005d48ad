"""Inference capture: buffer answered requests cheaply, flush them idempotently to Parquet in storage.

Files land at ``s3://<drift bucket>/capture/<model>/<version>/date=YYYY-MM-DD/<first>_<last>.parquet``,
named after the first and last buffered entries they hold. A flusher first claims a range of entries
(atomically: flushers running at once never share an entry); a flusher that crashed leaves its claim to
expire, and the range is then redone as it was, so it rewrites the same files and never duplicates rows.
"""

from __future__ import annotations

import binascii
import contextlib
import itertools
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


def record(buffer: CaptureBuffer, model: str, version: int, result: Prediction, request_id: str) -> bool:
    """Buffer one answered request; never raises, counts drops.

    The entry keeps only what a drift check reads: the columns the model was given (as scored, numbers
    packed column by column), the ids, and the outputs. Columns the request sent that the model ignored
    are not kept, so they cost neither Redis memory nor storage.
    """
    n = len(result.ids)
    entry = "".join(_entry_parts(result, request_id, n))
    refused = buffer.append(model, version, entry, n)
    if refused:
        telemetry.capture_dropped(model, refused, n)
    return refused is None


# Entries hold no cycles (fresh lists of plain values), so the encoder skips the check; values JSON cannot
# encode are written as their text.
_JSON = json.JSONEncoder(default=str, check_circular=False).encode


def _entry_parts(result: Prediction, request_id: str, n: int) -> list[str]:
    """An entry's JSON text in pieces: exactly ``json.dumps`` of {"ts", "rid", "columns", "cols", "ids", "pred",
    "proba"} with ``default=str``, put together by hand so that the packed numbers (base64, which needs no
    escaping) are not scanned by the encoder: most of an entry's text, on the request path."""
    parts = [_JSON({"ts": time.time(), "rid": request_id, "columns": feature_names(result.features)})[:-1],
             ', "cols": [', ", ".join([_pack(values) for values in _arrays(result.features)]),
             '], "ids": ', f'{{"n": {n}}}' if result.ids == list(range(n)) else _JSON(result.ids),
             ', "pred": ', _JSON(result.labels)]
    if result.proba is not None and result.probabilities:
        parts += [', "proba": {"classes": ', _JSON(list(result.probabilities[0])), ', "f8": "',
                  _b64(result.proba, np.float64), '"}']
    parts.append("}")
    return parts


def _arrays(features: pd.DataFrame | Columns) -> list[np.ndarray]:
    if isinstance(features, Columns):
        return [features.arrays[name] for name in features.names]
    return [features[column].to_numpy() for column in features.columns]


def _pack(values: np.ndarray) -> str:
    """One column of model inputs as JSON: numbers as packed float64/int64, anything else as JSON values (null:
    missing)."""
    kind = values.dtype.kind
    if kind == "f":
        return '{"f8": "' + _b64(values, np.float64) + '"}'
    if kind in "iub":
        return '{"i8": "' + _b64(values, np.int64) + '"}'
    if kind in "mM":
        return '{"v": ' + _JSON(values.astype(str).tolist()) + "}"
    listed = values.tolist()
    try:
        listed = [None if v != v else v for v in listed]  # NaN (missing) is the value unequal to itself
    except TypeError:  # pd.NA has no truth value
        listed = [None if pd.api.types.is_scalar(v) and pd.isna(v) else v for v in listed]
    return '{"v": ' + _JSON(listed) + "}"


def _b64(values: Any, dtype: Any) -> str:
    return binascii.b2a_base64(np.ascontiguousarray(values, dtype=dtype).data, newline=False).decode("ascii")


def folder(drift_bucket: str, model: str, version: int, scheme: str = "s3") -> S3Uri:
    """Where a model version's captured rows are stored."""
    return S3Uri(drift_bucket, f"capture/{quote(model, safe='')}/{version}", scheme)


Member = tuple[int, str, dict[str, Any]]  # an entry's place in the batch, its id, the entry


def _shape(entry: dict[str, Any]) -> tuple[Any, ...]:
    """What entries read together share: their columns, each column's packing, and the classes."""
    proba = entry.get("proba")
    classes = tuple(proba["classes"]) if isinstance(proba, dict) else ("rows",) if proba else None
    return tuple(entry["columns"]), tuple(tuple(column) for column in entry["cols"]), classes


def _packed(texts: list[str], counts: np.ndarray, dtype: Any, width: int = 1) -> np.ndarray:
    """Packed numbers of many entries decoded at once (raises ValueError when an entry holds the wrong count)."""
    raw = [binascii.a2b_base64(text) for text in texts]
    if not np.array_equal(np.fromiter(map(len, raw), np.int64, len(raw)), counts * (8 * width)):
        raise ValueError("a packed column holds the wrong number of values")
    return np.frombuffer(b"".join(raw), dtype)


def _listed(lists: list[Any], counts: np.ndarray) -> list[Any]:
    """Values of many entries chained (raises ValueError when an entry holds the wrong count)."""
    if not all(isinstance(v, list) for v in lists) or not np.array_equal(
            np.fromiter(map(len, lists), np.int64, len(lists)), counts):
        raise ValueError("a column holds the wrong number of values")
    return list(itertools.chain.from_iterable(lists))


def _group_frame(shape: tuple[Any, ...], members: list[Member]) -> tuple[np.ndarray, pd.DataFrame]:
    """The rows of entries of one shape, each column built once for all of them, with each row's entry position."""
    names, packing, classes = shape
    entries = [entry for _, _, entry in members]
    ids = [entry["ids"] for entry in entries]
    counts = np.fromiter((i["n"] if isinstance(i, dict) else len(i) for i in ids), np.int64, len(ids))
    if len(names) != len(packing) or (counts < 0).any():
        raise ValueError("columns and values do not match")
    data: dict[str, Any] = {
        "_entry": np.repeat(np.array([entry_id for _, entry_id, _ in members], dtype=object), counts),
        "_ts": pd.to_datetime(np.repeat(np.array([float(e["ts"]) for e in entries]), counts), unit="s", utc=True),
        "_request_id": np.repeat(np.array([str(e.get("rid") or "") for e in entries], dtype=object), counts),
        "_id": [str(i) for one in ids for i in (range(one["n"]) if isinstance(one, dict) else one)],
    }
    for i, (name, (kind,)) in enumerate(zip(names, packing, strict=True)):
        values = [e["cols"][i][kind] for e in entries]
        data[name] = (_listed(values, counts) if kind == "v"
                      else _packed(values, counts, np.int64 if kind == "i8" else np.float64))
    data["_prediction"] = [str(p) for p in _listed([e["pred"] for e in entries], counts)]
    if classes == ("rows",):  # from earlier releases: probabilities as one mapping per row
        rows = _listed([e["proba"] for e in entries], counts)
        for cls in sorted(rows[0]):
            data[f"_proba_{cls}"] = [float(p[cls]) for p in rows]
    elif classes:  # packed: one float64 matrix per entry, a column per class
        matrix = _packed([e["proba"]["f8"] for e in entries], counts, np.float64, len(classes))
        for j, cls in sorted(enumerate(classes), key=lambda item: item[1]):
            data[f"_proba_{cls}"] = matrix.reshape(-1, len(classes))[:, j]
    return np.repeat([position for position, _, _ in members], counts), pd.DataFrame(data)


UNREADABLE = (KeyError, TypeError, ValueError, AttributeError, IndexError, binascii.Error)


def _readable(shape: tuple[Any, ...], members: list[Member]) -> list[tuple[np.ndarray, pd.DataFrame]]:
    """A group's rows with each row's entry position; an entry that spoils the group is found (by halving the
    group) and left out."""
    try:
        return [_group_frame(shape, members)]
    except UNREADABLE as exc:
        if len(members) == 1:
            log.warning("captured entry %s is unreadable (%s: %s); left out", members[0][1], type(exc).__name__, exc)
            return []
        middle = len(members) // 2  # halve until the unreadable entries are alone
        return _readable(shape, members[:middle]) + _readable(shape, members[middle:])


def entries_frame(entries: list[tuple[str, Any]]) -> pd.DataFrame:
    """One row per captured prediction: features plus ``_entry``, ``_ts``, ``_request_id``, ``_id``, outputs.

    Entries of the same shape (columns, their packing, classes) are read together, each column built once
    for all of them, so a batch of one-row requests costs a few column builds, not a frame per request. An
    entry that cannot be read (not written by ``record``) is logged and left out, so one bad entry never
    blocks a stream; an empty frame comes back when none can be read. Rows keep the order of their entries.
    """
    groups: dict[tuple[Any, ...], list[Member]] = {}
    parts: list[tuple[np.ndarray, pd.DataFrame]] = []  # (each row's entry position, rows)
    for position, (entry_id, entry) in enumerate(entries):
        try:
            if isinstance(entry, dict) and "cols" in entry:
                groups.setdefault(_shape(entry), []).append((position, entry_id, entry))
            else:  # entries of earlier releases, read one by one
                frame = _entry_frame(entry_id, entry)
                parts.append((np.full(len(frame), position), frame))
        except UNREADABLE as exc:
            log.warning("captured entry %s is unreadable (%s: %s); left out", entry_id, type(exc).__name__, exc)
    for shape, members in groups.items():
        parts += _readable(shape, members)
    if not parts:
        return pd.DataFrame()
    combined = parts[0][1]
    if len(parts) > 1:
        combined = pd.concat([frame for _, frame in parts], ignore_index=True)
        order = np.argsort(np.concatenate([positions for positions, _ in parts]), kind="stable")
        combined = combined.iloc[order].reset_index(drop=True)
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
    else:  # from earlier releases: values as JSON rows
        frame = pd.DataFrame(entry["data"], columns=entry["columns"])
        ids = entry["ids"]
        ids = [str(i) for i in (range(ids["n"]) if isinstance(ids, dict) else ids)]
    frame.insert(0, "_id", ids)
    frame.insert(0, "_request_id", entry.get("rid") or "")
    frame.insert(0, "_ts", pd.to_datetime(entry["ts"], unit="s", utc=True))
    frame.insert(0, "_entry", entry_id)
    frame["_prediction"] = [str(p) for p in entry["pred"]]
    proba = entry.get("proba")
    if proba:
        for cls in sorted(proba[0]):
            frame[f"_proba_{cls}"] = [float(p[cls]) for p in proba]
    return frame


def flush_stream(ctx: Any, buffer: CaptureBuffer, key: str) -> dict[str, Any]:
    """Claim one batch of a stream's entries, write it to Parquet, then remove it; returns what was written.

    Flushers running at once take distinct batches (the claim is atomic), so they scale with workers; a
    flusher that died holding a batch leaves it to be taken over with the same range, into the same files.
    """
    model, version = buffer.parse_stream_key(key)
    claim = buffer.claim(key)
    if claim is None:
        return {"model": model, "version": version, "rows": 0, "files": [], "entries": 0}
    try:
        written = write_entries(ctx, model, version, claim.entries)
    except BaseException:
        with contextlib.suppress(Exception):  # Redis away too: the claim's lease runs out instead
            buffer.release(key, claim)  # storage away: the next flush retries this batch, not in 300 s
        raise
    rows = sum(rows for _, rows in written)
    if buffer.finish(key, claim) and rows:  # a batch finished twice (taken over) counts its rows once
        buffer.add_unchecked(key, rows)
    return {"model": model, "version": version, "rows": rows, "files": [uri for uri, _ in written],
            "entries": len(claim.entries)}


def write_entries(ctx: Any, model: str, version: int, entries: list[tuple[str, Any]]) -> list[tuple[str, int]]:
    """Write captured entries to Parquet, one file per day named after its first and last entries (so the
    same entries always land in the same files); returns each file with its rows."""
    frame = entries_frame(entries) if entries else pd.DataFrame()
    if frame.empty:
        return []
    written = []
    base = folder(ctx.settings.drift_bucket, model, version, ctx.settings.storage_scheme)
    for day, part in frame.groupby(frame["_ts"].dt.normalize(), sort=True):
        name = f"{part['_entry'].iloc[0]}_{part['_entry'].iloc[-1]}.parquet"
        uri = base.child(f"date={day:%Y-%m-%d}").child(name)
        write_frame(ctx.storage, uri, part.reset_index(drop=True))
        written.append((str(uri), len(part)))
    return written
