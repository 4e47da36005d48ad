"""One contract for every blob storage backend, run against real servers: SeaweedFS (the session stack's S3)
and Azurite (started here, alone). Round trips, large streamed objects, listing with prefixes and paging,
conditional create, and the errors every backend translates the same way."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import uuid
from collections.abc import Iterator

import pytest
from localstack import Stack, StackConfig, azurite

from mlaas.adapters.storage import BlobStore, RoutedBlobStore, open_store
from mlaas.adapters.storage.azure import AzureBlobStore
from mlaas.adapters.storage.s3 import MinioBlobStore
from mlaas.errors import Conflict, InvalidInput, NotFound, TooLarge, Unavailable
from mlaas.settings import Secret, Settings
from mlaas.uris import BlobUri
from tests.integration.conftest import ROOT

pytestmark = pytest.mark.integration
PAGE = 3  # objects per listing request: the listings below span several pages


@pytest.fixture(scope="module")
def azurite_settings() -> Iterator[Settings]:
    """Azurite's blob service alone, on free ports, with the stack's containers."""
    config = StackConfig.with_free_ports(ROOT / ".test-stack" / f"azurite-{uuid.uuid4().hex[:8]}", storage="azure",
                                         components=("s3",))
    running = Stack(config)
    try:
        running.start()
        yield Settings(storage_backend="azure", azure_connection_string=Secret(azurite.connection_string(config)))
    finally:
        running.stop()


@dataclasses.dataclass
class Backend:
    store: BlobStore
    settings: Settings
    scheme: str

    def uri(self, key: str) -> BlobUri:
        return BlobUri(self.settings.datasets_bucket, key, self.scheme)


@pytest.fixture(params=["s3", "azure"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "s3":
        settings = request.getfixturevalue("settings")
        return Backend(MinioBlobStore(settings, page_size=PAGE), settings, "s3")
    settings = request.getfixturevalue("azurite_settings")
    return Backend(AzureBlobStore(settings, page_size=PAGE), settings, "az")


class _Chunks(io.RawIOBase):
    """A stream of ``count`` pseudo-random 1 MiB chunks, made as it is read (never held whole), any read size."""

    def __init__(self, count: int, size: int = 1024 * 1024) -> None:
        self.left, self.size, self.digest = count, size, hashlib.sha256()
        self.pending, self.offset = b"", 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self.offset == len(self.pending):
            if self.left == 0:
                return 0
            self.pending, self.offset = hashlib.sha256(str(self.left).encode()).digest() * (self.size // 32), 0
            self.left -= 1
            self.digest.update(self.pending)
        n = min(len(buffer), len(self.pending) - self.offset)
        buffer[:n] = self.pending[self.offset:self.offset + n]
        self.offset += n
        return n


def test_round_trip_with_metadata_and_delete(backend: Backend, unique: str) -> None:
    store, uri = backend.store, backend.uri(f"{unique}/a.csv")
    store.put_bytes(uri, b"a,b\n1,2\n", content_type="text/csv")
    assert store.get_bytes(uri) == b"a,b\n1,2\n"
    info = store.stat(uri)
    assert info.size == 8 and info.etag and info.last_modified is not None and str(info.uri).startswith(
        f"{backend.scheme}://")
    store.put_bytes(uri, b"replaced")
    assert store.get_bytes(uri) == b"replaced"
    assert store.get_range(uri, 2, 3) == b"pla" and store.get_range(uri, 6, 100) == b"ed"  # fewer at the end
    meta = backend.uri(f"{unique}/m.json")
    store.put_stream(meta, io.BytesIO(b"{}"), length=2, content_type="application/json",
                     metadata={"mlaas-owner": "alice_1", "Other-Name": "x"})
    assert dict(store.stat(meta).metadata) == {"mlaas-owner": "alice_1", "other-name": "x"}
    store.delete(uri)
    assert not store.exists(uri) and store.exists(meta)
    store.delete(uri)  # already gone: no error


def test_large_objects_stream_in_and_the_size_limit_refuses_them_before_download(backend: Backend,
                                                                                 unique: str) -> None:
    store, uri = backend.store, backend.uri(f"{unique}/big.bin")
    body = _Chunks(20)  # 20 MiB of unknown length: multipart on S3, blocks on Azure
    store.put_stream(uri, body, length=-1, content_type="application/octet-stream")  # type: ignore[arg-type]
    assert store.stat(uri).size == 20 * 1024 * 1024
    with pytest.raises(TooLarge, match="larger than"):
        store.get_bytes(uri, max_bytes=1024 * 1024)
    assert hashlib.sha256(store.get_bytes(uri, max_bytes=20 * 1024 * 1024)).hexdigest() == body.digest.hexdigest()


def test_listing_by_prefix_spans_pages_in_key_order(backend: Backend, unique: str) -> None:
    store = backend.store
    keys = [f"{unique}/a/{i:02d}.csv" for i in range(7)] + [f"{unique}/ab/x.csv", f"{unique}/ab/y/z.csv",
                                                             f"{unique}/b.csv"]
    for key in keys:
        store.put_bytes(backend.uri(key), key.encode())
    bucket = backend.settings.datasets_bucket
    folder = list(store.list(bucket, f"{unique}/a/"))
    assert [o.uri.key for o in folder] == keys[:7]  # 7 objects over 3 pages of 3
    assert all(o.uri.scheme == backend.scheme and o.size == len(o.uri.key) for o in folder)
    assert [o.uri.key for o in store.list(bucket, f"{unique}/a")] == keys[:9]  # a prefix, not a folder
    assert [o.uri.key for o in store.list(bucket, f"{unique}/")] == sorted(keys)
    assert list(store.list(bucket, f"{unique}/none/")) == []


def test_conditional_create_refuses_an_existing_object(backend: Backend, unique: str) -> None:
    store, uri = backend.store, backend.uri(f"{unique}/once.csv")
    store.put_stream(uri, io.BytesIO(b"first"), length=5, content_type="text/csv", overwrite=False)
    with pytest.raises(Conflict, match="exists"):
        store.put_stream(uri, io.BytesIO(b"second"), length=6, content_type="text/csv", overwrite=False)
    assert store.get_bytes(uri) == b"first"
    store.put_stream(uri, io.BytesIO(b"third"), length=5, content_type="text/csv", overwrite=True)
    assert store.get_bytes(uri) == b"third"


def test_missing_objects_and_buckets_are_not_found(backend: Backend, unique: str) -> None:
    store = backend.store
    missing = backend.uri(f"{unique}/nothing.csv")
    for call in (lambda: store.get_bytes(missing), lambda: store.stat(missing)):
        with pytest.raises(NotFound, match="does not exist"):
            call()
    assert not store.exists(missing)
    absent = BlobUri(f"absent-{unique[-6:]}", "x.csv", backend.scheme)
    with pytest.raises(NotFound):
        store.get_bytes(absent)
    made = f"made-{uuid.uuid4().hex[:10]}"
    store.ensure_buckets((made,))
    store.ensure_buckets((made,))  # idempotent
    store.put_bytes(BlobUri(made, "x.txt", backend.scheme), b"x")
    assert store.get_bytes(BlobUri(made, "x.txt", backend.scheme)) == b"x"


def test_refused_credentials_and_a_dead_server_are_unavailable_naming_the_backend(backend: Backend,
                                                                                  unique: str) -> None:
    uri = backend.uri(f"{unique}/x.txt")
    backend.store.put_bytes(uri, b"x")
    if backend.scheme == "s3":
        dependency, secret = "s3", "not-the-secret"
        wrong: BlobStore = MinioBlobStore(dataclasses.replace(backend.settings, s3_secret_key=Secret(secret)))
        down: BlobStore = MinioBlobStore(dataclasses.replace(backend.settings, s3_endpoint="http://127.0.0.1:1"))
    else:
        dependency, secret = "azure", "bm90LXRoZS1rZXk="
        text = backend.settings.azure_connection_string.reveal()
        key = text.split("AccountKey=")[1].split(";")[0]
        wrong = AzureBlobStore(dataclasses.replace(backend.settings, azure_connection_string=Secret(
            text.replace(key, secret))))
        endpoint = text.split("BlobEndpoint=")[1].split(";")[0]
        down = AzureBlobStore(dataclasses.replace(backend.settings, azure_connection_string=Secret(
            text.replace(endpoint, "http://127.0.0.1:1/devstoreaccount1"))))
    with pytest.raises(Unavailable) as err:
        wrong.get_bytes(uri)
    assert err.value.dependency == dependency and secret not in err.value.message
    with pytest.raises(Unavailable) as err:
        down.ping()
    assert err.value.dependency == dependency


def test_the_routed_store_sends_each_uri_to_its_scheme_and_refuses_unconfigured_ones(
        settings: Settings, azurite_settings: Settings, unique: str) -> None:
    both = dataclasses.replace(settings, azure_connection_string=azurite_settings.azure_connection_string)
    store = open_store(both)
    assert isinstance(store, RoutedBlobStore) and set(store.backends) == {"s3", "az"}
    s3, az = BlobUri(settings.datasets_bucket, f"{unique}/x"), BlobUri(settings.datasets_bucket, f"{unique}/x", "az")
    store.put_bytes(s3, b"on s3")
    store.put_bytes(az, b"on azure")
    assert store.get_bytes(s3) == b"on s3" and store.get_bytes(az) == b"on azure"
    assert [o.uri for o in store.list(settings.datasets_bucket, f"{unique}/")] == [s3]  # the default backend
    store.ping()
    with pytest.raises(InvalidInput, match="no storage is configured for az://"):
        open_store(settings).get_bytes(az)
