"""Datasets through the API: checked, streamed uploads into the datasets bucket, and listing."""

from __future__ import annotations

import hashlib
import io
import json
from typing import IO, Any

import yaml

from mlaas.adapters.storage import ObjectInfo
from mlaas.auth import READER, Caller
from mlaas.context import Context
from mlaas.datasets.frames import checked_uri
from mlaas.errors import Conflict, Forbidden, InvalidInput, NotFound, UnsupportedMediaType
from mlaas.uris import S3Uri, check_prefix, parse_uri

SNIFF_BYTES = 64 * 1024
CONFIG_LIMIT = 1024 * 1024
CONTENT_TYPES = {
    ".csv": {"text/csv", "application/csv", "text/plain"},
    ".parquet": {"application/vnd.apache.parquet", "application/x-parquet", "application/octet-stream"},
    ".json": {"application/json"},
    ".yaml": {"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain"},
}
REFERENCING_TAGS = ("dataset", "test_dataset", "data_config", "eval.dataset")
OWNER_META = "mlaas-owner"  # object metadata: the name of the key that uploaded it (absent: not uploaded by a key)


class _Hashing(io.RawIOBase):
    """Reads through a stream (after a sniffed head), hashing and counting what passes."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self.head, self.rest = head, rest
        self.digest = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self.head:
            chunk, self.head = (self.head, b"") if size < 0 or size >= len(self.head) else (
                self.head[:size], self.head[size:])
        else:
            chunk = self.rest.read(size if size and size > 0 else 1024 * 1024)
        self.digest.update(chunk)
        self.size += len(chunk)
        return chunk


def upload(key: str, stream: IO[bytes], *, ctx: Context, caller: Caller, content_type: str, length: int | None,
           overwrite: bool) -> dict[str, Any]:
    """Store a CSV, Parquet, YAML or JSON body at ``s3://<datasets bucket>/<key>``, owned by the caller.

    An object another key uploaded is never replaced by this one (403): the bucket's names are shared, so
    the name is taken either way, but its content stays its owner's.
    """
    uri = parse_uri(f"{ctx.settings.storage_scheme}://{ctx.settings.datasets_bucket}/{key}",
                    allowed_buckets=ctx.settings.buckets, field="key", schemes=(ctx.settings.storage_scheme,))
    suffix = _suffix(uri)
    kind = content_type.split(";")[0].strip().lower()
    if kind not in CONTENT_TYPES[suffix]:
        raise UnsupportedMediaType(f"Content-Type {kind or '(none)'} does not match {suffix}; "
                                   f"use {sorted(CONTENT_TYPES[suffix])[0]}")
    existing = _stat(ctx, uri)
    if existing is not None:
        if not caller.owns(existing.metadata.get(OWNER_META)):
            raise Forbidden(f"key: {uri} belongs to another key; only it (or an admin key) may replace it")
        if str(uri) in referenced_uris(ctx=ctx):
            raise Conflict(f"{uri} is used by a model version; it is never overwritten")
        if not overwrite:
            raise Conflict(f"{uri} exists; ask to overwrite it (overwrite=true) to replace it")
    head = stream.read(CONFIG_LIMIT + 1 if suffix in (".json", ".yaml") else SNIFF_BYTES)
    _sniff(head, suffix, uri)
    body = _Hashing(head, stream)
    # a new name is created conditionally: of two uploads racing for it, the second gets 409
    ctx.storage.put_stream(uri, body, length=length if length is not None else -1,  # type: ignore[arg-type]
                           content_type=kind, metadata={OWNER_META: caller.name}, overwrite=existing is not None)
    return {"uri": str(uri), "size": body.size, "sha256": body.digest.hexdigest()}


def readable_uri(text: str, *, ctx: Context, field: str) -> S3Uri:
    """A URI a request names for a job to read: in an allowed bucket, and not an upload of another key.

    Objects put there without the API (no owner recorded) are readable by every key with the route's scope;
    an admin key reads everything. Checked at submission, where the request's key is known (``READER``).
    """
    uri = checked_uri(text, settings=ctx.settings, field=field)
    caller = READER.get()
    if caller is None or caller.admin:
        return uri
    info = _stat(ctx, uri)
    owner = info.metadata.get(OWNER_META) if info is not None else None
    if owner is not None and not caller.owns(owner):
        raise Forbidden(f"{field}: {uri} belongs to another key; only it (or an admin key) may read it")
    return uri


def _stat(ctx: Context, uri: S3Uri) -> ObjectInfo | None:
    try:
        return ctx.storage.stat(uri)
    except NotFound:
        return None


def listing(prefix: str, limit: int, *, ctx: Context, caller: Caller) -> list[dict[str, Any]]:
    """Objects in the datasets bucket under a prefix: the caller's own (an admin key: all of them).

    A listing does not carry user metadata, so a key that is not admin costs one HEAD per object listed.
    """
    check_prefix(prefix)
    out = []
    for obj in ctx.storage.list(ctx.settings.datasets_bucket, prefix):
        if not caller.admin:
            stat = _stat(ctx, obj.uri)
            if stat is None or not caller.owns(stat.metadata.get(OWNER_META)):
                continue
        out.append({"uri": str(obj.uri), "size": obj.size,
                    "last_modified": obj.last_modified.isoformat() if obj.last_modified else None})
        if len(out) >= limit:
            break
    return out


def _suffix(uri: S3Uri) -> str:
    lower = uri.key.lower()
    for suffix, canonical in ((".csv", ".csv"), (".parquet", ".parquet"), (".pq", ".parquet"), (".json", ".json"),
                              (".yaml", ".yaml"), (".yml", ".yaml")):
        if lower.endswith(suffix):
            return canonical
    raise InvalidInput(f"key: {uri.key} must end with .csv, .parquet, .json, .yaml or .yml")


def _sniff(head: bytes, suffix: str, uri: S3Uri) -> None:
    if not head:
        raise InvalidInput("the request body is empty")
    if suffix == ".parquet" and not head.startswith(b"PAR1"):
        raise InvalidInput(f"{uri}: the body is not a Parquet file")
    if suffix == ".csv":
        try:
            first = head.decode("utf-8", errors="strict" if len(head) < SNIFF_BYTES else "ignore").splitlines()[0]
        except (UnicodeDecodeError, IndexError):
            raise InvalidInput(f"{uri}: the body is not UTF-8 CSV text") from None
        if not first.strip() or b"\x00" in head:
            raise InvalidInput(f"{uri}: the body is not CSV with a header line")
    if suffix in (".json", ".yaml"):
        if len(head) > CONFIG_LIMIT:
            raise InvalidInput(f"{uri}: config files are limited to {CONFIG_LIMIT} bytes")
        try:
            loaded = json.loads(head) if suffix == ".json" else yaml.safe_load(head)
        except RecursionError:
            raise InvalidInput(f"{uri}: the body is nested too deeply") from None
        except (ValueError, yaml.YAMLError):
            raise InvalidInput(f"{uri}: the body is not valid {suffix[1:].upper()}") from None
        if not isinstance(loaded, dict):
            raise InvalidInput(f"{uri}: expected a mapping at the top level")


def referenced_uris(*, ctx: Context) -> set[str]:
    """Dataset URIs that some model version records (they are never overwritten)."""
    out: set[str] = set()
    for model in ctx.registry.list_models():
        for version in ctx.registry.list_versions(model["name"]):
            out.update(v for k, v in version.tags.items() if k in REFERENCING_TAGS)
    return out
