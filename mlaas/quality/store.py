"""Where outcomes and their joins live, beside the captured predictions in the drift bucket.

``feedback/<model>/outcomes/date=YYYY-MM-DD/<batch>.parquet``   outcomes as received (``_id``, ``actual``,
                                                                ``_received``, ``_batch``)
``feedback/<model>/joined/<version>/date=YYYY-MM-DD/<join>.parquet``  outcomes joined to the predictions that
                                                                answered them, by version and prediction day
``feedback/<model>/join.json``                                  the last join's counts and files (readers read
                                                                those files: each join writes new ones)
``feedback/<model>/calibration/<version>.json``                 a version's probability calibration (CBPE)
``feedback/<model>/perf_logged.json``                           the perf_ windows logged to MLflow, by start
"""

from __future__ import annotations

import hashlib
import io
import json
from datetime import datetime
from typing import Any
from urllib.parse import quote

import pandas as pd
import pyarrow.parquet as pq

from mlaas.context import Context
from mlaas.datasets.frames import write_frame
from mlaas.errors import NotFound
from mlaas.monitoring import capture
from mlaas.uris import S3Uri

OUTPUT_COLUMNS = ("_entry", "_id", "_ts", "_prediction")


def base(ctx: Context, model: str) -> S3Uri:
    return ctx.settings.drift_uri(f"feedback/{quote(model, safe='')}")


def outcomes_uri(ctx: Context, model: str, batch: str, received: datetime) -> S3Uri:
    return base(ctx, model).child(f"outcomes/date={received:%Y-%m-%d}").child(f"{batch}.parquet")


def joined_uri(ctx: Context, model: str, version: int, day: str, join_id: str) -> S3Uri:
    return base(ctx, model).child(f"joined/{version}/date={day}").child(f"{join_id}.parquet")


def listing(ctx: Context, folder: S3Uri) -> list[tuple[str, str]]:
    """(key, etag) of the Parquet files under a folder, sorted by key."""
    return sorted((o.uri.key, o.etag) for o in ctx.storage.list(folder.bucket, folder.key + "/")
                  if o.uri.key.endswith(".parquet"))


def read_parquet(ctx: Context, key: str) -> pd.DataFrame:
    """A Parquet file of the drift bucket."""
    return pd.read_parquet(io.BytesIO(ctx.storage.get_bytes(ctx.settings.drift_uri(key))))


def outputs(ctx: Context, key: str) -> pd.DataFrame:
    """Only the ids, times and outputs of a captured file (its feature columns are not decoded)."""
    data = io.BytesIO(ctx.storage.get_bytes(ctx.settings.drift_uri(key)))
    names = pq.ParquetFile(data).schema_arrow.names
    data.seek(0)
    return pd.read_parquet(data, columns=[c for c in names if c in OUTPUT_COLUMNS or c.startswith("_proba_")])


def served(ctx: Context, model: str, version: int, since: datetime | None = None,
           until: datetime | None = None) -> pd.DataFrame:
    """The outputs of a version's captured rows between two times (each optional), for estimates."""
    folder = capture.folder(ctx.settings.drift_bucket, model, version, ctx.settings.storage_scheme)
    frames = []
    for key, _ in listing(ctx, folder):
        day = key.split("date=")[-1][:10]
        if (since and day < f"{since:%Y-%m-%d}") or (until and day > f"{until:%Y-%m-%d}"):
            continue
        frames.append(outputs(ctx, key))
    return between(pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(), since, until)


def write(ctx: Context, uri: S3Uri, frame: pd.DataFrame) -> None:
    write_frame(ctx.storage, uri, frame.reset_index(drop=True))


def read_json(ctx: Context, uri: S3Uri) -> dict[str, Any] | None:
    try:
        return json.loads(ctx.storage.get_bytes(uri))
    except NotFound:
        return None


def write_json(ctx: Context, uri: S3Uri, value: dict[str, Any]) -> None:
    ctx.storage.put_bytes(uri, json.dumps(value, allow_nan=False, default=str).encode(),
                          content_type="application/json")


def outcomes(ctx: Context, model: str) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Every outcome received for a model, and the files they came from."""
    files = listing(ctx, base(ctx, model).child("outcomes"))
    frames = [read_parquet(ctx, key) for key, _ in files]
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()), files


def predictions(ctx: Context, model: str) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """What every captured row of every version of a model was answered: ids, times, labels, probabilities."""
    folder = capture.folder(ctx.settings.drift_bucket, model, 0, ctx.settings.storage_scheme)
    root = ctx.settings.drift_uri(folder.key.rsplit("/", 1)[0])
    files = listing(ctx, root)
    frames = []
    for key, _ in files:
        version = key[len(root.key) + 1:].split("/", 1)[0]
        if not version.isdigit():
            continue
        frames.append(outputs(ctx, key).assign(_version=int(version)))
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()), files


def joined(ctx: Context, model: str, version: int, report: dict[str, Any] | None, since: datetime | None = None,
           until: datetime | None = None) -> pd.DataFrame:
    """The joined outcomes of a version whose predictions were made between two times (each optional), as of
    the join ``report`` names: its own files, so figures and counts always come from the same join."""
    frames = []
    prefix = base(ctx, model).child(f"joined/{version}").key + "/"
    for key in (report or {}).get("files", []):
        if not key.startswith(prefix):
            continue
        day = key.split("date=")[-1][:10]
        if (since and day < f"{since:%Y-%m-%d}") or (until and day > f"{until:%Y-%m-%d}"):
            continue
        frame = read_parquet(ctx, key)
        if not frame.empty:  # an emptied partition: its rows moved to another one
            frames.append(frame)
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return between(frame, since, until)


def between(frame: pd.DataFrame, since: datetime | None, until: datetime | None) -> pd.DataFrame:
    if frame.empty:
        return frame
    if since is not None:
        frame = frame[frame["_ts"] >= since]
    if until is not None:
        frame = frame[frame["_ts"] <= until]
    return frame


def fingerprint(*listings: list[tuple[str, str]]) -> str:
    """A digest of file listings: equal when no file was added, removed or rewritten."""
    digest = hashlib.sha256()
    for files in listings:
        for key, etag in files:
            digest.update(f"{key}\0{etag}\n".encode())
        digest.update(b"--\n")
    return digest.hexdigest()
