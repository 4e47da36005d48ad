"""Jobs: the answer to a submission, a job's status, listing."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from mlaas.api.schemas.common import Query
from mlaas.specs import Doc


class JobAccepted(Doc):
    job_id: str
    """Poll it at status_url"""
    status_url: str
    """GET this for the job status"""
    state: str
    """queued when just created; the current state when an Idempotency-Key matched an existing job"""
    model: str | None = None
    """The model, as resolved"""
    version: int | None = None
    """The concrete version the job is pinned to"""


class JobProgress(Doc):
    step: str
    """Name of the current step (download_data, split, fit, evaluate, register, ...)"""
    percent: int
    """Rough completion, 0-100"""


class JobError(Doc):
    code: str
    message: str
    details: dict[str, Any] | None = None


class JobTransition(Doc):
    state: str
    at: str | None


class JobStatus(Doc):
    job_id: str
    type: str
    """train, evaluate, drift or feedback"""
    state: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    """queued, running, succeeded, failed or cancelled"""
    progress: JobProgress
    params: dict[str, Any]
    """The job's parameters as pinned at submission"""
    result: dict[str, Any] | None = None
    """The result when succeeded"""
    error: JobError | None = None
    """code and message when failed"""
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    updated_at: str | None = None
    request_id: str | None = None
    """X-Request-ID of the request that created the job"""
    attempts: int = 0
    """How many times a worker started it (more than 1 after a redelivery)"""
    history: list[JobTransition] = []
    """Every recorded state transition with its time"""


class JobPath(Doc):
    job_id: str = Field(max_length=64)


class JobListQuery(Query):
    type: Literal["train", "evaluate", "drift", "batch", "feedback"] | None = None
    """Only jobs of this type"""
    state: Literal["queued", "running", "succeeded", "failed", "cancelled"] | None = None
    """Only jobs in this state"""
    limit: int = Field(default=50, ge=1, le=500)
    """Page size"""
    offset: int = Field(default=0, ge=0, le=1_000_000_000)  # an index into Redis sorted sets (64-bit)
    """Jobs to skip (newest first)"""


class JobList(Doc):
    jobs: list[JobStatus]
    total: int
    limit: int
    offset: int
