"""One error hierarchy with transport-neutral codes. Each class carries its code, HTTP status and title here, and
only here: the API's handlers, the OpenAPI error responses, gunicorn's fallback page and the client derive from it.
"""

from __future__ import annotations

from typing import Any, ClassVar


class MlaasError(Exception):
    """Base of every error mlaas reports to a caller."""

    code: ClassVar[str] = "internal"
    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"
    description: ClassVar[str] = "Unexpected error"  # what the status means, for the OpenAPI document

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            out["details"] = self.details
        return out


class InvalidInput(MlaasError):
    code, status, title, description = "invalid_input", 400, "Invalid input", "Invalid input"


class Unauthorized(MlaasError):
    code, status, title, description = "unauthorized", 401, "Unauthorized", "No valid API key"


class Forbidden(MlaasError):
    code, status, title, description = "forbidden", 403, "Forbidden", "The key lacks the scope"


class NotFound(MlaasError):
    code, status, title, description = "not_found", 404, "Not found", "Unknown model, version, job or object"


class MethodNotAllowed(MlaasError):
    code, status, title, description = "method_not_allowed", 405, "Method not allowed", "Method not allowed"


class Conflict(MlaasError):
    code, status, title, description = "conflict", 409, "Conflict", "Conflicts with what is stored"


class Cancelled(MlaasError):
    """A job stopped because its caller cancelled it."""

    code, status, title, description = "cancelled", 409, "Cancelled", "The job was cancelled"


class TooLarge(MlaasError):
    code, status, title, description = "too_large", 413, "Payload too large", "Payload too large"


class UnsupportedMediaType(MlaasError):
    code, status, title, description = ("unsupported_media_type", 415, "Unsupported media type",
                                        "Unsupported media type")


class RateLimited(MlaasError):
    code, status, title, description = "rate_limited", 429, "Too many requests", "Rate limit exceeded"


class Internal(MlaasError):
    code, status, title, description = "internal", 500, "Internal error", "Unexpected error"


class IdempotencyKeyReused(MlaasError):
    """An Idempotency-Key sent again with another body (422, as the IETF Idempotency-Key draft says)."""

    code, status, title, description = ("idempotency_key_reused", 422, "Idempotency key reused",
                                        "The Idempotency-Key was used with a different request body")


class Unavailable(MlaasError):
    """A dependency (redis, mlflow, s3) does not answer."""

    code, status, title, description = ("unavailable", 503, "Service unavailable",
                                        "A dependency (redis, mlflow, storage) is down")

    def __init__(self, dependency: str, message: str | None = None) -> None:
        super().__init__(message or f"{dependency} is unavailable", details={"dependency": dependency})
        self.dependency = dependency


class WorkerLost(MlaasError):
    """A job whose worker died (or stopped answering) on each of its attempts: most likely the job kills it.

    500, not 503: running the same job again is likely to lose a worker again (out of memory, a crash).
    """

    code, status, title, description = ("worker_lost", 500, "Worker lost",
                                        "The job's worker was lost on each of its attempts")


def _all_classes() -> list[type[MlaasError]]:
    found: list[type[MlaasError]] = []
    pending: list[type[MlaasError]] = [MlaasError]
    while pending:
        cls = pending.pop(0)
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


ERRORS: dict[str, type[MlaasError]] = {cls.code: cls for cls in _all_classes() if cls is not MlaasError}
"""Every error code and its class: the one table from code to status and title."""

# Statuses that reach a client from outside the API's handlers (a proxy, gunicorn itself) and the code they mean.
_OTHER_STATUSES = {414: "too_large", 431: "too_large", 502: "unavailable", 504: "unavailable"}


def status_of(code: str) -> int:
    """The HTTP status of an error code (500 for a code that is not in the table)."""
    cls = ERRORS.get(code)
    return cls.status if cls else 500


def title_of(code: str) -> str:
    """The short human title of an error code."""
    cls = ERRORS.get(code)
    return cls.title if cls else code.replace("_", " ").capitalize()


def code_of(status: int) -> str:
    """The error code for an HTTP status: the first class with that status, else by its class (4xx, 5xx)."""
    for cls in ERRORS.values():
        if cls.status == status:
            return cls.code
    return _OTHER_STATUSES.get(status, "internal" if status >= 500 else "invalid_input")


def problem(code: str, message: str, details: dict[str, Any] | None = None,
            status: int | None = None) -> dict[str, Any]:
    """The one error body (RFC 9457 problem+json members plus ``code``): what every error answer carries."""
    status = status or status_of(code)
    body: dict[str, Any] = {"code": code, "message": message, "status": status, "title": title_of(code)}
    if details:
        body["details"] = details
    return body
