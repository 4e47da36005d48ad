"""celery beat's schedule: tasks named by explicit strings."""

from __future__ import annotations

from typing import Any

from mlaas.settings import Settings


def beat_schedule(settings: Settings) -> dict[str, Any]:
    """Periodic tasks, named by explicit strings."""
    return {
        "sweep-monitors": {
            "task": "mlaas.monitor_sweep",
            "schedule": settings.monitor_sweep_seconds,
            "options": {"expires": settings.monitor_sweep_seconds},
        },
        "flush-inference-capture": {
            "task": "mlaas.capture_flush",
            "schedule": settings.capture_flush_seconds,
            "options": {"expires": settings.capture_flush_seconds},
        },
    }
