"""One table from error code to HTTP status, and one JSON error body for every failure."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify, request
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from mlaas.errors import MlaasError

log = logging.getLogger(__name__)

ERROR_CODE_TO_HTTP_STATUS = {
    "invalid_input": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "conflict": 409,
    "too_large": 413,
    "unsupported_media_type": 415,
    "rate_limited": 429,
    "internal": 500,
    "unavailable": 503,
}
_HTTP_TO_CODE = {
    400: "invalid_input", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
    409: "conflict", 413: "too_large", 415: "unsupported_media_type", 429: "rate_limited", 503: "unavailable",
}
_TITLES = {
    "invalid_input": "Invalid input", "unauthorized": "Unauthorized", "forbidden": "Forbidden",
    "not_found": "Not found", "method_not_allowed": "Method not allowed", "conflict": "Conflict",
    "too_large": "Payload too large", "unsupported_media_type": "Unsupported media type",
    "rate_limited": "Too many requests", "internal": "Internal error", "unavailable": "Service unavailable",
}


def error_response(code: str, message: str, details: dict[str, Any] | None = None) -> Response:
    """The one error body: ``{"code", "message", "status", "title"[, "details"]}`` as problem+json."""
    status = ERROR_CODE_TO_HTTP_STATUS.get(code, 500)
    body: dict[str, Any] = {"code": code, "message": message, "status": status, "title": _TITLES.get(code, code)}
    if details:
        body["details"] = details
    response = jsonify(body)
    response.status_code = status
    response.mimetype = "application/problem+json"
    return response


def validation_error_response(exc: ValidationError) -> Response:
    """Turn a pydantic validation error into a 400 naming each field and problem."""
    if request.method in ("POST", "PUT", "PATCH") and request.data and request.get_json(silent=True) is None:
        return error_response("invalid_input", "the request body is not valid JSON (Content-Type: application/json; "
                                               "null for missing values, no NaN or other non-finite numbers)")
    problems = []
    for err in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in err["loc"]) or "body"
        problems.append({"field": where, "problem": err["msg"]})
    message = "; ".join(f"{p['field']}: {p['problem']}" for p in problems[:10])
    return error_response("invalid_input", message, {"errors": problems[:50]})


def register_error_handlers(app: Flask) -> None:
    """Serialise every error, Flask's own and unexpected ones included, to the same body."""

    @app.errorhandler(MlaasError)
    def _mlaas(exc: MlaasError) -> Response:
        if exc.code == "internal":
            log.error("internal error: %s", exc.message)
        return error_response(exc.code, exc.message, exc.details or None)

    @app.errorhandler(ValidationError)
    def _validation(exc: ValidationError) -> Response:
        return validation_error_response(exc)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        status = exc.code or 500
        code = _HTTP_TO_CODE.get(status, "internal" if status >= 500 else "invalid_input")
        message = exc.description or _TITLES.get(code, "error")
        if status == 413:
            message = f"the request body is larger than {request.max_content_length} bytes"
        response = error_response(code, message)
        if status == 405 and isinstance(exc.valid_methods, list | tuple | set):  # type: ignore[attr-defined]
            response.headers["Allow"] = ", ".join(sorted(exc.valid_methods))  # type: ignore[attr-defined]
        response.status_code = status
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response("internal", "an unexpected error occurred; it has been logged")
