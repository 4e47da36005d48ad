"""The rollouts API: what a rollout's status looks like (the request specs live in mlaas.rollouts.specs)."""

from __future__ import annotations

from typing import Any

from mlaas.specs import Doc


class RolloutArm(Doc):
    requests: int
    """Requests this version answered"""
    rows: int
    errors: int
    """Requests this version failed to score (answering, or off the request path)"""
    error_rate: float | None
    latency: dict[str, Any]
    """Per path (served: answering; background: scoring the other's rows in a worker): mean and bucket bounds"""


class RolloutStatus(Doc):
    id: str
    model: str
    version: int
    """The candidate"""
    production_version: int
    mode: str
    weight: float | None
    guard: dict[str, Any]
    state: str
    """active or ended"""
    started_at: str
    started_by: str
    ended_at: str | None = None
    ended_by: str | None = None
    ended_reason: str | None = None
    queued: int
    """Requests waiting to be scored by the other version"""
    task: str
    production: RolloutArm
    candidate: RolloutArm
    comparison: dict[str, Any]
    """Rows both versions scored: agreement (classification) or mean_abs_diff (regression)"""
    dropped: int
    """Requests not compared (queue full, Redis away, or more rows than a comparison takes)"""
    live_quality: dict[str, Any] | None
