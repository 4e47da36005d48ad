"""Who may call what: API keys with scopes, and per-key rate limits, checked before every route."""

from __future__ import annotations

from flask import Flask, Response, g, request

from mlaas.adapters.ratelimit import RateLimiter
from mlaas.api.errors import error_response
from mlaas.auth import READER, ApiKey, Caller, identify, parse_keys
from mlaas.errors import Forbidden
from mlaas.jobs import SUBMITTER
from mlaas.settings import Settings

# Open to everyone: liveness, readiness and the API's own documentation.
OPEN_BLUEPRINTS = {"openapi", "swagger", "docs"}
OPEN_ENDPOINTS = {"health.health_get", "health.health_post", "health.ready", "openapi_json", "docs_page", "static"}
# Scope a route needs, by blueprint or endpoint (None: any valid key). Anything unlisted needs admin.
SCOPE_BY_BLUEPRINT = {"inference": "predict", "train": "jobs", "jobs": "jobs", "drift": "jobs", "datasets": "jobs",
                      "monitors": "jobs", "batch": "jobs",
                      "feedback": "feedback"}
SCOPE_BY_ENDPOINT = {"models.evaluate": "jobs", "models.list_models": None, "models.get_model": None,
                     "models.get_version": None, "models.promote": "promote", "models.rollback": "promote",
                     "feedback.get_performance": None}
PROMOTE_SCOPE = "promote"
# The console (/ui): its pages take the key from this cookie (set by its login form) and check it like a header.
CONSOLE_BLUEPRINT, CONSOLE_COOKIE = "ui", "mlaas_console"
OPEN_ENDPOINTS |= {"ui.login", "ui.login_post", "ui.logout", "ui.static", "ui.index"}
SCOPE_BY_ENDPOINT |= {"ui.models": None, "ui.model": None, "ui.jobs": "jobs", "ui.report": "jobs"}


def required_scope(endpoint: str) -> str | None:
    if endpoint in SCOPE_BY_ENDPOINT:
        return SCOPE_BY_ENDPOINT[endpoint]
    return SCOPE_BY_BLUEPRINT.get(endpoint.split(".", 1)[0], "admin")


def require_promote(field: str) -> None:
    """Refuse (403) a request that may move the prod alias unless its key has the promote or admin scope."""
    key: ApiKey | None = g.get("api_key")
    if key is not None and not key.allows(PROMOTE_SCOPE):
        raise Forbidden(f"{field}: moving production needs the {PROMOTE_SCOPE!r} scope (or 'admin'), "
                        f"which the key {key.name!r} lacks")


def caller() -> Caller:
    """Who makes this request, for ownership: the key's name, or an admin (also when auth is off)."""
    key: ApiKey | None = g.get("api_key")
    return Caller(key.name, admin=key.is_admin) if key is not None else Caller("anonymous", admin=True)


def presented_key() -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    header_key = request.headers.get("X-API-Key") or None
    if header_key is None and request.blueprint == CONSOLE_BLUEPRINT:
        return request.cookies.get(CONSOLE_COOKIE) or None
    return header_key


def install(app: Flask, settings: Settings) -> None:
    """Check keys, scopes and limits before each request (no-op when auth is switched off)."""
    keys = parse_keys(settings.api_keys)
    limiter = RateLimiter(settings)

    @app.before_request
    def _authorise() -> Response | None:
        endpoint = request.endpoint
        if endpoint is None or endpoint in OPEN_ENDPOINTS or endpoint.split(".", 1)[0] in OPEN_BLUEPRINTS:
            return None
        SUBMITTER.set("")
        READER.set(None)
        if not settings.auth_enabled:
            g.actor, g.key_name, g.admin = "anonymous", "", True
            return None
        presented = presented_key()
        key = identify(keys, presented) if presented else None
        if key is None:
            response = error_response("unauthorized", "a valid API key is required (Authorization: Bearer <key>)"
                                      if presented is None else "the API key is not valid")
            response.headers["WWW-Authenticate"] = 'Bearer realm="mlaas"'
            return response
        scope = required_scope(endpoint)
        if not key.allows(scope):
            return error_response("forbidden", f"the key {key.name!r} lacks the {scope!r} scope for this route")
        g.actor, g.key_name, g.admin = f"key:{key.name}", key.name, "admin" in key.scopes
        g.api_key = key
        SUBMITTER.set(key.name)  # the jobs this request submits are this key's
        READER.set(Caller(key.name, admin=key.is_admin))  # and what they read is checked against its uploads
        limit = key.per_minute if key.per_minute is not None else settings.rate_limit_per_minute
        retry_after = limiter.check(key.name, limit)
        if retry_after is not None:
            response = error_response("rate_limited", f"the key {key.name!r} exceeded {limit} requests per minute")
            response.headers["Retry-After"] = str(retry_after)
            return response
        return None
