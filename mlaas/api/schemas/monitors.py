"""Monitors: paths and what a monitor looks like (their request bodies live in mlaas.monitoring.specs)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from mlaas.monitoring.specs import MONITOR_ID_PATTERN, CheckError
from mlaas.specs import Doc


class MonitorPath(Doc):
    monitor_id: str = Field(max_length=128, json_schema_extra={"pattern": MONITOR_ID_PATTERN})


class Monitor(Doc):
    id: str
    model: str
    version: int | str | None
    schedule: dict[str, Any]
    window_seconds: int | None
    min_rows: int
    overrides: dict[str, Any]
    drift_share: float
    correction: str | None
    prediction_drift: bool
    on_drift: dict[str, Any]
    enabled: bool
    created_at: str
    owner: str | None = None
    """The key that created the monitor (null: mlaas's default monitor); only it and admin keys see it"""
    last_run_at: str | None = None
    last_due: str | None = None
    last_result: dict[str, Any] | None = Field(default=None, description="The last check that ran")
    last_skip: dict[str, Any] | None = Field(default=None, description="The last check skipped (too few rows)")
    last_error: CheckError | None = None
    """The last check that failed: code, message, when, and the version and baseline it ran against (cleared by
    the next check that runs)"""
    last_retrain_at: str | None = None
    next_check_at: str | None = None
    """When the schedule checks next; null while disabled, or while a failed check waits for a new production
    version or baseline"""


class MonitorList(Doc):
    monitors: list[Monitor]


class MonitorRunAccepted(Doc):
    monitor: str
    queued: bool
