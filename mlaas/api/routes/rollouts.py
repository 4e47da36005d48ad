"""Rollouts: a candidate version in shadow or on a canary share, compared with production (admin scope)."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from flask import current_app
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel

from mlaas.api.routes.common import ctx
from mlaas.api.routes.models import actor
from mlaas.api.schemas import SECURITY, ErrorBody, ModelPath
from mlaas.api.schemas.rollouts import RolloutStatus
from mlaas.inference.server import Server
from mlaas.rollouts import service
from mlaas.rollouts.specs import RolloutPromoteSpec, RolloutSpec

bp = APIBlueprint("rollouts", __name__, abp_tags=[
    Tag(name="rollouts", description="Shadow and canary rollouts of a candidate version")
], abp_security=SECURITY)
_ANSWERS: dict[str | int | HTTPStatus, type[BaseModel] | dict[Any, Any] | None] = {
    200: RolloutStatus, 404: ErrorBody, 409: ErrorBody, 503: ErrorBody}


def _changed(name: str) -> None:
    """This process reads the new state at once (other replicas within MLAAS_RESOLVE_TTL_SECONDS)."""
    server: Server = current_app.config["MLAAS_SERVER"]
    server.rollouts.forget(name)


@bp.post("/models/<name>/rollout", responses=_ANSWERS)
def start(path: ModelPath, body: RolloutSpec) -> dict[str, Any]:
    """Start a shadow or canary rollout of a candidate version, or change the running one's mode, weight or guard."""
    out = service.start(path.name, body, ctx=ctx(), actor=actor())
    _changed(path.name)
    return out


@bp.get("/models/<name>/rollout", responses=_ANSWERS)
def get(path: ModelPath) -> dict[str, Any]:
    """The rollout (active, else the last ended) and how the candidate compares with production."""
    return service.status(path.name, ctx=ctx())


@bp.delete("/models/<name>/rollout", responses=_ANSWERS)
def end(path: ModelPath) -> dict[str, Any]:
    """End the active rollout: production answers every request again."""
    out = service.end(path.name, ctx=ctx(), actor=actor(), reason="ended by request")
    _changed(path.name)
    return out


@bp.post("/models/<name>/rollout/promote", responses=_ANSWERS)
def promote(path: ModelPath, body: RolloutPromoteSpec) -> dict[str, Any]:
    """Promote the candidate (through the promotion gate unless require_better is false) and end the rollout."""
    out = service.promote(path.name, body, ctx=ctx(), actor=actor())
    _changed(path.name)
    return out
