"""The Celery entry point: ``celery -A worker.celery_app:app worker -Q train``."""

from __future__ import annotations

from mlaas.adapters.queue import make_celery
from mlaas.logs import configure_logging
from mlaas.settings import Settings
from worker.schedule import beat_schedule

settings = Settings.from_env()
configure_logging(settings.log_level)
app = make_celery(settings, "mlaas-worker")
app.conf.beat_schedule = beat_schedule(settings)
app.conf.include = ["worker.tasks"]
