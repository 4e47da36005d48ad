"""One JSON error body for every failure, with statuses and titles from the table in ``mlaas.errors``."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify, request
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from mlaas.errors import MlaasError, code_of, problem, title_of

log = logging.getLogger(__name__)

def error_response(code: str, message: str, details: dict[str, Any] | None = None) -> Response:
    """The one error body: ``{"code", "message", "status", "title"[, "details"]}`` as problem+json."""
    body = problem(code, message, details)
    response = jsonify(body)
    response.status_code = body["status"]
    response.mimetype = "application/problem+json"
    return response


def validation_error_response(exc: ValidationError) -> Response:
    """Turn a pydantic validation error into a 400 naming each field and problem."""
    if request.method in ("POST", "PUT", "PATCH") and request.is_json and request.data and \
            request.get_json(silent=True) is None:
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
        code = code_of(status)
        message = exc.description or title_of(code)
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
