"""Thin Celery tasks: take a job id, build the context once per process, call a service."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task

from mlaas.context import Context
from mlaas.errors import Unavailable
from mlaas.services import jobs, training
from worker.celery_app import app, settings

log = logging.getLogger(__name__)
_context: Context | None = None
MAX_RETRIES = 3


def context() -> Context:
    """The worker process's context, created after the fork on first use."""
    global _context
    if _context is None:
        _context = Context(settings)
    return _context


def _run_job(task: Task, job_id: str, handler: jobs.Handler) -> str:
    final = task.request.retries >= MAX_RETRIES
    try:
        return jobs.run(context(), job_id, handler, final_attempt=final)
    except Unavailable as exc:
        log.warning("job %s: %s; retry %d of %d", job_id, exc.message, task.request.retries + 1, MAX_RETRIES)
        raise task.retry(countdown=min(2 ** task.request.retries * 2, 30), max_retries=MAX_RETRIES) from None


@app.task(name="mlaas.train", bind=True)
def train(self: Task, job_id: str) -> str:
    """Retrain a registered model (see mlaas.services.training)."""

    def handler(job_id: str, params: dict[str, Any], progress: jobs.Progress) -> dict[str, Any]:
        return training.run(context(), job_id, params, progress)

    return _run_job(self, job_id, handler)
