"""The Celery entry point: ``celery -A worker.celery_app:app worker -Q train``.

Importing it only builds the app from the settings (the compose health checks import it every 30 s): the
process set-up runs when a worker or beat starts, and each worker process builds what its tasks use after
the fork (``worker.tasks``).
"""

from __future__ import annotations

import logging
import os

from celery.signals import (
    celeryd_init,
    import_modules,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutting_down,
)

from mlaas.adapters.queue import make_celery
from mlaas.logs import configure_logging
from mlaas.process import configure_process, idle_policy, limit_native_threads, lower_priority
from mlaas.settings import Settings
from worker.schedule import beat_schedule

log = logging.getLogger(__name__)
settings = Settings.from_env()
app = make_celery(settings, "mlaas-worker")
app.conf.beat_schedule = beat_schedule(settings)
app.conf.include = ["worker.tasks"]


@import_modules.connect
def _configure_process(sender: object = None, **_: object) -> None:
    """Worker and beat start: set the process up before the task modules are imported.

    (``worker_init`` and ``beat_init`` come after that import, and the task modules import prometheus_client,
    whose multiprocess mode must be chosen first.)
    """
    if sender is app:
        configure_logging(settings.log_level)
        configure_process(settings, metrics_dir=True)


def _pool_size(options: dict[str, object] | None = None) -> int:
    value = (options or {}).get("concurrency") or app.conf.worker_concurrency
    return int(str(value)) if value else os.cpu_count() or 1  # Celery's own default: one process per core


@celeryd_init.connect
def _limit_threads(options: dict[str, object] | None = None, **_: object) -> None:
    """Worker start, before its pool forks: native thread pools sized for each pool process's share of the cores."""
    app.conf.mlaas_pool_size = _pool_size(options)
    limit_native_threads(settings, app.conf.mlaas_pool_size)


@celeryd_init.connect
def _lower_priority(**_: object) -> None:
    """Worker start, before its pool forks: MLAAS_WORKER_NICE, for the worker and its session (see lower_priority),
    and MLAAS_WORKER_SCHED_IDLE (see idle_policy)."""
    if settings.worker_nice:
        log.info("worker CPU priority lowered to nice %d", lower_priority(settings.worker_nice))
    if settings.worker_sched_idle and idle_policy():
        log.info("worker runs under SCHED_IDLE: any other process preempts it")


@worker_process_init.connect
def _limit_child_threads(**_: object) -> None:
    """Each pool process: resize the pools the parent loaded before the fork (the task modules import numpy)."""
    limit_native_threads(settings, int(app.conf.get("mlaas_pool_size") or _pool_size()))


@worker_ready.connect
def _export_metrics(**_: object) -> None:
    """Serve this worker's job metrics on MLAAS_WORKER_METRICS_PORT (0: not served)."""
    if settings.worker_metrics_port:
        from mlaas.adapters.telemetry import serve

        serve(settings.worker_metrics_port)


@worker_process_shutdown.connect
def _forget_process(pid: int | None = None, **_: object) -> None:
    from mlaas.adapters.telemetry import mark_process_dead

    mark_process_dead(pid or os.getpid())


@worker_shutting_down.connect
def _requeue_running_jobs(**_: object) -> None:
    """SIGTERM (or SIGQUIT): each job this worker runs goes back to its queue at once, then its pool process stops.

    The job's next attempt need not wait for a lease or a visibility timeout; the stopped attempt, its lease
    released, records nothing more. (Runs in the worker's main process, in its signal handler.)
    """
    import signal

    from celery.worker import state

    from mlaas import jobs
    from mlaas.context import Context

    running = [r for r in list(state.active_requests) if r.name in jobs.TASK_FOR_TYPE.values() and r.worker_pid]
    if not running:
        return
    ctx = Context(settings)
    for request in running:
        try:
            if jobs.requeue_stopped(request.id, request.name, request.worker_pid, ctx=ctx):
                os.kill(request.worker_pid, signal.SIGTERM)
        except Exception as exc:  # a stopping worker must stop: the lease expires and the reaper requeues
            log.warning("job %s not queued again at shutdown (%s)", request.id, exc)
