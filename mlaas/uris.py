"""Parsing and checking of ``s3://bucket/key`` and ``az://container/path`` URIs before any I/O."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from mlaas.errors import InvalidInput

MAX_KEY_BYTES = 1024
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_CONTAINER_RE = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9\-]{1,61}[a-z0-9]$")  # Azure: no dots, no double hyphens
# The schemes mlaas knows: what each calls its top-level namespace, and the names it accepts there.
SCHEMES = {"s3": ("bucket", _BUCKET_RE), "az": ("container", _CONTAINER_RE)}


@dataclass(frozen=True)
class BlobUri:
    """A bucket (Azure: container) and a key in blob storage; the scheme names the backend holding it."""

    bucket: str
    key: str
    scheme: str = "s3"

    def __str__(self) -> str:
        return f"{self.scheme}://{self.bucket}/{self.key}"

    def child(self, name: str) -> BlobUri:
        """The URI of ``name`` below this one, taken as a folder."""
        return dataclasses.replace(self, key=f"{self.key.rstrip('/')}/{name}" if self.key else name)

    def sibling(self, name: str) -> BlobUri:
        """The URI of ``name`` in the same folder as this object."""
        folder = self.key.rsplit("/", 1)[0] if "/" in self.key else ""
        return dataclasses.replace(self, key=f"{folder}/{name}" if folder else name)


S3Uri = BlobUri  # the name before Azure; kept so existing call sites and branches need no rename


def parse_uri(uri: str, *, allowed_buckets: tuple[str, ...] | None = None, field: str = "uri",
              schemes: tuple[str, ...] = ("s3",)) -> BlobUri:
    """Parse ``s3://bucket/key`` (or ``az://container/path`` when ``schemes`` has it); reject other schemes,
    ``..``, odd characters and foreign buckets."""
    expected = " or ".join(f"{s}://{SCHEMES[s][0]}/key" for s in schemes)
    if not isinstance(uri, str) or not uri:
        raise InvalidInput(f"{field}: expected an {expected} URI")
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme not in schemes:
        shown = uri.split(":", 1)[0] if ":" in uri else "a bare path"
        accepted = ", ".join(f"{s}://" for s in schemes)
        hint = " (az:// needs Azure storage configured: MLAAS_AZURE_*)" if scheme == "az" else ""
        raise InvalidInput(f"{field}: only {accepted} URIs are accepted, got {shown!r}{hint}")
    noun, pattern = SCHEMES[scheme]
    bucket, _, key = rest.partition("/")
    if not pattern.match(bucket):
        raise InvalidInput(f"{field}: {bucket!r} is not a valid {noun} name")
    if allowed_buckets is not None and bucket not in allowed_buckets:
        raise InvalidInput(f"{field}: {noun} {bucket!r} is not one mlaas may use ({', '.join(allowed_buckets)})")
    _check_key(key, field)
    return BlobUri(bucket, key, scheme)


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
