"""Thin Celery tasks: take a job id, build the context once per process, call a service."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task
from celery.exceptions import Reject

from mlaas import jobs
from mlaas.adapters.capture_buffer import CaptureBuffer
from mlaas.adapters.jobstore import JobStore, PatientJobStore
from mlaas.context import Context
from mlaas.drift import adhoc
from mlaas.drift.specs import DriftSpec
from mlaas.errors import MlaasError, Unavailable
from mlaas.monitoring import housekeeping, monitors
from mlaas.training import evaluation, retrain
from mlaas.training.specs import EvaluateJob, TrainJob
from worker.celery_app import app, settings

log = logging.getLogger(__name__)
_context: Context | None = None
_buffer: CaptureBuffer | None = None
MAX_RETRIES = 3


def context() -> Context:
    """The worker process's context, created after the fork on first use; its job store waits out Redis."""
    global _context
    if _context is None:
        _context = Context(settings, {"jobs": PatientJobStore(JobStore(settings), settings.job_redis_wait_seconds)})
    return _context


def buffer() -> CaptureBuffer:
    """The worker process's capture buffer client."""
    global _buffer
    if _buffer is None:
        _buffer = CaptureBuffer(settings)
    return _buffer


def _retry(task: Task, job: str, countdown: float, max_retries: int) -> Exception:
    """Celery's retry, except that a retry the broker refuses leaves the message for redelivery.

    ``Task.retry`` publishes a new message; when Redis (the broker) is down that fails, and Celery then
    rejects the running message without requeueing it (and records a failure). Rejecting with requeue
    instead puts the message back, or, with Redis still away, leaves it unacknowledged, so Redis hands
    it out again after the visibility timeout, as for a worker that died.
    """
    try:
        return task.retry(countdown=countdown, max_retries=max_retries)
    except Reject as refused:
        log.warning("%s: the broker did not take the retry (%s); the message is left for redelivery",
                    job, refused.reason)
        return Reject(refused.reason, requeue=True)


def _run_job(task: Task, job_id: str, handler: jobs.Handler) -> str:
    final = task.request.retries >= MAX_RETRIES
    try:
        return jobs.run(job_id, handler, ctx=context(), final_attempt=final)
    except Unavailable as exc:
        log.warning("job %s: %s; retry %d of %d", job_id, exc.message, task.request.retries + 1, MAX_RETRIES)
        raise _retry(task, f"job {job_id}", countdown=min(2 ** task.request.retries * 2, 30),
                     max_retries=MAX_RETRIES) from None


@app.task(name="mlaas.train", bind=True)
def train(self: Task, job_id: str) -> str:
    """Retrain a registered model (see mlaas.training.retrain)."""
    return _run_job(self, job_id, jobs.service_handler(retrain.run, TrainJob, ctx=context()))


@app.task(name="mlaas.evaluate", bind=True)
def evaluate(self: Task, job_id: str) -> str:
    """Evaluate a model version on a test set (see mlaas.training.evaluation)."""
    return _run_job(self, job_id, jobs.service_handler(evaluation.run, EvaluateJob, ctx=context()))


@app.task(name="mlaas.drift", bind=True)
def drift(self: Task, job_id: str) -> str:
    """Compare two data sets (see mlaas.drift.adhoc)."""
    return _run_job(self, job_id, jobs.service_handler(adhoc.run, DriftSpec, ctx=context()))


@app.task(name="mlaas.capture_flush", bind=True, max_retries=0)
def capture_flush(self: Task) -> dict[str, Any]:
    """Write buffered inference rows to Parquet and queue the monitor checks that are due."""
    return housekeeping.flush_all(context(), buffer(), context().monitors)


@app.task(name="mlaas.monitor_sweep", bind=True, max_retries=0)
def monitor_sweep(self: Task) -> list[dict[str, Any]]:
    """Queue one check per due monitor (each due time once)."""
    return monitors.sweep(ctx=context())


@app.task(name="mlaas.monitor_check", bind=True)
def monitor_check(self: Task, monitor_id: str, due: str | None = None) -> dict[str, Any]:
    """Check a monitor's captured rows against the baseline (logs ``infer_{timestamp}``), act on drift."""
    try:
        return monitors.run_check(monitor_id, due, ctx=context(), buffer=buffer())
    except Unavailable as exc:
        raise _retry(self, f"monitor {monitor_id}", countdown=30, max_retries=3) from exc
    except MlaasError as exc:
        log.warning("monitor %s check failed: %s", monitor_id, exc.message)
        return {"monitor": monitor_id, "checked": False, "error": exc.to_dict()}
