"""Webhook calls from monitors: allowlisted host:port only, the checked address connected to, signed and timed.

A delivery resolves the host once, checks every address it resolves to, and connects to the checked address
itself (the Host header and TLS name stay the URL's), so a resolver that answers differently the second time
(DNS rebinding) cannot move the request. The signature covers ``<timestamp>.<body>`` and the timestamp is sent,
so a receiver can refuse replays (see ``verify``).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import urllib3

from mlaas.errors import InvalidInput

SIGNATURE_HEADER = "X-Mlaas-Signature"
TIMESTAMP_HEADER = "X-Mlaas-Timestamp"
MIN_SECRET_LENGTH = 32  # characters (so at least as many UTF-8 bytes)
REPLAY_WINDOW_SECONDS = 300


@dataclass(frozen=True)
class Target:
    """Where a delivery goes: the URL's scheme, host, port and path, and the one address checked for it."""

    scheme: str
    host: str
    port: int
    path: str
    address: str


def check_url(url: str, allowlist: tuple[str, ...]) -> Target:
    """Accept http(s) URLs whose ``host:port`` is allowlisted; a hostname must resolve to public addresses only.

    A literal IP in the allowlist may be private (a receiver on the same network); a hostname that resolves to
    a loopback, private, link-local or metadata address is refused.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("webhook.url: only http:// and https:// URLs with a host are accepted")
    if parts.username or parts.password:
        raise InvalidInput("webhook.url: credentials in the URL are not accepted; use the signing secret")
    host = parts.hostname.lower()
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise InvalidInput("webhook.url: the port is not a number from 1 to 65535") from None
    if f"{host}:{port}" not in allowlist and f"[{host}]:{port}" not in allowlist:
        raise InvalidInput(f"webhook.url: {host}:{port} is not in MLAAS_WEBHOOK_ALLOWLIST (entries are host:port)")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if _is_ip(host):
        return Target(parts.scheme, host, port, path, host)
    try:
        addresses = sorted({str(info[4][0]) for info in socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)})
    except (socket.gaierror, UnicodeError):
        raise InvalidInput(f"webhook.url: {host} does not resolve") from None
    if not addresses or any(not ipaddress.ip_address(a.split("%")[0]).is_global for a in addresses):
        raise InvalidInput(f"webhook.url: {host} resolves to an internal address; allowlist the IP itself")
    return Target(parts.scheme, host, port, path, addresses[0])


def check_secret(secret: str | None) -> None:
    """A signing secret is required and must hold at least MIN_SECRET_LENGTH characters."""
    if not secret or len(secret) < MIN_SECRET_LENGTH:
        raise InvalidInput(f"webhook.secret: required, at least {MIN_SECRET_LENGTH} characters "
                           "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">``."""
    return "sha256=" + hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str, *, now: float | None = None,
           window: float = REPLAY_WINDOW_SECONDS) -> bool:
    """The receiver's check: the signature matches and the timestamp is within ``window`` seconds of now."""
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - sent) > window:
        return False
    return hmac.compare_digest(sign(secret, sent, body), signature)


def deliver(url: str, payload: dict[str, Any], *, secret: str, allowlist: tuple[str, ...], timeout: float,
            attempts: int = 3) -> dict[str, Any]:
    """POST the payload; retries on network errors and 5xx; never follows redirects. Returns the outcome."""
    target = check_url(url, allowlist)
    check_secret(secret)
    body = json.dumps(payload, default=str, sort_keys=True, allow_nan=False).encode()
    last = ""
    for attempt in range(1, attempts + 1):
        timestamp = int(time.time())
        headers = {"Content-Type": "application/json", "User-Agent": "mlaas-monitor",
                   TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(secret, timestamp, body)}
        try:
            status = _post(target, body, headers, timeout)
            if status < 500:
                return {"delivered": 200 <= status < 300, "status": status, "attempts": attempt}
            last = f"HTTP {status}"
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            last = type(exc).__name__
        if attempt < attempts:
            time.sleep(min(2 ** (attempt - 1), 5))
    return {"delivered": False, "error": last, "attempts": attempts}


def _post(target: Target, body: bytes, headers: dict[str, str], timeout: float) -> int:
    """One POST to the checked address, with the URL's Host header (and TLS server name)."""
    default_port = 443 if target.scheme == "https" else 80
    host = f"[{target.host}]" if ":" in target.host else target.host
    host_header = host if target.port == default_port else f"{host}:{target.port}"
    pool: urllib3.HTTPConnectionPool
    if target.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(target.address, target.port, timeout=timeout, retries=False,
                                           cert_reqs="CERT_REQUIRED", server_hostname=target.host,
                                           assert_hostname=target.host)
    else:
        pool = urllib3.HTTPConnectionPool(target.address, target.port, timeout=timeout, retries=False)
    with pool:
        response = pool.urlopen("POST", target.path, body=body, headers={**headers, "Host": host_header},
                                redirect=False, retries=False, preload_content=True)
        return int(response.status)
