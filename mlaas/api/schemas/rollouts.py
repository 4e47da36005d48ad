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


class RolloutArmQuality(Doc):
    version: int
    n: int
    """Compared rows of this version with an outcome"""
    metrics: dict[str, float]
    """Evaluation's metrics of this version's answers on those rows (as GET /models/<name>/performance)"""
    undefined_metrics: dict[str, str] = {}
    """Metrics left out, with the reason"""


class RolloutLiveQuality(Doc):
    rows_kept: int
    """Compared rows with ids kept with both versions' answers (at most MLAAS_ROLLOUT_QUALITY_ROWS)"""
    rows_without_id: int
    """Compared rows whose request gave no id: feedback cannot name them"""
    rows_not_kept: int
    """Compared rows with ids beyond MLAAS_ROLLOUT_QUALITY_ROWS, or not stored"""
    joined: int
    """Kept rows with an outcome from POST /feedback"""
    production: RolloutArmQuality | None
    candidate: RolloutArmQuality | None
    difference: dict[str, float] | None
    """Candidate minus production, per metric both have"""
    refreshed_at: str | None
    """When the figures were computed (after each join of the model's feedback)"""
    error: str | None = None
    """Why the figures could not be computed (e.g. outcomes that are not numbers for a regression)"""


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
    live_quality: RolloutLiveQuality
    """Each version's realized quality on the compared rows that have feedback"""
