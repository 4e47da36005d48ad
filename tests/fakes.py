"""In-memory stand-ins for unit tests of services and routes (integration tests use the real servers)."""

from __future__ import annotations

from collections.abc import Iterator

from mlaas.adapters.storage import ObjectInfo
from mlaas.errors import Conflict, NotFound, TooLarge, Unavailable
from mlaas.uris import S3Uri


class MemoryBlobStore:
    """A dict-backed BlobStore."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}
        self.metadata: dict[tuple[str, str], dict[str, str]] = {}
        self.buckets: set[str] = set()
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise Unavailable("s3")

    def get_bytes(self, uri: S3Uri, *, max_bytes: int | None = None) -> bytes:
        self._check()
        try:
            data = self.objects[(uri.bucket, uri.key)]
        except KeyError:
            raise NotFound(f"{uri} does not exist") from None
        if max_bytes is not None and len(data) > max_bytes:
            raise TooLarge(f"{uri} is larger than {max_bytes} bytes")
        return data

    def get_range(self, uri: S3Uri, offset: int, length: int) -> bytes:
        return self.get_bytes(uri)[offset:offset + length]

    def put_bytes(self, uri: S3Uri, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        self._check()
        self.objects[(uri.bucket, uri.key)] = bytes(data)
        self.metadata.pop((uri.bucket, uri.key), None)

    def put_stream(self, uri: S3Uri, stream, *, length: int, content_type: str, metadata=None,
                   overwrite: bool = True) -> None:
        if not overwrite and self.exists(uri):
            raise Conflict(f"{uri} exists; it is not overwritten")
        self.put_bytes(uri, stream.read())
        self.metadata[(uri.bucket, uri.key)] = {k.lower(): v for k, v in (metadata or {}).items()}

    def stat(self, uri: S3Uri) -> ObjectInfo:
        return ObjectInfo(uri, len(self.get_bytes(uri)), None, "", self.metadata.get((uri.bucket, uri.key), {}))

    def exists(self, uri: S3Uri) -> bool:
        self._check()
        return (uri.bucket, uri.key) in self.objects

    def list(self, bucket: str, prefix: str = "") -> Iterator[ObjectInfo]:
        self._check()
        for (b, k), data in sorted(self.objects.items()):
            if b == bucket and k.startswith(prefix):
                yield ObjectInfo(S3Uri(b, k), len(data), None, "")

    def delete(self, uri: S3Uri) -> None:
        self._check()
        self.objects.pop((uri.bucket, uri.key), None)
        self.metadata.pop((uri.bucket, uri.key), None)

    def ensure_buckets(self, buckets: tuple[str, ...]) -> None:
        self.buckets.update(buckets)

    def ping(self) -> None:
        self._check()
