"""API keys: configured as SHA-256 hashes with scopes, checked in constant time.

``MLAAS_API_KEYS`` holds comma-separated entries ``name:scope+scope:sha256hex[:requests per minute]``.
Keys are long random strings (``mlaas_`` + 43 URL-safe characters), so a plain SHA-256 is enough: no slow
password hash sits on the hot path, and the plaintext never appears in configuration or logs.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from contextvars import ContextVar
from dataclasses import dataclass

from mlaas.errors import InvalidInput

SCOPES = ("predict", "jobs", "promote", "admin", "feedback")  # promote: move prod; feedback: POST /feedback
IMPLIED_BY = {"feedback": "jobs"}  # a jobs key may also send outcomes
KEY_PREFIX = "mlaas_"


@dataclass(frozen=True)
class ApiKey:
    """A configured key: who it is, what it may do, and the hash it is recognised by."""

    name: str
    scopes: frozenset[str]
    digest: bytes
    per_minute: int | None = None  # this key's rate limit; None: the global MLAAS_RATE_LIMIT_PER_MINUTE

    def allows(self, scope: str | None) -> bool:
        """Whether this key may use a route that needs ``scope`` (None: any valid key)."""
        return scope is None or self.is_admin or scope in self.scopes or IMPLIED_BY.get(scope, "") in self.scopes

    @property
    def is_admin(self) -> bool:
        """Admin keys see and change what every key created."""
        return "admin" in self.scopes


@dataclass(frozen=True)
class Caller:
    """Who asks, for ownership: a key's name; an admin (or anyone when auth is off) sees every owner's things."""

    name: str
    admin: bool = False

    def owns(self, owner: str | None) -> bool:
        """Whether this caller may see and change something created by ``owner`` (None: by mlaas itself)."""
        return self.admin or (owner is not None and owner == self.name)


# The key whose request is being handled, for what it may read (set by the API per request; None: no key, as in a
# worker or with auth off, where nothing is refused for ownership).
READER: ContextVar[Caller | None] = ContextVar("mlaas_reader", default=None)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def generate_key(name: str, scopes: tuple[str, ...] = SCOPES) -> tuple[str, str]:
    """A new random key and its configuration entry: ``(key, "name:scopes:sha256")``."""
    unknown = set(scopes) - set(SCOPES)
    if unknown or not scopes:
        raise InvalidInput(f"scopes: choose from {', '.join(SCOPES)}")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return key, f"{name}:{'+'.join(scopes)}:{hash_key(key)}"


def parse_keys(entries: tuple[str, ...]) -> list[ApiKey]:
    """Parse ``name:scope+scope:sha256hex`` entries, naming the faulty one."""
    keys = []
    for entry in entries:
        parts = entry.split(":")
        if len(parts) not in (3, 4):
            raise InvalidInput(f"MLAAS_API_KEYS: {parts[0]!r} is not name:scopes:sha256[:per_minute]")
        name, scopes_text, digest = parts[:3]
        per_minute = None
        if len(parts) == 4:
            if not parts[3].isdigit():
                raise InvalidInput(f"MLAAS_API_KEYS: key {name!r} has a rate limit that is not a whole number")
            per_minute = int(parts[3])
        scopes = frozenset(s for s in scopes_text.split("+") if s)
        if not scopes or scopes - set(SCOPES):
            raise InvalidInput(f"MLAAS_API_KEYS: key {name!r} has scopes outside {', '.join(SCOPES)}")
        try:
            raw = bytes.fromhex(digest)
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise InvalidInput(f"MLAAS_API_KEYS: key {name!r} needs a 64-character hex SHA-256")
        keys.append(ApiKey(name, scopes, raw, per_minute))
    return keys


def identify(keys: list[ApiKey], presented: str) -> ApiKey | None:
    """The key whose hash matches, compared in constant time against every configured key."""
    digest = hashlib.sha256(presented.encode()).digest()
    found = None
    for key in keys:
        if hmac.compare_digest(digest, key.digest):
            found = key
    return found


def main(argv: list[str] | None = None) -> int:
    """``python -m mlaas.auth NAME [SCOPE ...]``: print a new key and its MLAAS_API_KEYS entry."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if not args or args[0].startswith("-"):
        print("usage: python -m mlaas.auth NAME [predict] [jobs] [promote] [admin] [feedback]", file=sys.stderr)
        return 2
    key, entry = generate_key(args[0], tuple(args[1:]) or SCOPES)
    print(f"key (give it to the caller; it is not stored anywhere): {key}")
    print(f"MLAAS_API_KEYS entry: {entry}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
