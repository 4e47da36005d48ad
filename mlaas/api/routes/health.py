"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from flask import Response, current_app
from flask_openapi3 import APIBlueprint, Tag

from mlaas.api.errors import error_response
from mlaas.api.schemas import ErrorBody, Health, Readiness
from mlaas.health import check_dependencies

bp = APIBlueprint("health", __name__, abp_tags=[Tag(name="health", description="For orchestrators")])


@bp.get("/health", responses={200: Health})
def health_get() -> dict[str, str]:
    """Liveness: 200 while the process is up."""
    return {"status": "ok"}


@bp.post("/health", responses={200: Health})
def health_post() -> dict[str, str]:
    """Liveness: 200 while the process is up."""
    return {"status": "ok"}


@bp.get("/ready", responses={200: Readiness, 503: ErrorBody})
def ready() -> Response | dict[str, Any]:
    """Readiness: 200 only when Redis, MLflow and S3 answer; else 503 naming what is down."""
    checks = check_dependencies(current_app.config["MLAAS_CONTEXT"])
    down = sorted(name for name, state in checks.items() if state != "ok")
    if down:
        return error_response("unavailable", f"not ready: {', '.join(down)} unavailable",
                              {"checks": checks, "dependency": ",".join(down)})
    return {"status": "ready", "checks": checks}
