"""Which version answers a request during a canary: a pure function of the rollout and the request's first row id."""

from __future__ import annotations

import hashlib
from typing import Any

_SCALE = float(2**64)


def bucket(model: str, candidate: int, row_id: Any) -> float:
    """A number in [0, 1), uniform over ids and fixed for a (model, candidate, id): the same id always lands the same.

    Strings and integers hash apart ("7" and 7 are different ids, as the API keeps them).
    """
    kind = "i" if isinstance(row_id, int) and not isinstance(row_id, bool) else "s"
    digest = hashlib.blake2b(f"{model}\x00{candidate}\x00{kind}:{row_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def serves_candidate(model: str, candidate: int, weight: float, row_id: Any) -> bool:
    """Whether the candidate answers; raising the weight keeps every id that went to the candidate there."""
    return bucket(model, candidate, row_id) < weight


def routing_id(ids: list[Any], explicit: list[bool], request_id: str) -> Any:
    """The key a request is routed by: its first row's id when the caller sent one, else the request id."""
    return ids[0] if ids and explicit and explicit[0] else f"request:{request_id}"
