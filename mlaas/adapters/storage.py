"""Blob storage. ``BlobStore`` is the narrow interface; ``MinioBlobStore`` implements it over the minio SDK.

Another store (Azure Blob, GCS) is one new class with these nine methods.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO, Literal, Protocol
from urllib.parse import urlparse

import urllib3
from minio import Minio
from minio.error import S3Error

from mlaas.errors import InvalidInput, NotFound, TooLarge, Unavailable
from mlaas.settings import Settings
from mlaas.uris import S3Uri


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object."""

    uri: S3Uri
    size: int
    last_modified: datetime | None
    etag: str
    metadata: Mapping[str, str] = field(default_factory=dict)  # user metadata (x-amz-meta-*), from stat only


class BlobStore(Protocol):
    """What mlaas needs from blob storage."""

    def get_bytes(self, uri: S3Uri, *, max_bytes: int | None = None) -> bytes: ...

    def get_range(self, uri: S3Uri, offset: int, length: int) -> bytes: ...

    def put_bytes(self, uri: S3Uri, data: bytes, *, content_type: str = "application/octet-stream") -> None: ...

    def put_stream(self, uri: S3Uri, stream: BinaryIO, *, length: int, content_type: str,
                   metadata: Mapping[str, str] | None = None) -> None: ...

    def stat(self, uri: S3Uri) -> ObjectInfo: ...

    def exists(self, uri: S3Uri) -> bool: ...

    def list(self, bucket: str, prefix: str = "") -> Iterator[ObjectInfo]: ...

    def ensure_buckets(self, buckets: tuple[str, ...]) -> None: ...

    def ping(self) -> None: ...


_META = "x-amz-meta-"
_MISSING = {"NoSuchKey", "NoSuchBucket", "NoSuchObject", "ResourceNotFound"}
_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"}


class MinioBlobStore:
    """``BlobStore`` over any S3-compatible server (MinIO, SeaweedFS, AWS S3) through the minio SDK."""

    def __init__(self, settings: Settings) -> None:
        parsed = urlparse(settings.s3_endpoint if "://" in settings.s3_endpoint else f"http://{settings.s3_endpoint}")
        timeout = urllib3.Timeout(connect=3.0, read=60.0)
        retries = urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504))
        self._client = Minio(
            parsed.netloc,
            access_key=settings.s3_access_key or None,
            secret_key=settings.s3_secret_key.reveal() if settings.s3_secret_key else None,
            secure=parsed.scheme == "https",
            region=settings.s3_region,
            http_client=urllib3.PoolManager(timeout=timeout, retries=retries, maxsize=16),
        )
        self._endpoint = parsed.netloc

    def get_bytes(self, uri: S3Uri, *, max_bytes: int | None = None) -> bytes:
        """Read a whole object; ``max_bytes`` refuses larger ones before downloading them."""
        if max_bytes is not None and self.stat(uri).size > max_bytes:
            raise TooLarge(f"{uri} is larger than {max_bytes} bytes")
        with self._errors(uri):
            response = self._client.get_object(uri.bucket, uri.key)
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

    def get_range(self, uri: S3Uri, offset: int, length: int) -> bytes:
        """Read ``length`` bytes of an object from ``offset`` (fewer at its end): one range GET."""
        with self._errors(uri):
            response = self._client.get_object(uri.bucket, uri.key, offset=offset, length=length)
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

    def put_bytes(self, uri: S3Uri, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        """Write an object, replacing any previous one."""
        with self._errors(uri):
            self._client.put_object(uri.bucket, uri.key, io.BytesIO(data), len(data), content_type=content_type)

    def put_stream(self, uri: S3Uri, stream: BinaryIO, *, length: int, content_type: str,
                   metadata: Mapping[str, str] | None = None) -> None:
        """Write an object from a stream without holding it in memory (-1: unknown length, multipart)."""
        with self._errors(uri):
            self._client.put_object(uri.bucket, uri.key, stream, length, content_type=content_type,
                                    part_size=0 if length >= 0 else 16 * 1024 * 1024,
                                    metadata=dict(metadata) if metadata else None)

    def stat(self, uri: S3Uri) -> ObjectInfo:
        """Size and metadata of an object; NotFound when it does not exist."""
        with self._errors(uri):
            obj = self._client.stat_object(uri.bucket, uri.key)
        meta = {str(k).lower().removeprefix(_META): str(v) for k, v in (obj.metadata or {}).items()
                if str(k).lower().startswith(_META)}
        return ObjectInfo(uri, obj.size or 0, obj.last_modified, (obj.etag or "").strip('"'), meta)

    def exists(self, uri: S3Uri) -> bool:
        """Whether the object exists."""
        try:
            self.stat(uri)
        except NotFound:
            return False
        return True

    def list(self, bucket: str, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects under a prefix, recursively."""
        with self._errors(S3Uri(bucket, prefix)):
            for obj in self._client.list_objects(bucket, prefix=prefix or None, recursive=True):
                if obj.object_name is None or obj.is_dir:
                    continue
                yield ObjectInfo(
                    S3Uri(bucket, obj.object_name), obj.size or 0, obj.last_modified, (obj.etag or "").strip('"')
                )

    def ensure_buckets(self, buckets: tuple[str, ...]) -> None:
        """Create the buckets that do not exist yet."""
        for bucket in buckets:
            with self._errors(S3Uri(bucket, "")):
                if not self._client.bucket_exists(bucket):
                    try:
                        self._client.make_bucket(bucket)
                    except S3Error as exc:
                        if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                            raise

    def ping(self) -> None:
        """Raise Unavailable unless the server answers an authenticated request."""
        with self._errors(S3Uri("ping", "")):
            self._client.list_buckets()

    class _errors:  # noqa: N801 - used as a context manager
        def __init__(self, uri: S3Uri) -> None:
            self.uri = uri

        def __enter__(self) -> None:
            return None

        def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                     tb: object) -> Literal[False]:
            if exc is None:
                return False
            if isinstance(exc, S3Error):
                if exc.code in _MISSING:
                    raise NotFound(f"{self.uri} does not exist") from None
                if exc.code in _DENIED:
                    raise Unavailable("s3", f"s3 refused access to {self.uri}: {exc.code}") from None
                raise InvalidInput(f"s3 rejected the request for {self.uri}: {exc.code}") from None
            if isinstance(exc, (urllib3.exceptions.HTTPError, OSError)):
                raise Unavailable("s3", f"s3 does not answer ({type(exc).__name__})") from None
            return False
