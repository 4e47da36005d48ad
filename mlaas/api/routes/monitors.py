"""Scheduled drift monitors: CRUD under /monitors."""

from __future__ import annotations

from typing import Any

from flask_openapi3 import APIBlueprint, Tag

from mlaas.adapters.monitorstore import MonitorStore
from mlaas.api.routes.common import ctx
from mlaas.api.schemas import (
    SECURITY,
    ErrorBody,
    Monitor,
    MonitorCreate,
    MonitorFields,
    MonitorList,
    MonitorPath,
    MonitorRunAccepted,
)
from mlaas.monitoring import monitors
from mlaas.queues import MONITOR_CHECK

bp = APIBlueprint("monitors", __name__, abp_tags=[
    Tag(name="monitors", description="Scheduled drift checks")
], abp_security=SECURITY)


def store() -> MonitorStore:
    return ctx().monitors


@bp.get("/monitors", responses={200: MonitorList})
def list_monitors() -> dict[str, Any]:
    """Every monitor with its schedule, actions and last result."""
    return {"monitors": [monitors.public(m) for m in store().all()]}


@bp.post("/monitors", responses={201: Monitor, 400: ErrorBody, 404: ErrorBody, 409: ErrorBody})
def create_monitor(body: MonitorCreate) -> tuple[dict[str, Any], int]:
    """Add a monitor of a model's served traffic."""
    return monitors.public(monitors.create(ctx(), store(), body.model_dump(exclude_none=True))), 201


@bp.get("/monitors/<monitor_id>", responses={200: Monitor, 404: ErrorBody})
def get_monitor(path: MonitorPath) -> dict[str, Any]:
    """One monitor."""
    return monitors.public(store().get(path.monitor_id))


@bp.patch("/monitors/<monitor_id>", responses={200: Monitor, 400: ErrorBody, 404: ErrorBody})
def change_monitor(path: MonitorPath, body: MonitorFields) -> dict[str, Any]:
    """Change a monitor's settings."""
    return monitors.public(monitors.update(ctx(), store(), path.monitor_id, body.model_dump(exclude_unset=True)))


@bp.delete("/monitors/<monitor_id>", responses={204: None, 404: ErrorBody})
def delete_monitor(path: MonitorPath) -> tuple[str, int]:
    """Remove a monitor (a default monitor comes back while its model has a production version)."""
    store().delete(path.monitor_id)
    return "", 204


@bp.post("/monitors/<monitor_id>/run", responses={202: MonitorRunAccepted, 404: ErrorBody, 503: ErrorBody})
def run_monitor(path: MonitorPath) -> tuple[dict[str, Any], int]:
    """Queue a check of this monitor now, outside its schedule."""
    store().get(path.monitor_id)
    ctx().queue.send(MONITOR_CHECK, [path.monitor_id, None])
    return {"monitor": path.monitor_id, "queued": True}, 202
