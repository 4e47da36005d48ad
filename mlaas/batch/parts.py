"""The parts a batch job writes, named by chunk index: a rerun of the job finds, skips or overwrites the same ones."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from mlaas.adapters.storage import BlobStore
from mlaas.errors import Conflict, InvalidInput
from mlaas.settings import Settings
from mlaas.uris import S3Uri, parse_uri

PART = "part-{:06d}.parquet"
ERRORS = "errors-{:06d}.parquet"
_NAME = re.compile(r"^(part|errors)-(\d{6,})\.parquet$")
PARQUET = "application/vnd.apache.parquet"
DICTIONARY_COLUMNS = ("prediction",)


@dataclass(frozen=True)
class Written:
    """A chunk whose predictions part is stored: the chunk is done."""

    index: int
    rows: int  # predictions in the part
    errors: int  # rows of the chunk in its errors part


def output_prefix(output: str | None, job_id: str, *, settings: Settings) -> S3Uri:
    """Where a job's parts go: ``output`` (a prefix in an allowed bucket) or the drift bucket's predictions/<job>."""
    if output is None:
        return settings.drift_uri(f"predictions/{job_id}")
    return parse_uri(output.rstrip("/"), allowed_buckets=settings.buckets, field="output",
                     schemes=settings.storage_schemes)


def written(store: BlobStore, prefix: S3Uri, job_id: str) -> dict[int, Written]:
    """The chunks already done under ``prefix`` by this job (an earlier attempt); Conflict for anything else there."""
    done: dict[int, Written] = {}
    for info in store.list(prefix.bucket, prefix.key + "/"):
        name = info.uri.key[len(prefix.key) + 1:]
        match = _NAME.match(name)
        if match is None:
            raise Conflict(f"output {prefix}/ holds {name!r}, which no batch job wrote: choose an empty prefix")
        if match.group(1) == "errors":
            continue  # an errors part counts with its chunk's predictions part, written after it
        meta = store.stat(info.uri).metadata
        if meta.get("job") != job_id:
            raise Conflict(f"output {prefix}/ holds parts of another job ({meta.get('job') or 'unknown'}): "
                           "choose an empty prefix")
        index = int(match.group(2))
        done[index] = Written(index, int(meta.get("rows", 0)), int(meta.get("errors", 0)))
    return done


def put_table(store: BlobStore, uri: S3Uri, table: pa.Table, *, metadata: dict[str, str]) -> None:
    """Write a table as one Parquet object carrying ``metadata`` (what resuming reads back)."""
    buffer = io.BytesIO()
    # Dictionary-encode only the labels (few distinct values); ids and probabilities are mostly distinct, where
    # building a dictionary costs time and saves nothing.
    pq.write_table(table, buffer, use_dictionary=[c for c in DICTIONARY_COLUMNS if c in table.column_names])
    size = buffer.tell()
    buffer.seek(0)
    try:
        store.put_stream(uri, buffer, length=size, content_type=PARQUET, metadata=metadata)
    except InvalidInput as exc:
        raise InvalidInput(f"output: {exc.message}") from None
