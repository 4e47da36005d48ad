"""Celery over Redis: the configuration shared by producer and workers, and submission by task name."""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu import Queue
from kombu.exceptions import OperationalError

from mlaas.errors import Unavailable
from mlaas.queues import DEFAULT_QUEUE, QUEUES, TASK_QUEUES
from mlaas.settings import Settings


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings for long ML jobs: late acks, redelivery on worker loss, bounded publish."""
    timeout = settings.broker_publish_timeout
    return {
        "broker_url": settings.redis_url,
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_track_started": False,
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": timeout,
        "broker_transport_options": {
            "visibility_timeout": settings.visibility_timeout,
            # kombu looks for messages of dead workers every interval x throttle seconds (100 s by default):
            # look every fifth of the visibility timeout (at most every minute), so redelivery follows it closely.
            "unacked_restore_interval": max(1, min(60, settings.visibility_timeout // 5)),
            "unacked_restore_throttle": 1,
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "max_retries": 1,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.5,
        },
        "task_publish_retry": True,
        "task_publish_retry_policy": {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5},
        "task_queues": [Queue(name) for name in QUEUES],
        "task_default_queue": DEFAULT_QUEUE,
        "task_routes": {name: {"queue": queue} for name, queue in TASK_QUEUES.items()},
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "worker_hijack_root_logger": False,
        "timezone": "UTC",
        "enable_utc": True,
    }


def make_celery(settings: Settings, name: str = "mlaas") -> Celery:
    """A Celery app configured for mlaas (used by the API to publish and by workers to consume)."""
    app = Celery(name)
    app.conf.update(celery_config(settings))
    return app


class JobQueue:
    """Publish jobs by task name."""

    def __init__(self, settings: Settings, app: Celery | None = None) -> None:
        self.app = app or make_celery(settings, "mlaas-producer")

    def submit(self, task_name: str, job_id: str) -> None:
        """Publish one job; Unavailable('redis') when the broker does not take it within seconds."""
        self.send(task_name, [job_id], task_id=job_id)

    def send(self, task_name: str, args: list[Any], *, task_id: str | None = None) -> None:
        """Publish a task by name to its queue."""
        try:
            self.app.send_task(task_name, args=args, task_id=task_id, queue=TASK_QUEUES[task_name])
        except (OperationalError, OSError, TimeoutError) as exc:
            raise Unavailable("redis", f"redis did not accept the task ({type(exc).__name__})") from None
