"""celery beat's schedule: tasks named by the explicit strings of mlaas/queues.py."""

from __future__ import annotations

from typing import Any

from mlaas import queues
from mlaas.settings import Settings


def beat_schedule(settings: Settings) -> dict[str, Any]:
    """Periodic tasks, named by explicit strings."""
    return {
        "sweep-monitors": {
            "task": queues.MONITOR_SWEEP,
            "schedule": settings.monitor_sweep_seconds,
            "options": {"expires": settings.monitor_sweep_seconds},
        },
        "flush-inference-capture": {
            "task": queues.CAPTURE_FLUSH,
            "schedule": settings.capture_flush_seconds,
            "options": {"expires": settings.capture_flush_seconds},
        },
    }
