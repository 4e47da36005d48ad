"""celery beat's schedule: tasks named by the explicit strings of mlaas/queues.py."""

from __future__ import annotations

from typing import Any

from mlaas import queues
from mlaas.settings import Settings


def beat_schedule(settings: Settings) -> dict[str, Any]:
    """Periodic tasks, named by explicit strings; each expires after its interval (a late one is not run twice)."""
    every = {
        "sweep-monitors": (queues.MONITOR_SWEEP, settings.monitor_sweep_seconds),
        "flush-inference-capture": (queues.CAPTURE_FLUSH, settings.capture_flush_seconds),
        "reap-lost-jobs": (queues.REAP_JOBS, settings.job_reaper_seconds),
        "join-feedback": (queues.FEEDBACK_JOIN, settings.feedback_join_seconds),
    }
    return {name: {"task": task, "schedule": seconds, "options": {"expires": seconds}}
            for name, (task, seconds) in every.items()}
