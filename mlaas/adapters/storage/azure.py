"""``BlobStore`` for ``az://container/path`` URIs over Azure Blob Storage (or Azurite) through azure-storage-blob.

Credentials, first match wins: ``MLAAS_AZURE_CONNECTION_STRING``; else ``MLAAS_AZURE_ACCOUNT_URL`` with
``MLAAS_AZURE_ACCOUNT_KEY`` (shared key), ``MLAAS_AZURE_SAS_TOKEN``, or neither (``DefaultAzureCredential``:
environment, workload or managed identity, Azure CLI).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any, BinaryIO
from urllib.parse import urlparse

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import BlobServiceClient, ContentSettings

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
from mlaas.errors import NotFound
from mlaas.settings import Settings
from mlaas.uris import BlobUri

DEPENDENCY = "azure"
_DENIED = {"AuthenticationFailed", "AuthorizationFailure", "AuthorizationPermissionMismatch",
           "InsufficientAccountPermissions", "AccountIsDisabled"}
_OPTIONS: dict[str, Any] = {"connection_timeout": 3, "read_timeout": 60, "retry_total": 2}
_ENCODED = re.compile(r"_([0-9a-f]{2})")


def account_name(account_url: str) -> str:
    """The account of an account URL: the first host label, or the first path segment on an emulator's IP URL."""
    parsed = urlparse(account_url)
    host = parsed.hostname or ""
    if host.replace(".", "").isdigit() or host == "localhost":
        return parsed.path.strip("/").split("/")[0]
    return host.split(".")[0]


def service_client(settings: Settings) -> BlobServiceClient:
    """A client from the configured credentials (no request is sent yet)."""
    if settings.azure_connection_string:
        return BlobServiceClient.from_connection_string(settings.azure_connection_string.reveal(), **_OPTIONS)
    url = settings.azure_account_url
    credential: Any
    if settings.azure_account_key:
        credential = {"account_name": account_name(url), "account_key": settings.azure_account_key.reveal()}
    elif settings.azure_sas_token:
        credential = settings.azure_sas_token.reveal().lstrip("?")
    else:
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()
    return BlobServiceClient(url, credential=credential, **_OPTIONS)


def encode_metadata(name: str) -> str:
    """A metadata name as Azure accepts it (a C# identifier): ``_`` and other characters as ``_xx`` hex."""
    return "".join(c if c.isascii() and c.isalnum() else f"_{ord(c):02x}" for c in name.lower())


def decode_metadata(name: str) -> str:
    """The metadata name ``encode_metadata`` was given."""
    return _ENCODED.sub(lambda m: chr(int(m.group(1), 16)), name.lower())


class AzureBlobStore:
    """``BlobStore`` over one Azure storage account; a bucket is a container."""

    scheme = "az"

    def __init__(self, settings: Settings, *, page_size: int = 5000) -> None:
        # the SDK logs every request at INFO (headers redacted): too much for a worker's log, never useful there
        logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)
        self._client = service_client(settings)
        self._page_size = page_size  # blobs per listing request (tests page with small ones)

    def _blob(self, uri: BlobUri) -> Any:
        return self._client.get_blob_client(uri.bucket, uri.key)

    def get_bytes(self, uri: BlobUri, *, max_bytes: int | None = None) -> bytes:
        """Read a whole blob; ``max_bytes`` refuses larger ones before downloading them."""
        if max_bytes is not None:
            too_large(uri, self.stat(uri).size, max_bytes)
        with _errors(uri):
            return bytes(self._blob(uri).download_blob(max_concurrency=1).readall())

    def get_range(self, uri: BlobUri, offset: int, length: int) -> bytes:
        """Read ``length`` bytes of a blob from ``offset`` (fewer at its end): one ranged download."""
        with _errors(uri):
            return bytes(self._blob(uri).download_blob(offset=offset, length=length, max_concurrency=1).readall())

    def put_bytes(self, uri: BlobUri, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        """Write a blob, replacing any previous one."""
        with _errors(uri):
            self._blob(uri).upload_blob(data, length=len(data), overwrite=True,
                                        content_settings=ContentSettings(content_type=content_type))

    def put_stream(self, uri: BlobUri, stream: BinaryIO, *, length: int, content_type: str,
                   metadata: Mapping[str, str] | None = None, overwrite: bool = True) -> None:
        """Write a blob from a stream in blocks (-1: unknown length); ``overwrite=False`` refuses an existing
        blob atomically (``If-None-Match: *``) with Conflict."""
        with _errors(uri):
            self._blob(uri).upload_blob(
                stream, length=length if length >= 0 else None, overwrite=overwrite, max_concurrency=1,
                metadata={encode_metadata(k): v for k, v in (metadata or {}).items()} or None,
                content_settings=ContentSettings(content_type=content_type))

    def stat(self, uri: BlobUri) -> ObjectInfo:
        """Size and metadata of a blob; NotFound when it does not exist."""
        with _errors(uri):
            props = self._blob(uri).get_blob_properties()
        meta = {decode_metadata(k): str(v) for k, v in (props.metadata or {}).items()}
        return ObjectInfo(uri, props.size or 0, props.last_modified, (props.etag or "").strip('"'), meta)

    def exists(self, uri: BlobUri) -> bool:
        """Whether the blob exists."""
        return exists_by_stat(self, uri)

    def delete(self, uri: BlobUri) -> None:
        """Remove a blob (no error when it is already gone)."""
        try:
            with _errors(uri):
                self._blob(uri).delete_blob()
        except NotFound:
            pass

    def list(self, bucket: str, prefix: str = "") -> Iterator[ObjectInfo]:
        """Blobs under a prefix, recursively, in name order, fetched a page at a time."""
        container = self._client.get_container_client(bucket)
        with _errors(BlobUri(bucket, prefix, self.scheme)):
            for blob in container.list_blobs(name_starts_with=prefix or None, results_per_page=self._page_size):
                yield ObjectInfo(BlobUri(bucket, blob.name, self.scheme), blob.size or 0, blob.last_modified,
                                 (blob.etag or "").strip('"'))

    def ensure_buckets(self, buckets: tuple[str, ...]) -> None:
        """Create the containers that do not exist yet."""
        for bucket in buckets:
            # an existing container is what we want
            with _errors(BlobUri(bucket, "", self.scheme)), suppress(ResourceExistsError):
                self._client.create_container(bucket)

    def ping(self) -> None:
        """Raise Unavailable unless the account answers an authenticated request."""
        with _errors(BlobUri("ping", "", self.scheme)):
            self._client.get_account_information()


@contextmanager
def _errors(uri: BlobUri) -> Iterator[None]:
    """Translate the SDK's errors into the project's."""
    try:
        yield
    except ResourceNotFoundError:
        raise missing(uri) from None
    except ResourceExistsError:
        raise taken(uri) from None
    except ClientAuthenticationError as exc:  # also DefaultAzureCredential finding no identity
        error = getattr(exc, "error_code", None)
        raise denied(DEPENDENCY, uri, str(getattr(error, "value", error) or type(exc).__name__)) from None
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise unreachable(DEPENDENCY, exc) from None
    except HttpResponseError as exc:
        error = getattr(exc, "error_code", None)
        code = str(getattr(error, "value", error) or exc.status_code)  # the SDK gives an enum or a string
        if code in _DENIED or exc.status_code == 403:
            raise denied(DEPENDENCY, uri, code) from None
        if exc.status_code in (500, 502, 503, 504):
            raise unreachable(DEPENDENCY, exc) from None
        raise rejected(DEPENDENCY, uri, code) from None
