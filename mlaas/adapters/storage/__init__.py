"""Blob storage. ``BlobStore`` is the narrow interface mlaas needs; one backend per URI scheme implements it:
``s3://`` over the minio SDK (``s3.py``), ``az://`` over azure-storage-blob (``azure.py``). ``open_store`` builds
the configured ones behind ``RoutedBlobStore``, which sends each call to the backend of its URI's scheme.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO, Protocol

from mlaas.errors import Conflict, InvalidInput, NotFound, TooLarge, Unavailable
from mlaas.settings import Settings
from mlaas.uris import BlobUri


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object."""

    uri: BlobUri
    size: int
    last_modified: datetime | None
    etag: str
    metadata: Mapping[str, str] = field(default_factory=dict)  # user metadata (lower-case names), from stat only


class BlobStore(Protocol):
    """What mlaas needs from blob storage."""

    def get_bytes(self, uri: BlobUri, *, max_bytes: int | None = None) -> bytes: ...

    def get_range(self, uri: BlobUri, offset: int, length: int) -> bytes: ...

    def put_bytes(self, uri: BlobUri, data: bytes, *, content_type: str = "application/octet-stream") -> None: ...

    def put_stream(self, uri: BlobUri, stream: BinaryIO, *, length: int, content_type: str,
                   metadata: Mapping[str, str] | None = None, overwrite: bool = True) -> None: ...

    def stat(self, uri: BlobUri) -> ObjectInfo: ...

    def exists(self, uri: BlobUri) -> bool: ...

    def delete(self, uri: BlobUri) -> None: ...

    def list(self, bucket: str, prefix: str = "") -> Iterator[ObjectInfo]: ...

    def ensure_buckets(self, buckets: tuple[str, ...]) -> None: ...

    def ping(self) -> None: ...


def too_large(uri: BlobUri, size: int, max_bytes: int | None) -> None:
    """Refuse an object larger than ``max_bytes`` before downloading it (every backend's rule)."""
    if max_bytes is not None and size > max_bytes:
        raise TooLarge(f"{uri} is larger than {max_bytes} bytes")


def exists_by_stat(store: BlobStore, uri: BlobUri) -> bool:
    """Whether an object exists, as every backend answers it: its stat succeeds (NotFound: it does not)."""
    try:
        store.stat(uri)
    except NotFound:
        return False
    return True


def missing(uri: BlobUri) -> NotFound:
    """The error for an object or bucket that does not exist."""
    return NotFound(f"{uri} does not exist")


def taken(uri: BlobUri) -> Conflict:
    """The error for a conditional create of an object that exists."""
    return Conflict(f"{uri} exists; it is not overwritten")


def denied(dependency: str, uri: BlobUri, code: str) -> Unavailable:
    """The error for credentials the server refuses (a deployment problem, not the caller's)."""
    return Unavailable(dependency, f"{dependency} refused access to {uri}: {code}")


def rejected(dependency: str, uri: BlobUri, code: str) -> InvalidInput:
    """The error for a request the server rejects for another reason."""
    return InvalidInput(f"{dependency} rejected the request for {uri}: {code}")


def unreachable(dependency: str, exc: BaseException) -> Unavailable:
    """The error for a server that does not answer."""
    return Unavailable(dependency, f"{dependency} does not answer ({type(exc).__name__})")


class RoutedBlobStore:
    """A ``BlobStore`` over one backend per scheme; bucket-only calls go to the default (mlaas's own) backend."""

    def __init__(self, backends: Mapping[str, BlobStore], default: str) -> None:
        self.backends = dict(backends)
        self.default = default

    def backend(self, scheme: str) -> BlobStore:
        """The backend serving ``scheme`` URIs; InvalidInput when none is configured."""
        try:
            return self.backends[scheme]
        except KeyError:
            raise InvalidInput(f"no storage is configured for {scheme}:// URIs") from None

    def get_bytes(self, uri: BlobUri, *, max_bytes: int | None = None) -> bytes:
        return self.backend(uri.scheme).get_bytes(uri, max_bytes=max_bytes)

    def get_range(self, uri: BlobUri, offset: int, length: int) -> bytes:
        return self.backend(uri.scheme).get_range(uri, offset, length)

    def put_bytes(self, uri: BlobUri, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        self.backend(uri.scheme).put_bytes(uri, data, content_type=content_type)

    def put_stream(self, uri: BlobUri, stream: BinaryIO, *, length: int, content_type: str,
                   metadata: Mapping[str, str] | None = None, overwrite: bool = True) -> None:
        self.backend(uri.scheme).put_stream(uri, stream, length=length, content_type=content_type,
                                            metadata=metadata, overwrite=overwrite)

    def stat(self, uri: BlobUri) -> ObjectInfo:
        return self.backend(uri.scheme).stat(uri)

    def exists(self, uri: BlobUri) -> bool:
        return self.backend(uri.scheme).exists(uri)

    def delete(self, uri: BlobUri) -> None:
        self.backend(uri.scheme).delete(uri)

    def list(self, bucket: str, prefix: str = "") -> Iterator[ObjectInfo]:
        return self.backend(self.default).list(bucket, prefix)

    def ensure_buckets(self, buckets: tuple[str, ...]) -> None:
        self.backend(self.default).ensure_buckets(buckets)

    def ping(self) -> None:
        """Raise Unavailable unless every configured backend answers."""
        for store in self.backends.values():
            store.ping()


def open_store(settings: Settings) -> RoutedBlobStore:
    """The configured backends (clients are made here; no request is sent until the first call)."""
    backends: dict[str, BlobStore] = {}
    for scheme in settings.storage_schemes:
        if scheme == "az":
            from mlaas.adapters.storage.azure import AzureBlobStore

            backends[scheme] = AzureBlobStore(settings)
        else:
            from mlaas.adapters.storage.s3 import MinioBlobStore

            backends[scheme] = MinioBlobStore(settings)
    return RoutedBlobStore(backends, settings.storage_scheme)

