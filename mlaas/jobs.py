"""Submitting jobs and running them: the lifecycle every job kind shares."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from mlaas import queues
from mlaas.adapters import telemetry
from mlaas.adapters.jobstore import TERMINAL
from mlaas.context import Context
from mlaas.drift.specs import DriftSpec
from mlaas.errors import Cancelled, Conflict, InvalidInput, MlaasError, Unavailable
from mlaas.logs import log_context
from mlaas.training.specs import EvaluateJob, TrainJob

log = logging.getLogger(__name__)

TASK_FOR_TYPE = queues.TASK_FOR_JOB_TYPE
TYPE_OF_SPEC: dict[type[BaseModel], str] = {TrainJob: "train", EvaluateJob: "evaluate", DriftSpec: "drift"}
JobSpec = TrainJob | EvaluateJob | DriftSpec
S = TypeVar("S", bound=BaseModel)
S_in = TypeVar("S_in", bound=BaseModel, contravariant=True)
Steps = Callable[[str, int], None]


def submit(
    job: JobSpec, *, ctx: Context, idempotency_key: str | None = None, request_id: str = ""
) -> tuple[dict[str, Any], bool]:
    """Record a queued job and publish it; returns (job, created). The same idempotency key gives the same job."""
    job_type = TYPE_OF_SPEC[type(job)]
    record, created = ctx.jobs.create(job_type, params_of(job), idempotency_key=idempotency_key,
                                      request_id=request_id)
    if not created:
        return record, False
    try:
        ctx.queue.submit(TASK_FOR_TYPE[job_type], record["job_id"])
    except Unavailable:
        # answered 503: nothing was created, so the client retries (with its Idempotency-Key) and gets a job
        with contextlib.suppress(MlaasError):
            ctx.jobs.withdraw(record["job_id"], job_type, idempotency_key)
        raise
    return record, True


def params_of(job: JobSpec) -> dict[str, Any]:
    """The JSON params a job record keeps (the worker rebuilds the spec from them)."""
    return job.model_dump(mode="json", exclude_none=isinstance(job, DriftSpec))


def get(job_id: str, *, ctx: Context) -> dict[str, Any]:
    """A job's record: state, progress, result or error, and its transitions (404 for an unknown id)."""
    return ctx.jobs.get(job_id)


def listing(*, ctx: Context, job_type: str | None = None, state: str | None = None, limit: int = 50,
            offset: int = 0) -> dict[str, Any]:
    """One page of recent jobs, newest first, with the total that match."""
    page, total = ctx.jobs.list(job_type=job_type, state=state, limit=limit, offset=offset)
    return {"jobs": page, "total": total, "limit": limit, "offset": offset}


def cancel(job_id: str, *, ctx: Context) -> dict[str, Any]:
    """Cancel a queued or running job; a running one stops at its next progress step."""
    try:
        ctx.jobs.transition(job_id, "cancelled", allowed_from=("queued", "running"))
    except Conflict:
        state = ctx.jobs.state(job_id)
        raise Conflict(f"job {job_id} is already {state}") from None
    return ctx.jobs.get(job_id)


class Progress:
    """Reports named steps of a running job and stops it when it was cancelled."""

    def __init__(self, job_id: str, *, ctx: Context) -> None:
        self.ctx = ctx
        self.job_id = job_id

    def __call__(self, step: str, percent: int) -> None:
        if self.ctx.jobs.state(self.job_id) == "cancelled":
            raise Cancelled(f"job {self.job_id} was cancelled")
        self.ctx.jobs.set_progress(self.job_id, step, percent)


Handler = Callable[[str, dict[str, Any], Progress], dict[str, Any]]


class Service(Protocol[S_in]):
    """A job's service function: ``run(spec, *, ctx, job_id, progress)``."""

    def __call__(self, job: S_in, /, *, ctx: Context, job_id: str, progress: Steps) -> dict[str, Any]: ...


def service_handler(service: Service[S], spec: type[S], *, ctx: Context) -> Handler:
    """A handler that rebuilds the service's spec from the job record's params, then runs the service."""
    def handle(job_id: str, params: dict[str, Any], progress: Progress) -> dict[str, Any]:
        try:
            job = spec.model_validate(params)
        except ValueError as exc:
            raise InvalidInput(f"job {job_id} has parameters this version cannot read: {exc}") from None
        return service(job, ctx=ctx, job_id=job_id, progress=progress)

    return handle


def run(job_id: str, handler: Handler, *, ctx: Context, final_attempt: bool = True) -> str:
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
        state = _execute(job_id, job["params"], handler, ctx=ctx, final_attempt=final_attempt)
    telemetry.job_finished(job["type"], state, time.monotonic() - started)
    return state


def _execute(job_id: str, params: dict[str, Any], handler: Handler, *, ctx: Context, final_attempt: bool) -> str:
    try:
        result = handler(job_id, params, Progress(job_id, ctx=ctx))
    except Cancelled:
        log.info("job %s cancelled", job_id)
        return "cancelled"
    except Unavailable as exc:
        if not final_attempt:
            raise
        return _fail(job_id, exc, ctx=ctx)
    except MlaasError as exc:
        return _fail(job_id, exc, ctx=ctx)
    except Exception:
        log.exception("job %s failed unexpectedly", job_id)
        return _fail(job_id, MlaasError(f"the job failed unexpectedly; see the worker log for job {job_id}"), ctx=ctx)
    try:
        ctx.jobs.transition(job_id, "succeeded", allowed_from=("running",), result=result,
                            progress={"step": "done", "percent": 100})
    except Conflict:
        return ctx.jobs.state(job_id) or "missing"
    log.info("job %s succeeded", job_id)
    return "succeeded"


def _fail(job_id: str, exc: MlaasError, *, ctx: Context) -> str:
    try:
        ctx.jobs.transition(job_id, "failed", allowed_from=("running",), error=exc.to_dict())
    except Conflict:
        return ctx.jobs.state(job_id) or "missing"
    return "failed"
