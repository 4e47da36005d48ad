"""Data frames and config files in blob storage, by URI: CSV, Parquet, YAML, JSON."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import yaml

from mlaas.adapters.storage import BlobStore
from mlaas.errors import InvalidInput, NotFound, TooLarge
from mlaas.settings import Settings
from mlaas.uris import S3Uri, parse_uri

FRAME_SUFFIXES = (".csv", ".parquet", ".pq")
CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class LoadedFrame:
    """A data frame with the URI and content hash it came from."""

    uri: S3Uri
    frame: pd.DataFrame
    sha256: str
    size_bytes: int


def content_hash(data: bytes) -> str:
    """SHA-256 of a byte string, hex."""
    return hashlib.sha256(data).hexdigest()


def read_frame(store: BlobStore, uri: S3Uri, *, max_bytes: int | None = None, max_rows: int | None = None,
               field: str = "dataset") -> LoadedFrame:
    """Read a CSV or Parquet object into a data frame, with clear errors for missing, unreadable or too large data.

    ``max_bytes`` bounds the object and, for Parquet, its uncompressed size; ``max_rows`` its rows. Parquet
    files are measured from their footer before any column is decoded, CSV is read one row past the limit.
    """
    suffix = _suffix(uri, FRAME_SUFFIXES, field)
    try:
        data = store.get_bytes(uri, max_bytes=max_bytes)
    except NotFound:
        raise InvalidInput(f"{field}: {uri} does not exist") from None
    except TooLarge:
        raise TooLarge(f"{field}: {uri} is larger than the limit of {max_bytes} bytes") from None
    try:
        if suffix == ".csv":
            frame = pd.read_csv(io.BytesIO(data), nrows=None if max_rows is None else max_rows + 1)
        else:
            _check_parquet_footer(data, uri, max_bytes=max_bytes, max_rows=max_rows, field=field)
            frame = pd.read_parquet(io.BytesIO(data))
    except TooLarge:
        raise
    except Exception as exc:  # pandas/pyarrow raise many types for malformed files
        raise InvalidInput(f"{field}: {uri} is not a readable {suffix[1:]} file ({type(exc).__name__})") from None
    if max_rows is not None and len(frame) > max_rows:
        raise TooLarge(f"{field}: {uri} has more than the limit of {max_rows} rows")
    if frame.empty:
        raise InvalidInput(f"{field}: {uri} holds no rows")
    return LoadedFrame(uri, frame, content_hash(data), len(data))


def checked_uri(text: str | S3Uri, *, settings: Settings, field: str) -> S3Uri:
    """A URI the service may read, wherever it came from (a request, a job, a model-version tag)."""
    return parse_uri(str(text), allowed_buckets=settings.buckets, field=field,
                     schemes=settings.storage_schemes)


def read_dataset(store: BlobStore, text: str | S3Uri, *, settings: Settings, field: str = "dataset") -> LoadedFrame:
    """A data set a job reads: in an allowed bucket, within MLAAS_MAX_DATASET_BYTES and MLAAS_MAX_DATASET_ROWS."""
    return read_frame(store, checked_uri(text, settings=settings, field=field), max_bytes=settings.max_dataset_bytes,
                      max_rows=settings.max_dataset_rows, field=field)


_WIDTHS = {"BOOLEAN": 1, "INT32": 4, "INT64": 8, "INT96": 12, "FLOAT": 4, "DOUBLE": 8}


def _check_parquet_footer(data: bytes, uri: S3Uri, *, max_bytes: int | None, max_rows: int | None,
                          field: str) -> None:
    """Refuse a Parquet file whose footer declares more rows, or more bytes once decoded, than allowed.

    The decoded size counts each fixed-width column at its width times the rows (dictionary and run-length
    encoding make a file far smaller than its frame) and each text column at its uncompressed pages plus a
    reference per row.
    """
    meta = pq.ParquetFile(io.BytesIO(data)).metadata
    rows = meta.num_rows
    if max_rows is not None and rows > max_rows:
        raise TooLarge(f"{field}: {uri} has {rows} rows, more than the limit of {max_rows}")
    if max_bytes is None:
        return
    decoded = 0
    schema = meta.schema
    for i in range(meta.num_columns):
        column = schema.column(i)
        width = _WIDTHS.get(column.physical_type) or (column.length if column.physical_type ==
                                                      "FIXED_LEN_BYTE_ARRAY" else 0)
        if width:
            decoded += width * rows
        else:
            decoded += 8 * rows + sum(meta.row_group(g).column(i).total_uncompressed_size
                                      for g in range(meta.num_row_groups))
    if decoded > max_bytes:
        raise TooLarge(f"{field}: {uri} holds about {decoded} bytes decoded, more than the limit of {max_bytes}")


def frame_to_parquet(frame: pd.DataFrame) -> bytes:
    """Serialise a data frame to Parquet bytes (index dropped)."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def write_frame(store: BlobStore, uri: S3Uri, frame: pd.DataFrame) -> str:
    """Write a data frame as Parquet; returns the content hash."""
    data = frame_to_parquet(frame)
    store.put_bytes(uri, data, content_type="application/vnd.apache.parquet")
    return content_hash(data)


def read_config(store: BlobStore, uri: S3Uri, *, field: str = "data_config") -> dict[str, Any]:
    """Read a YAML or JSON mapping."""
    suffix = _suffix(uri, CONFIG_SUFFIXES, field)
    try:
        data = store.get_bytes(uri, max_bytes=1024 * 1024)
    except NotFound:
        raise InvalidInput(f"{field}: {uri} does not exist") from None
    return parse_config(data, suffix=suffix, field=f"{field} {uri}")


def parse_config(data: bytes, *, suffix: str, field: str) -> dict[str, Any]:
    """Parse YAML or JSON bytes into a mapping."""
    try:
        loaded = json.loads(data) if suffix == ".json" else yaml.safe_load(data)
    except RecursionError:
        raise InvalidInput(f"{field}: nested too deeply") from None
    except (ValueError, yaml.YAMLError) as exc:
        raise InvalidInput(f"{field}: not valid {suffix[1:].upper()} ({type(exc).__name__})") from None
    if not isinstance(loaded, dict):
        raise InvalidInput(f"{field}: expected a mapping at the top level")
    return loaded


def write_config(store: BlobStore, uri: S3Uri, config: dict[str, Any]) -> None:
    """Write a mapping as YAML or JSON according to the key's suffix."""
    if uri.key.endswith(".json"):
        store.put_bytes(uri, json.dumps(config, indent=2).encode(), content_type="application/json")
    else:
        store.put_bytes(uri, yaml.safe_dump(config, sort_keys=True).encode(), content_type="application/yaml")


def _suffix(uri: S3Uri, allowed: tuple[str, ...], field: str) -> str:
    lower = uri.key.lower()
    for suffix in allowed:
        if lower.endswith(suffix):
            return ".parquet" if suffix == ".pq" else (".yaml" if suffix == ".yml" else suffix)
    raise InvalidInput(f"{field}: {uri} must end with one of {', '.join(allowed)}")
