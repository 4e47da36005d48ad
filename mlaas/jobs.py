"""Submitting jobs and running them: the lifecycle every job kind shares."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from mlaas import queues
from mlaas.adapters import telemetry
from mlaas.adapters.jobstore import LeaseLost
from mlaas.batch.specs import BatchJob
from mlaas.context import Context
from mlaas.drift.specs import DriftSpec
from mlaas.errors import Cancelled, Conflict, InvalidInput, MlaasError, Unavailable
from mlaas.logs import log_context
from mlaas.quality.specs import FeedbackJob
from mlaas.training.specs import EvaluateJob, TrainJob

log = logging.getLogger(__name__)

TASK_FOR_TYPE = queues.TASK_FOR_JOB_TYPE
TYPE_OF_SPEC: dict[type[BaseModel], str] = {TrainJob: "train", EvaluateJob: "evaluate", DriftSpec: "drift",
                                             BatchJob: "batch", FeedbackJob: "feedback"}
JobSpec = TrainJob | EvaluateJob | DriftSpec | BatchJob | FeedbackJob
S = TypeVar("S", bound=BaseModel)
S_in = TypeVar("S_in", bound=BaseModel, contravariant=True)
Steps = Callable[[str, int], None]
# The API key name that submits jobs in this context ("" outside a request): the API sets it per request.
SUBMITTER: ContextVar[str] = ContextVar("mlaas_job_submitter", default="")


def submit(
    job: JobSpec, *, ctx: Context, idempotency_key: str | None = None, request_id: str = ""
) -> tuple[dict[str, Any], bool]:
    """Record a queued job and publish it; returns (job, created). The same idempotency key gives the same job."""
    job_type, owner = TYPE_OF_SPEC[type(job)], SUBMITTER.get()
    record, created = ctx.jobs.create(job_type, params_of(job), idempotency_key=idempotency_key,
                                      request_id=request_id, owner=owner)
    if not created:
        return record, False
    try:
        ctx.queue.submit(TASK_FOR_TYPE[job_type], record["job_id"])
    except Unavailable:
        # answered 503: nothing was created, so the client retries (with its Idempotency-Key) and gets a job
        with contextlib.suppress(MlaasError):
            ctx.jobs.withdraw(record["job_id"], job_type, idempotency_key, owner)
        raise
    return record, True


def params_of(job: JobSpec) -> dict[str, Any]:
    """The JSON params a job record keeps (the worker rebuilds the spec from them)."""
    return job.model_dump(mode="json", exclude_none=isinstance(job, DriftSpec))


def get(job_id: str, *, ctx: Context, owner: str | None = None) -> dict[str, Any]:
    """A job's record: state, progress, result or error, and its transitions (404 for an unknown id).

    Given an owner, another owner's job is unknown too (None: every job, as for an admin key).
    """
    return ctx.jobs.get(job_id, owner=owner)


def listing(*, ctx: Context, job_type: str | None = None, state: str | None = None, limit: int = 50,
            offset: int = 0, owner: str | None = None) -> dict[str, Any]:
    """One page of recent jobs (of one owner, when given), newest first, with the total that match."""
    page, total = ctx.jobs.list(job_type=job_type, state=state, limit=limit, offset=offset, owner=owner)
    return {"jobs": page, "total": total, "limit": limit, "offset": offset}


def cancel(job_id: str, *, ctx: Context, owner: str | None = None) -> dict[str, Any]:
    """Cancel a queued or running job; a running one stops at its next progress step."""
    ctx.jobs.get(job_id, owner=owner)  # another owner's job is a 404, not a cancellation
    try:
        ctx.jobs.transition(job_id, "cancelled", allowed_from=("queued", "running"))
    except Conflict:
        state = ctx.jobs.state(job_id)
        raise Conflict(f"job {job_id} is already {state}") from None
    return ctx.jobs.get(job_id)


def holder_id(pid: int | None = None) -> str:
    """How a process is named as a lease holder: ``host:pid``."""
    return f"{socket.gethostname()}:{pid or os.getpid()}"


def _dead_here(holder: str | None) -> str:
    """``holder`` when it names a process of this host that is gone (or this process itself), else ''.

    A pool process killed mid-job (out of memory) leaves a live lease; its worker gets the message back at
    once and need not wait for the lease to expire.
    """
    host, _, pid = (holder or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return ""
    if int(pid) == os.getpid():
        return holder or ""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return holder or ""
    except PermissionError:
        return ""
    return ""


class Lease:
    """One attempt's hold on a running job, renewed by a heartbeat thread while the job runs."""

    def __init__(self, job_id: str, attempt: int, holder: str, *, ctx: Context) -> None:
        self.job_id, self.attempt, self.holder, self.ctx = job_id, attempt, holder, ctx
        self.lost = threading.Event()
        self._stop = threading.Event()

    @contextlib.contextmanager
    def heartbeat(self) -> Iterator[Lease]:
        """Renew the lease every MLAAS_JOB_HEARTBEAT_SECONDS for the block, in a thread of its own."""
        thread = threading.Thread(target=self._beat, name=f"lease-{self.job_id}", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()

    def _beat(self) -> None:
        store = self.ctx.jobs.impatient  # a renewal that waited out an outage would come too late anyway
        while not self._stop.wait(self.ctx.settings.job_heartbeat_seconds):
            try:
                if not store.renew(self.job_id, self.attempt, self.holder):
                    log.warning("job %s: attempt %d lost its lease", self.job_id, self.attempt)
                    self.lost.set()
                    return
            except MlaasError as exc:
                log.warning("job %s: lease not renewed (%s)", self.job_id, exc.message)

    def release(self, reason: str) -> None:
        """Give the job back to its queue (state queued) for the next attempt; a Redis away leaves it to expire."""
        self._stop.set()
        with contextlib.suppress(MlaasError):
            self.ctx.jobs.impatient.release(self.job_id, self.holder, reason)


class Progress:
    """Reports named steps of a running attempt; stops it when it was cancelled or lost its lease."""

    def __init__(self, job_id: str, *, ctx: Context, attempt: int) -> None:
        self.ctx = ctx
        self.job_id = job_id
        self.attempt = attempt

    def __call__(self, step: str, percent: int) -> None:
        if self.ctx.jobs.set_progress(self.job_id, step, percent, attempt=self.attempt) == "cancelled":
            raise Cancelled(f"job {self.job_id} was cancelled")


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


def take(job_id: str, *, ctx: Context) -> Lease | str:
    """Take a job for this process as its next attempt; else why not: missing, busy or its final state.

    A redelivered message of a job another worker runs under a live lease is 'busy' (dropped, not run
    twice); a job already finished is left alone.
    """
    holder = holder_id()
    status, value = ctx.jobs.acquire(job_id, holder=holder, dead_holder=_dead_here(ctx.jobs.holder(job_id)))
    if status == "ok":
        return Lease(job_id, int(value), holder, ctx=ctx)
    if status == "missing":
        log.warning("job %s has no record (expired?); skipping", job_id)
        return "missing"
    log.info("job %s is %s; skipping", job_id, f"running in {value}" if status == "busy" else f"already {value}")
    return "busy" if status == "busy" else value


def run(job_id: str, handler: Handler, *, ctx: Context, final_attempt: bool = True) -> str:
    """Run a job once as its next attempt: → running → succeeded or failed. Returns the state it ends in.

    ``Unavailable`` is re-raised (the job queued again) unless this is the final attempt, so the task can
    retry with backoff. (The worker's job store waits for Redis itself: ``PatientJobStore``.) An attempt
    whose lease was taken over stops at its next write, having recorded nothing: 'lost'.
    """
    lease = take(job_id, ctx=ctx)
    if isinstance(lease, str):
        return lease
    job = ctx.jobs.get(job_id)
    started = time.monotonic()
    with log_context(job_id=job_id, request_id=job.get("request_id") or ""), lease.heartbeat():
        state = _execute(lease, job["params"], handler, ctx=ctx, final_attempt=final_attempt)
    telemetry.job_finished(job["type"], state, time.monotonic() - started)
    return state


def _execute(lease: Lease, params: dict[str, Any], handler: Handler, *, ctx: Context, final_attempt: bool) -> str:
    job_id = lease.job_id
    try:
        result = handler(job_id, params, Progress(job_id, ctx=ctx, attempt=lease.attempt))
    except Cancelled:
        log.info("job %s cancelled", job_id)
        return "cancelled"
    except LeaseLost:
        log.warning("job %s: attempt %d was taken over; it stops and records nothing", job_id, lease.attempt)
        return "lost"
    except Unavailable as exc:
        if not final_attempt:
            lease.release(f"retry: {exc.message}")
            raise
        return _finish(lease, "failed", ctx=ctx, error=exc.to_dict())
    except MlaasError as exc:
        return _finish(lease, "failed", ctx=ctx, error=exc.to_dict())
    except Exception:
        log.exception("job %s failed unexpectedly", job_id)
        error = MlaasError(f"the job failed unexpectedly; see the worker log for job {job_id}")
        return _finish(lease, "failed", ctx=ctx, error=error.to_dict())
    state = _finish(lease, "succeeded", ctx=ctx, result=result, progress={"step": "done", "percent": 100})
    if state == "succeeded":
        log.info("job %s succeeded", job_id)
    return state


def _finish(lease: Lease, to: str, *, ctx: Context, **fields: Any) -> str:
    """Record the attempt's outcome, unless the job was cancelled meanwhile or given to another attempt."""
    try:
        ctx.jobs.transition(lease.job_id, to, allowed_from=("running",), attempt=lease.attempt, **fields)
    except Conflict:
        return ctx.jobs.state(lease.job_id) or "missing"
    except LeaseLost:
        log.warning("job %s: attempt %d was taken over; its outcome is not recorded", lease.job_id, lease.attempt)
        return "lost"
    return to


def reap(*, ctx: Context) -> list[dict[str, str]]:
    """Give jobs whose worker was lost (lease expired) to their queue again, or fail them past the attempts.

    The job store moves each job in one script (two reapers never requeue a job twice); the new message is
    published after it. Should that fail, the lost message's visibility timeout is the last resort.
    """
    moved = []
    for job_id, job_type, state in ctx.jobs.reap():
        log.warning("job %s lost its worker; it is now %s", job_id, state)
        if state == "queued":
            try:
                ctx.queue.submit(TASK_FOR_TYPE[job_type], job_id)
            except Unavailable as exc:
                log.warning("job %s not published again (%s): the broker redelivers it later", job_id, exc.message)
        moved.append({"job_id": job_id, "state": state})
    return moved


def requeue_stopped(job_id: str, task_name: str, pid: int, *, ctx: Context) -> bool:
    """A worker stops (SIGTERM) while its pool process ``pid`` runs a job: give the job to the queue at once.

    Returns whether the job was given back (it was still that process's to run).
    """
    if not ctx.jobs.release(job_id, holder_id(pid), "worker_stopped"):
        return False
    ctx.queue.submit(task_name, job_id)
    log.warning("job %s queued again: its worker is stopping", job_id)
    return True
