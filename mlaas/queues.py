"""Celery task names and queues, in one place: the API sends these names, the worker registers them."""

from __future__ import annotations

TRAIN = "mlaas.train"
EVALUATE = "mlaas.evaluate"
DRIFT = "mlaas.drift"
MONITOR_SWEEP = "mlaas.monitor_sweep"
CAPTURE_FLUSH = "mlaas.capture_flush"
MONITOR_CHECK = "mlaas.monitor_check"

TRAIN_QUEUE = "train"
EVALUATE_QUEUE = "evaluate"
DRIFT_QUEUE = "drift"  # also the drift checks of monitors and the housekeeping tasks
DEFAULT_QUEUE = DRIFT_QUEUE

# Task name -> queue. The API never imports the worker: it sends these names.
TASK_QUEUES: dict[str, str] = {
    TRAIN: TRAIN_QUEUE,
    EVALUATE: EVALUATE_QUEUE,
    DRIFT: DRIFT_QUEUE,
    MONITOR_SWEEP: DRIFT_QUEUE,
    CAPTURE_FLUSH: DRIFT_QUEUE,
    MONITOR_CHECK: DRIFT_QUEUE,
}
QUEUES: tuple[str, ...] = tuple(dict.fromkeys(TASK_QUEUES.values()))

# Job type (POST /train, /evaluate, /data-drift) -> the task that runs it.
TASK_FOR_JOB_TYPE: dict[str, str] = {"train": TRAIN, "evaluate": EVALUATE, "drift": DRIFT}
