"""The Celery entry point: ``celery -A worker.celery_app:app worker -Q train``."""

from __future__ import annotations

import os
import tempfile

# Prometheus's multiprocess mode must be chosen before anything imports prometheus_client.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="mlaas-prom-worker-")

from celery.signals import worker_process_shutdown, worker_ready  # noqa: E402

from mlaas.adapters.queue import make_celery  # noqa: E402
from mlaas.logs import configure_logging  # noqa: E402
from mlaas.settings import Settings  # noqa: E402
from worker.schedule import beat_schedule  # noqa: E402

settings = Settings.from_env()
configure_logging(settings.log_level)
app = make_celery(settings, "mlaas-worker")
app.conf.beat_schedule = beat_schedule(settings)
app.conf.include = ["worker.tasks"]


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
