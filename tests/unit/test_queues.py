"""Task names and queues come from mlaas/queues.py: the worker registers, beat schedules and the API routes the same."""

from __future__ import annotations

from mlaas import queues
from mlaas.adapters.queue import celery_config
from mlaas.settings import Settings


def test_each_task_keeps_its_queue():
    assert queues.TASK_QUEUES == {
        "mlaas.train": "train", "mlaas.evaluate": "evaluate", "mlaas.drift": "drift",
        "mlaas.monitor_sweep": "housekeeping", "mlaas.capture_flush": "housekeeping",
        "mlaas.monitor_check": "housekeeping", "mlaas.reap_jobs": "housekeeping", "mlaas.batch_inference": "evaluate",
        "mlaas.rollout_score": "housekeeping",
        "mlaas.feedback": "drift", "mlaas.feedback_join": "housekeeping",
    }
    assert queues.QUEUES == ("train", "evaluate", "drift", "housekeeping")


def test_routes_cover_every_task_the_worker_registers_and_beat_schedules():
    from worker.celery_app import app
    from worker.schedule import beat_schedule
    from worker.tasks import train  # noqa: F401  (registers the tasks)

    registered = {name for name in app.tasks if name.startswith("mlaas.")}
    assert registered == set(queues.TASK_QUEUES)
    routes = celery_config(Settings())["task_routes"]
    assert {name: route["queue"] for name, route in routes.items()} == queues.TASK_QUEUES
    assert {entry["task"] for entry in beat_schedule(Settings()).values()} <= registered
    assert set(queues.TASK_FOR_JOB_TYPE.values()) <= registered
