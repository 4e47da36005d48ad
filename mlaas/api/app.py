"""The Flask application factory: ``gunicorn "mlaas.api.app:create_app()"``."""

from __future__ import annotations

import re
import time
import uuid

from flask import Response, g, redirect, request
from flask.json.provider import DefaultJSONProvider
from flask_openapi3 import Info, OpenAPI

import mlaas
from mlaas import logs, specs
from mlaas.adapters import telemetry
from mlaas.api import security
from mlaas.api.errors import register_error_handlers, validation_error_response
from mlaas.api.routes import batch, datasets, drift, health, inference, jobs, models, monitors, prometheus, train
from mlaas.api.routes import feedback as feedback_routes
from mlaas.api.routes import rollouts as rollout_routes
from mlaas.api.schemas import ErrorBody
from mlaas.api.ui import bp as console_bp
from mlaas.context import Context
from mlaas.errors import (
    Forbidden,
    IdempotencyKeyReused,
    Internal,
    InvalidInput,
    RateLimited,
    TooLarge,
    Unauthorized,
    Unavailable,
)
from mlaas.inference.server import Server
from mlaas.logs import configure_logging
from mlaas.monitoring.specs import WEBHOOK_URL_PATTERN
from mlaas.process import configure_process
from mlaas.settings import Settings
from mlaas.uris import MAX_KEY_BYTES

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._\-]{1,128}$")


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


class StrictJSONProvider(DefaultJSONProvider):
    """Standard JSON only, both ways: NaN and Infinity literals, or nesting past the parser's depth, are invalid."""

    def dumps(self, obj: object, **kwargs: object) -> str:
        kwargs.setdefault("allow_nan", False)  # a NaN in an answer is a bug, never a bare NaN token
        return super().dumps(obj, **kwargs)

    def loads(self, s: str | bytes, **kwargs: object) -> object:
        kwargs.setdefault("parse_constant", _refuse_constant)
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("the JSON body is nested too deeply") from None


_ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
# The error answers every operation may give (from the error table); the routes document the others they give.
_ERRORS = {str(cls.status): cls.description for cls in (InvalidInput, Unauthorized, Forbidden, TooLarge, RateLimited,
                                                         Internal, Unavailable)}
_OPEN_PATHS = ("/health", "/ready")


class MlaasOpenAPI(OpenAPI):
    """The generated document, with every error response described as what it is: problem+json ErrorBody."""

    allowed_buckets: tuple[str, ...] = ()
    uri_schemes: tuple[str, ...] = ("s3",)
    webhook_hosts: tuple[str, ...] = ()

    def generate_spec_json(self) -> None:
        super().generate_spec_json()
        if self.allowed_buckets:  # state which buckets this deployment reads: others are refused
            schemes = self.uri_schemes[0] if len(self.uri_schemes) == 1 else f"(?:{'|'.join(self.uri_schemes)})"
            _bucket_uris(self.spec_json, schemes, self.allowed_buckets)
        if self.webhook_hosts:  # state which host:port a webhook may call: others are refused
            hosts = "|".join(re.escape(h) for h in self.webhook_hosts)
            _webhook_urls(self.spec_json, rf"^https?://(?:{hosts})(?:[/?#][\x21-\x7e]*)?$")
        for path, item in self.spec_json["paths"].items():
            for operation in item.values():
                responses = operation.setdefault("responses", {})
                for status, description in _ERRORS.items():
                    if path in _OPEN_PATHS and status in ("401", "403", "429"):
                        continue
                    responses.setdefault(status, {"description": description})
                if any(p.get("in") == "header" and p.get("name") == "Idempotency-Key"
                       for p in operation.get("parameters", [])):
                    responses.setdefault(str(IdempotencyKeyReused.status),
                                         {"description": IdempotencyKeyReused.description})
                for status, response in responses.items():
                    if int(status) >= 400:
                        response["content"] = {"application/problem+json": {"schema": _ERROR_REF}}


