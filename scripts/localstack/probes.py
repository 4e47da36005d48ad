"""Readiness probes: a component is ready when it does its job, not merely when its port is open."""

from __future__ import annotations

import io
import socket
import time
import urllib.request
from pathlib import Path
from typing import Any

from .config import PROBE_KEY, StackConfig


def redis_ping(port: int) -> bool:
    """Whether Redis answers PING (not LOADING or an error)."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        return sock.recv(64).startswith(b"+PONG")


def http_ok(url: str) -> bool:
    """Whether a GET answers 200, ignoring any proxy settings."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as resp:
        return bool(resp.status == 200)


def log_contains(path: Path, text: str, offset: int) -> bool:
    """Whether ``text`` appears in a log after byte ``offset``."""
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            return text.encode() in handle.read()
    except OSError:
        return False


def s3_client(config: StackConfig) -> Any:
    """A minio client for the local S3 server with short timeouts and no retries."""
    import urllib3
    from minio import Minio

    http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=2.0, read=10.0), retries=False)
    return Minio(f"127.0.0.1:{config.s3_port}", access_key=config.s3_access_key,
                 secret_key=config.s3_secret_key, secure=False, region=config.s3_region, http_client=http)


def s3_probe(config: StackConfig) -> bool:
    """Whether a signed put then get of a small object round-trips."""
    client = s3_client(config)
    bucket = config.buckets[0]
    if not client.bucket_exists(bucket):
        client.make_bucket(bucket)
    payload = f"ready {time.time()}".encode()
    client.put_object(bucket, PROBE_KEY, io.BytesIO(payload), len(payload))
    resp = client.get_object(bucket, PROBE_KEY)
    try:
        body = resp.read()
    finally:
        resp.close()
        resp.release_conn()
    client.remove_object(bucket, PROBE_KEY)
    return bool(body == payload)


def ensure_buckets(config: StackConfig) -> None:
    """Create the configured buckets that do not exist yet."""
    client = s3_client(config)
    for bucket in config.buckets:
        if not client.bucket_exists(bucket):
            client.make_bucket(bucket)

