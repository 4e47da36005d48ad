"""Webhook calls from monitors: allowlisted URLs only, HMAC-signed JSON, bounded retries."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import requests

from mlaas.errors import InvalidInput

SIGNATURE_HEADER = "X-Mlaas-Signature"


def check_url(url: str, allowlist: tuple[str, ...]) -> str:
    """Accept only http(s) URLs whose host (or host:port) is allowlisted; hostnames must resolve publicly.

    A literal IP in the allowlist may be private (e.g. a receiver on the same network); a hostname that
    resolves to a loopback, private, link-local or metadata address is refused (DNS rebinding).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("webhook.url: only http:// and https:// URLs with a host are accepted")
    if parts.username or parts.password:
        raise InvalidInput("webhook.url: credentials in the URL are not accepted; use the signing secret")
    host = parts.hostname.lower()
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if host not in allowlist and f"{host}:{port}" not in allowlist:
        raise InvalidInput(f"webhook.url: {host}:{port} is not in MLAAS_WEBHOOK_ALLOWLIST")
    if not _is_ip(host):
        try:
            addresses = {info[4][0] for info in socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)}
        except socket.gaierror:
            raise InvalidInput(f"webhook.url: {host} does not resolve") from None
        internal = [a for a in addresses if not ipaddress.ip_address(str(a).split("%")[0]).is_global]
        if internal:
            raise InvalidInput(f"webhook.url: {host} resolves to an internal address; allowlist the IP itself")
    return url


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def sign(secret: str, body: bytes) -> str:
    """``sha256=<hex HMAC of the body>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def deliver(url: str, payload: dict[str, Any], *, secret: str, allowlist: tuple[str, ...], timeout: float,
            attempts: int = 3) -> dict[str, Any]:
    """POST the payload; retries on network errors and 5xx; never follows redirects. Returns the outcome."""
    check_url(url, allowlist)
    body = json.dumps(payload, default=str, sort_keys=True).encode()
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(secret, body),
               "User-Agent": "mlaas-monitor"}
    last = ""
    for attempt in range(1, attempts + 1):
        try:
            response = requests.post(url, data=body, headers=headers, timeout=timeout, allow_redirects=False)
            if response.status_code < 500:
                return {"delivered": 200 <= response.status_code < 300, "status": response.status_code,
                        "attempts": attempt}
            last = f"HTTP {response.status_code}"
        except requests.RequestException as exc:
            last = type(exc).__name__
        if attempt < attempts:
            time.sleep(min(2 ** (attempt - 1), 5))
    return {"delivered": False, "error": last, "attempts": attempts}