def _webhook_urls(node: object, pattern: str) -> None:
    """Replace the generic webhook URL pattern of a JSON document with ``pattern``, in place."""
    if isinstance(node, dict):
        if node.get("pattern") == WEBHOOK_URL_PATTERN:
            node["pattern"] = pattern
        for value in node.values():
            _webhook_urls(value, pattern)
    elif isinstance(node, list):
        for value in node:
            _webhook_urls(value, pattern)


def _bucket_uris(node: object, schemes: str, buckets: tuple[str, ...]) -> None:
    """Make every generic URI schema in a JSON document one alternative per allowed bucket, in place, each with
    the length its bucket leaves a key of at most MAX_KEY_BYTES (keys are ASCII: a byte is a character)."""
    if isinstance(node, dict):
        if node.get("pattern") == specs.S3_URI_PATTERN:
            del node["pattern"]
            lengths = {b: len("s3://") + len(b) + 1 + MAX_KEY_BYTES for b in buckets}
            alternatives = [{"pattern": f"^{schemes}://{re.escape(b)}/{specs.KEY_PATTERN}$", "maxLength": n}
                            for b, n in lengths.items()]
            node["maxLength"] = max(lengths.values())
            node.setdefault("allOf", []).append({"anyOf": alternatives})  # beside any anyOf (string or null)
        elif node.get("pattern") == specs.PREFIX_URI_PATTERN:
            node["pattern"] = f"^{schemes}://" + specs.PREFIX_URI_PATTERN.removeprefix("^s3://")
        for value in node.values():
            _bucket_uris(value, schemes, buckets)
    elif isinstance(node, list):
        for value in node:
            _bucket_uris(value, schemes, buckets)


def create_app(settings: Settings | None = None, context: Context | None = None) -> OpenAPI:
    """Build the API. Settings come from MLAAS_* variables unless given."""
    settings = settings or (context.settings if context else Settings.from_env())
    configure_logging(settings.log_level)
    configure_process(settings)
    app = MlaasOpenAPI(
        __name__,
        info=Info(title="mlaas", version=mlaas.__version__,
                  description="Retrain, serve, evaluate and watch registered MLflow models."),
        validation_error_status=400,
        validation_error_callback=validation_error_response,
        validation_error_model=ErrorBody,
        doc_prefix="/docs",
        doc_url="/openapi.json",
        security_schemes={
            "bearer": {"type": "http", "scheme": "bearer", "description": "An mlaas API key"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        },
    )
    app.allowed_buckets = settings.buckets
    app.uri_schemes = settings.storage_schemes
    app.webhook_hosts = settings.webhook_allowlist
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.config["MLAAS_SETTINGS"] = settings
    app.config["MLAAS_CONTEXT"] = context or Context(settings)
    app.config["MLAAS_SERVER"] = server = Server(app.config["MLAAS_CONTEXT"])
    if settings.warm_models:
        server.warm()
    app.json = StrictJSONProvider(app)
    app.json.sort_keys = False
    register_error_handlers(app)

    @app.before_request
    def _request_id() -> None:
        g.started = time.perf_counter()
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex
        g.log_token = logs.bind(request_id=g.request_id)

    @app.teardown_request
    def _unbind(_: BaseException | None) -> None:
        token = g.pop("log_token", None)
        if token is not None:
            logs.unbind(token)

    security.install(app, settings)
    for blueprint in (health.bp, jobs.bp, train.bp, inference.bp, models.bp, drift.bp, datasets.bp, monitors.bp,
                      prometheus.bp, batch.bp, rollout_routes.bp, feedback_routes.bp):
        app.register_api(blueprint)

    app.register_blueprint(console_bp)  # a plain Blueprint: server-rendered pages, not in the OpenAPI document
    app.add_url_rule("/openapi.json", "openapi_json", lambda: app.api_doc)
    app.add_url_rule("/docs", "docs_page", lambda: redirect("/docs/swagger"))

    @app.after_request
    def _finish(response: Response) -> Response:
        response.headers["X-Request-ID"] = getattr(g, "request_id", "")
        rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
        telemetry.request_done(rule, request.method, response.status_code,
                               time.perf_counter() - getattr(g, "started", time.perf_counter()))
        return response

    return app
