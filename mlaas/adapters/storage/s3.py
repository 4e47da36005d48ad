"""``BlobStore`` for ``s3://`` URIs over any S3-compatible server (SeaweedFS, MinIO, AWS S3) through the minio SDK."""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import BinaryIO
from urllib.parse import urlparse

import urllib3
from minio import Minio
from minio.error import S3Error

from mlaas.adapters.storage import (
    ObjectInfo,
    denied,
    exists_by_stat,
    missing,
    rejected,
    taken,
    too_large,
    unreachable,
)
from mlaas.settings import Settings
from mlaas.uris import BlobUri

_META = "x-amz-meta-"
_MISSING = {"NoSuchKey", "NoSuchBucket", "NoSuchObject", "ResourceNotFound"}
_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"}
DEPENDENCY = "s3"


class MinioBlobStore:
    """``BlobStore`` over an S3-compatible server."""

    scheme = "s3"

    def __init__(self, settings: Settings, *, page_size: int = 1000) -> None:
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
        self._page_size = page_size  # objects per listing request (tests page with small ones)

    def get_bytes(self, uri: BlobUri, *, max_bytes: int | None = None) -> bytes:
        """Read a whole object; ``max_bytes`` refuses larger ones before downloading them."""
        if max_bytes is not None:
            too_large(uri, self.stat(uri).size, max_bytes)
        with _errors(uri):
            response = self._client.get_object(uri.bucket, uri.key)
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

    def get_range(self, uri: BlobUri, offset: int, length: int) -> bytes:
        """Read ``length`` bytes of an object from ``offset`` (fewer at its end): one range GET."""
        with _errors(uri):
            response = self._client.get_object(uri.bucket, uri.key, offset=offset, length=length)
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

    def put_bytes(self, uri: BlobUri, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        """Write an object, replacing any previous one."""
        with _errors(uri):
            self._client.put_object(uri.bucket, uri.key, io.BytesIO(data), len(data), content_type=content_type)

    def put_stream(self, uri: BlobUri, stream: BinaryIO, *, length: int, content_type: str,
                   metadata: Mapping[str, str] | None = None, overwrite: bool = True) -> None:
        """Write an object from a stream without holding it in memory (-1: unknown length, multipart).

        ``overwrite=False`` refuses an existing object (Conflict). The minio SDK sends no ``If-None-Match``, so
        on S3 this is a check before the write, not an atomic one as on Azure.
        """
        if not overwrite and self.exists(uri):
            raise taken(uri)
        with _errors(uri):
            self._client.put_object(uri.bucket, uri.key, stream, length, content_type=content_type,
                                    part_size=0 if length >= 0 else 16 * 1024 * 1024,
                                    metadata=dict(metadata) if metadata else None)

    def stat(self, uri: BlobUri) -> ObjectInfo:
        """Size and metadata of an object; NotFound when it does not exist."""
        with _errors(uri):
            obj = self._client.stat_object(uri.bucket, uri.key)
        meta = {str(k).lower().removeprefix(_META): str(v) for k, v in (obj.metadata or {}).items()
                if str(k).lower().startswith(_META)}
        return ObjectInfo(uri, obj.size or 0, obj.last_modified, (obj.etag or "").strip('"'), meta)

    def exists(self, uri: BlobUri) -> bool:
        """Whether the object exists."""
        return exists_by_stat(self, uri)

    def delete(self, uri: BlobUri) -> None:
        """Remove an object (no error when it is already gone)."""
        with _errors(uri):
            self._client.remove_object(uri.bucket, uri.key)

    def list(self, bucket: str, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects under a prefix, recursively, in key order, fetched a page at a time."""
        with _errors(BlobUri(bucket, prefix)):
            # list_objects offers no page size; the same call with max-keys is the SDK's own listing loop
            pages = self._client._list_objects(bucket, prefix=prefix or None, delimiter=None, encoding_type="url",
                                               max_keys=self._page_size)
            for obj in pages:
                if obj.object_name is None or obj.is_dir:
                    continue
                yield ObjectInfo(BlobUri(bucket, obj.object_name), obj.size or 0, obj.last_modified,
                                 (obj.etag or "").strip('"'))

    def ensure_buckets(self, buckets: tuple[str, ...]) -> None:
        """Create the buckets that do not exist yet."""
        for bucket in buckets:
            with _errors(BlobUri(bucket, "")):
                if not self._client.bucket_exists(bucket):
                    try:
                        self._client.make_bucket(bucket)
                    except S3Error as exc:
                        if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                            raise

    def ping(self) -> None:
        """Raise Unavailable unless the server answers an authenticated request."""
        with _errors(BlobUri("ping", "")):
            self._client.list_buckets()


@contextmanager
def _errors(uri: BlobUri) -> Iterator[None]:
    """Translate the SDK's errors into the project's."""
    try:
        yield
    except S3Error as exc:
        if exc.code in _MISSING:
            raise missing(uri) from None
        if exc.code in _DENIED:
            raise denied(DEPENDENCY, uri, str(exc.code)) from None
        raise rejected(DEPENDENCY, uri, str(exc.code)) from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise unreachable(DEPENDENCY, exc) from None
