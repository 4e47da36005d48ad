"""Parsing and checking of ``s3://bucket/key`` URIs before any I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mlaas.errors import InvalidInput

MAX_KEY_BYTES = 1024
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class S3Uri:
    """A bucket and a key in blob storage."""

    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def child(self, name: str) -> S3Uri:
        """The URI of ``name`` below this one, taken as a folder."""
        return S3Uri(self.bucket, f"{self.key.rstrip('/')}/{name}" if self.key else name)


def parse_uri(uri: str, *, allowed_buckets: tuple[str, ...] | None = None, field: str = "uri") -> S3Uri:
    """Parse ``s3://bucket/key``; reject other schemes, ``..``, odd characters and foreign buckets."""
    if not isinstance(uri, str) or not uri:
        raise InvalidInput(f"{field}: expected an s3://bucket/key URI")
    if not uri.startswith("s3://"):
        scheme = uri.split(":", 1)[0] if ":" in uri else "a bare path"
        raise InvalidInput(f"{field}: only s3:// URIs are accepted, got {scheme!r}")
    rest = uri[len("s3://"):]
    bucket, _, key = rest.partition("/")
    if not _BUCKET_RE.match(bucket):
        raise InvalidInput(f"{field}: {bucket!r} is not a valid bucket name")
    if allowed_buckets is not None and bucket not in allowed_buckets:
        raise InvalidInput(f"{field}: bucket {bucket!r} is not one mlaas may use ({', '.join(allowed_buckets)})")
    _check_key(key, field)
    return S3Uri(bucket, key)


def _check_key(key: str, field: str) -> None:
    if not key or key.endswith("/"):
        raise InvalidInput(f"{field}: the URI names no object")
    if len(key.encode()) > MAX_KEY_BYTES:
        raise InvalidInput(f"{field}: key longer than {MAX_KEY_BYTES} bytes")
    if any(ord(c) < 32 or ord(c) >= 127 for c in key) or "\\" in key:
        raise InvalidInput(f"{field}: key holds control characters, backslashes or characters outside printable "
                           "ASCII")
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise InvalidInput(f"{field}: key must not contain empty, '.' or '..' segments")


def check_prefix(prefix: str, *, field: str = "prefix") -> str:
    """Validate a listing prefix (may be empty or end with '/')."""
    if prefix:
        _check_key(prefix.rstrip("/") or "x", field)
    return prefix
