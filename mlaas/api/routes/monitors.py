"""Scheduled drift monitors: CRUD under /monitors."""

from __future__ import annotations

from typing import Any

from flask_openapi3 import APIBlueprint, Tag

from mlaas.api.routes.common import ctx
from mlaas.api.schemas import SECURITY, ErrorBody, Monitor, MonitorList, MonitorPath, MonitorRunAccepted
from mlaas.monitoring import monitors
from mlaas.monitoring.specs import MonitorChanges, MonitorSpec

bp = APIBlueprint("monitors", __name__, abp_tags=[
    Tag(name="monitors", description="Scheduled drift checks")
], abp_security=SECURITY)


@bp.get("/monitors", responses={200: MonitorList})
def list_monitors() -> dict[str, Any]:
    """Every monitor with its schedule, actions, last result or error, and when it checks next."""
    return {"monitors": [monitors.public(m) for m in monitors.list_monitors(ctx=ctx())]}


@bp.post("/monitors", responses={201: Monitor, 400: ErrorBody, 404: ErrorBody, 409: ErrorBody})
def create_monitor(body: MonitorSpec) -> tuple[dict[str, Any], int]:
    """Add a monitor of a model's served traffic."""
    return monitors.public(monitors.create(body, ctx=ctx())), 201


@bp.get("/monitors/<monitor_id>", responses={200: Monitor, 404: ErrorBody})
def get_monitor(path: MonitorPath) -> dict[str, Any]:
    """One monitor."""
    return monitors.public(monitors.get(path.monitor_id, ctx=ctx()))


@bp.patch("/monitors/<monitor_id>", responses={200: Monitor, 400: ErrorBody, 404: ErrorBody})
def change_monitor(path: MonitorPath, body: MonitorChanges) -> dict[str, Any]:
    """Change a monitor's settings."""
    return monitors.public(monitors.update(path.monitor_id, body, ctx=ctx()))


@bp.delete("/monitors/<monitor_id>", responses={204: None, 404: ErrorBody})
def delete_monitor(path: MonitorPath) -> tuple[str, int]:
    """Remove a monitor (a default monitor comes back while its model has a production version)."""
    monitors.delete(path.monitor_id, ctx=ctx())
    return "", 204


@bp.post("/monitors/<monitor_id>/run", responses={202: MonitorRunAccepted, 404: ErrorBody, 503: ErrorBody})
def run_monitor(path: MonitorPath) -> tuple[dict[str, Any], int]:
    """Queue a check of this monitor now, outside its schedule (also after a failed check)."""
    return monitors.run_now(path.monitor_id, ctx=ctx()), 202
