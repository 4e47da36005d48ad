"""Thin Celery tasks: take a job id, build the context once per process, call a service."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any

from celery import Task
from celery.exceptions import Reject
from celery.signals import worker_process_init

from mlaas import jobs, queues
from mlaas.adapters.capture_buffer import CaptureBuffer
from mlaas.adapters.jobstore import JobStore, PatientJobStore
from mlaas.batch import service as batch_service
from mlaas.batch.specs import BatchJob
from mlaas.context import Context
from mlaas.drift import adhoc
from mlaas.drift.specs import DriftSpec
from mlaas.errors import MlaasError, Unavailable
from mlaas.inference.cache import ModelCache
from mlaas.monitoring import housekeeping, monitors
from mlaas.quality import feedback, refresh
from mlaas.quality.specs import FeedbackJob
from mlaas.rollouts import scoring as rollout_scoring
from mlaas.settings import Settings
from mlaas.training import evaluation, retrain
from mlaas.training.specs import EvaluateJob, TrainJob
from worker.celery_app import app, settings

log = logging.getLogger(__name__)
MAX_RETRIES = 3


@dataclass(frozen=True)
class WorkerProcess:
    """What a worker process's tasks use; its job store waits out Redis (MLAAS_JOB_REDIS_WAIT_SECONDS)."""

    context: Context
    buffer: CaptureBuffer
    models: ModelCache  # batch jobs load each model once per process, as the API does

    @classmethod
    def build(cls, settings: Settings) -> WorkerProcess:
        """The context and capture buffer client of one worker process."""
        jobs_store = PatientJobStore(JobStore(settings), settings.job_redis_wait_seconds)
        context = Context(settings, {"jobs": jobs_store})
        return cls(context, CaptureBuffer(settings), ModelCache(context))


_PROCESS: dict[str, WorkerProcess] = {}  # the one place it is held: set once per process, after the fork


@worker_process_init.connect
def _start_process(**_: object) -> None:
    """Build this worker process's context after the fork (no connection is shared with the parent)."""
    _PROCESS["current"] = WorkerProcess.build(settings)


def process() -> WorkerProcess:
    """This worker process's context and buffer (built by ``worker_process_init``)."""
    try:
        return _PROCESS["current"]
    except KeyError:
        raise RuntimeError("worker process not initialised: tasks run in a Celery worker process") from None


def context() -> Context:
    """The worker process's context."""
    return process().context


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


@app.task(name=queues.TRAIN, bind=True)
def train(self: Task, job_id: str) -> str:
    """Retrain a registered model (see mlaas.training.retrain)."""
    return _run_job(self, job_id, jobs.service_handler(retrain.run, TrainJob, ctx=context()))


@app.task(name=queues.EVALUATE, bind=True)
def evaluate(self: Task, job_id: str) -> str:
    """Evaluate a model version on a test set (see mlaas.training.evaluation)."""
    return _run_job(self, job_id, jobs.service_handler(evaluation.run, EvaluateJob, ctx=context()))


@app.task(name=queues.DRIFT, bind=True)
def drift(self: Task, job_id: str) -> str:
    """Compare two data sets (see mlaas.drift.adhoc)."""
    return _run_job(self, job_id, jobs.service_handler(adhoc.run, DriftSpec, ctx=context()))


@app.task(name=queues.BATCH, bind=True)
def batch_inference(self: Task, job_id: str) -> str:
    """Score a whole data set into Parquet parts (see mlaas.batch.service)."""
    service = functools.partial(batch_service.run, cache=process().models)
    return _run_job(self, job_id, jobs.service_handler(service, BatchJob, ctx=context()))


@app.task(name=queues.CAPTURE_FLUSH, bind=True, max_retries=0)
def capture_flush(self: Task, helpers: bool = True) -> dict[str, Any]:
    """Write buffered inference rows to Parquet and queue the monitor checks that are due (beat's flush); a
    backlog queues helper flushes (``helpers`` False), which only flush."""
    ctx = context()
    return housekeeping.flush_all(ctx, process().buffer, ctx.monitors if helpers else None, helpers=helpers)


@app.task(name=queues.MONITOR_SWEEP, bind=True, max_retries=0)
def monitor_sweep(self: Task) -> list[dict[str, Any]]:
    """Queue one check per due monitor (each due time once)."""
    return monitors.sweep(ctx=context())


@app.task(name=queues.REAP_JOBS, bind=True, max_retries=0)
def reap_jobs(self: Task) -> list[dict[str, str]]:
    """Queue again (or fail, past MLAAS_JOB_MAX_ATTEMPTS) the running jobs whose worker was lost."""
    return jobs.reap(ctx=context())


@app.task(name=queues.MONITOR_CHECK, bind=True)
def monitor_check(self: Task, monitor_id: str, due: str | None = None) -> dict[str, Any]:
    """Check a monitor's captured rows against the baseline (logs ``infer_{timestamp}``), act on drift."""
    try:
        return monitors.run_check(monitor_id, due, ctx=context(), buffer=process().buffer)
    except Unavailable as exc:
        raise _retry(self, f"monitor {monitor_id}", countdown=30, max_retries=3) from exc
    except MlaasError as exc:
        log.warning("monitor %s check failed: %s", monitor_id, exc.message)
        return {"monitor": monitor_id, "checked": False, "error": exc.to_dict()}


_ROLLOUT_MODELS: dict[str, ModelCache] = {}  # this worker process's loaded models for rollout scoring


@app.task(name=queues.ROLLOUT_SCORE, bind=True, max_retries=0)
def rollout_score(self: Task, model: str, rollout_id: str) -> dict[str, Any]:
    """Score a rollout's queued requests with the version that did not answer them (see mlaas.rollouts.scoring)."""
    if "current" not in _ROLLOUT_MODELS:
        _ROLLOUT_MODELS["current"] = ModelCache(context())
    try:
        return rollout_scoring.drain(model, rollout_id, ctx=context(), cache=_ROLLOUT_MODELS["current"])
    except Unavailable as exc:
        log.warning("rollout %s of %s not scored now: %s", rollout_id, model, exc.message)
        return {"model": model, "rollout": rollout_id, "error": exc.to_dict()}


@app.task(name=queues.FEEDBACK, bind=True)
def feedback_job(self: Task, job_id: str) -> str:
    """Read a dataset of outcomes and join them (see mlaas.quality.feedback)."""
    return _run_job(self, job_id, jobs.service_handler(feedback.run, FeedbackJob, ctx=context()))


@app.task(name=queues.FEEDBACK_JOIN, bind=True, max_retries=0)
def feedback_join(self: Task, model: str | None = None) -> Any:
    """Join outcomes to captured predictions and log changed perf_ windows: one model, or every one (beat)."""
    if model is None:
        return refresh.refresh_all(ctx=context())
    return refresh.refresh(model, ctx=context())
