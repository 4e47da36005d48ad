"""Submitting jobs and running them: the lifecycle every job kind shares."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from mlaas import queues
from mlaas.adapters import telemetry
from mlaas.adapters.jobstore import TERMINAL
from mlaas.context import Context
from mlaas.errors import Cancelled, Conflict, MlaasError, Unavailable
from mlaas.logs import log_context

log = logging.getLogger(__name__)

TASK_FOR_TYPE = queues.TASK_FOR_JOB_TYPE


def submit(
    ctx: Context, job_type: str, params: dict[str, Any], *, idempotency_key: str | None = None, request_id: str = ""
) -> tuple[dict[str, Any], bool]:
    """Record a queued job and publish it; returns (job, created). The same idempotency key gives the same job."""
    job, created = ctx.jobs.create(job_type, params, idempotency_key=idempotency_key, request_id=request_id)
    if not created:
        return job, False
    try:
        ctx.queue.submit(TASK_FOR_TYPE[job_type], job["job_id"])
    except Unavailable:
        # answered 503: nothing was created, so the client retries (with its Idempotency-Key) and gets a job
        with contextlib.suppress(MlaasError):
            ctx.jobs.withdraw(job["job_id"], job_type, idempotency_key)
        raise
    return job, True


def cancel(ctx: Context, job_id: str) -> dict[str, Any]:
    """Cancel a queued or running job; a running one stops at its next progress step."""
    try:
        ctx.jobs.transition(job_id, "cancelled", allowed_from=("queued", "running"))
    except Conflict:
        state = ctx.jobs.state(job_id)
        raise Conflict(f"job {job_id} is already {state}") from None
    return ctx.jobs.get(job_id)


class Progress:
    """Reports named steps of a running job and stops it when it was cancelled."""

    def __init__(self, ctx: Context, job_id: str) -> None:
        self.ctx = ctx
        self.job_id = job_id

    def __call__(self, step: str, percent: int) -> None:
        if self.ctx.jobs.state(self.job_id) == "cancelled":
            raise Cancelled(f"job {self.job_id} was cancelled")
        self.ctx.jobs.set_progress(self.job_id, step, percent)


Handler = Callable[[str, dict[str, Any], Progress], dict[str, Any]]


def run(ctx: Context, job_id: str, handler: Handler, *, final_attempt: bool = True) -> str:
    """Run a job once: queued/running → running → succeeded or failed. Returns the state it ends in.

    A job already finished (a redelivered message) is left alone. ``Unavailable`` is re-raised
    unless this is the final attempt, so the task can retry with backoff. (The worker's job store waits
    for Redis itself: ``PatientJobStore``.)
    """
    state = ctx.jobs.state(job_id)
    if state is None:
        log.warning("job %s has no record (expired?); skipping", job_id)
        return "missing"
    if state in TERMINAL:
        log.info("job %s is already %s; skipping", job_id, state)
        return state
    ctx.jobs.transition(job_id, "running", allowed_from=("queued", "running"))
    ctx.jobs.bump_attempts(job_id)
    job = ctx.jobs.get(job_id)
    started = time.monotonic()
    with log_context(job_id=job_id, request_id=job.get("request_id") or ""):
        state = _execute(ctx, job_id, job["params"], handler, final_attempt)
    telemetry.job_finished(job["type"], state, time.monotonic() - started)
    return state


def _execute(ctx: Context, job_id: str, params: dict[str, Any], handler: Handler, final_attempt: bool) -> str:
    try:
        result = handler(job_id, params, Progress(ctx, job_id))
    except Cancelled:
        log.info("job %s cancelled", job_id)
        return "cancelled"
    except Unavailable as exc:
        if not final_attempt:
            raise
        return _fail(ctx, job_id, exc)
    except MlaasError as exc:
        return _fail(ctx, job_id, exc)
    except Exception:
        log.exception("job %s failed unexpectedly", job_id)
        return _fail(ctx, job_id, MlaasError(f"the job failed unexpectedly; see the worker log for job {job_id}"))
    try:
        ctx.jobs.transition(job_id, "succeeded", allowed_from=("running",), result=result,
                            progress={"step": "done", "percent": 100})
    except Conflict:
        return ctx.jobs.state(job_id) or "missing"
    log.info("job %s succeeded", job_id)
    return "succeeded"


def _fail(ctx: Context, job_id: str, exc: MlaasError) -> str:
    try:
        ctx.jobs.transition(job_id, "failed", allowed_from=("running",), error=exc.to_dict())
    except Conflict:
        return ctx.jobs.state(job_id) or "missing"
    return "failed"
