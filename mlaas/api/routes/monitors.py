"""Scheduled drift monitors: CRUD under /monitors."""

from __future__ import annotations

from typing import Any

from flask_openapi3 import APIBlueprint, Tag

from mlaas.api.routes.common import ctx
from mlaas.api.schemas import SECURITY, ErrorBody, Monitor, MonitorList, MonitorPath, MonitorRunAccepted
from mlaas.api.security import caller, require_promote
from mlaas.monitoring import monitors
from mlaas.monitoring.specs import MonitorChanges, MonitorSpec

bp = APIBlueprint("monitors", __name__, abp_tags=[
    Tag(name="monitors", description="Scheduled drift checks")
], abp_security=SECURITY)


def _check_promote(changes: MonitorChanges) -> None:
    """A monitor whose drift retraining promotes moves production: that needs the promote scope."""
    if changes.on_drift and changes.on_drift.retrain and changes.on_drift.retrain.promote:
        require_promote("on_drift.retrain.promote")


@bp.get("/monitors", responses={200: MonitorList})
def list_monitors() -> dict[str, Any]:
    """The caller's monitors (an admin key: every monitor) with schedule, actions, last outcome, next check."""
    return {"monitors": [monitors.public(m) for m in monitors.list_monitors(ctx=ctx(), caller=caller())]}


@bp.post("/monitors", responses={201: Monitor, 400: ErrorBody, 404: ErrorBody, 409: ErrorBody})
def create_monitor(body: MonitorSpec) -> tuple[dict[str, Any], int]:
    """Add a monitor of a model's served traffic, owned by the calling key."""
    _check_promote(body)
    return monitors.public(monitors.create(body, ctx=ctx(), owner=caller().name)), 201


@bp.get("/monitors/<monitor_id>", responses={200: Monitor, 404: ErrorBody})
def get_monitor(path: MonitorPath) -> dict[str, Any]:
    """One monitor."""
    return monitors.public(monitors.get(path.monitor_id, ctx=ctx(), caller=caller()))


@bp.patch("/monitors/<monitor_id>", responses={200: Monitor, 400: ErrorBody, 404: ErrorBody})
def change_monitor(path: MonitorPath, body: MonitorChanges) -> dict[str, Any]:
    """Change a monitor's settings."""
    _check_promote(body)
    return monitors.public(monitors.update(path.monitor_id, body, ctx=ctx(), caller=caller()))


@bp.delete("/monitors/<monitor_id>", responses={204: None, 404: ErrorBody})
def delete_monitor(path: MonitorPath) -> tuple[str, int]:
    """Remove a monitor (a default monitor comes back while its model has a production version)."""
    monitors.delete(path.monitor_id, ctx=ctx(), caller=caller())
    return "", 204


@bp.post("/monitors/<monitor_id>/run", responses={202: MonitorRunAccepted, 404: ErrorBody, 503: ErrorBody})
def run_monitor(path: MonitorPath) -> tuple[dict[str, Any], int]:
    """Queue a check of this monitor now, outside its schedule (also after a failed check)."""
    return monitors.run_now(path.monitor_id, ctx=ctx(), caller=caller()), 202
