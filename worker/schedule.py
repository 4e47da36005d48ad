"""celery beat's schedule: tasks named by explicit strings."""

from __future__ import annotations

from typing import Any

from mlaas.settings import Settings


def beat_schedule(settings: Settings) -> dict[str, Any]:
    """Periodic tasks. Monitor sweeps and capture flushes are added with the features that need them."""
    return {}
