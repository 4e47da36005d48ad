"""One error hierarchy with transport-neutral codes; the API maps codes to HTTP statuses."""

from __future__ import annotations

from typing import Any


class MlaasError(Exception):
    """Base of every error mlaas reports to a caller."""

    code = "internal"

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
    code = "invalid_input"


class NotFound(MlaasError):
    code = "not_found"


class Conflict(MlaasError):
    code = "conflict"


class TooLarge(MlaasError):
    code = "too_large"


class UnsupportedMediaType(MlaasError):
    code = "unsupported_media_type"


class Unauthorized(MlaasError):
    code = "unauthorized"


class Forbidden(MlaasError):
    code = "forbidden"


class Unavailable(MlaasError):
    """A dependency (redis, mlflow, s3) does not answer."""

    code = "unavailable"

    def __init__(self, dependency: str, message: str | None = None) -> None:
        super().__init__(message or f"{dependency} is unavailable", details={"dependency": dependency})
        self.dependency = dependency


class Cancelled(MlaasError):
    code = "cancelled"


class Internal(MlaasError):
    code = "internal"
