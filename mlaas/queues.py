"""Celery task names and queues, in one place: the API sends these names, the worker registers them."""

from __future__ import annotations

TRAIN = "mlaas.train"
EVALUATE = "mlaas.evaluate"
DRIFT = "mlaas.drift"
MONITOR_SWEEP = "mlaas.monitor_sweep"
CAPTURE_FLUSH = "mlaas.capture_flush"
MONITOR_CHECK = "mlaas.monitor_check"
REAP_JOBS = "mlaas.reap_jobs"
BATCH = "mlaas.batch_inference"
ROLLOUT_SCORE = "mlaas.rollout_score"
FEEDBACK = "mlaas.feedback"  # a bulk feedback job (a dataset of outcomes)
FEEDBACK_JOIN = "mlaas.feedback_join"  # join outcomes to captured predictions: one model, or all ([])

TRAIN_QUEUE = "train"
EVALUATE_QUEUE = "evaluate"
DRIFT_QUEUE = "drift"  # users' drift jobs
HOUSEKEEPING_QUEUE = "housekeeping"  # beat's periodic tasks and monitor checks: never behind users' jobs
DEFAULT_QUEUE = DRIFT_QUEUE

# Task name -> queue. The API never imports the worker: it sends these names.
TASK_QUEUES: dict[str, str] = {
    TRAIN: TRAIN_QUEUE,
    EVALUATE: EVALUATE_QUEUE,
    DRIFT: DRIFT_QUEUE,
    MONITOR_SWEEP: HOUSEKEEPING_QUEUE,
    CAPTURE_FLUSH: HOUSEKEEPING_QUEUE,
    MONITOR_CHECK: HOUSEKEEPING_QUEUE,
    REAP_JOBS: HOUSEKEEPING_QUEUE,
    BATCH: EVALUATE_QUEUE,  # scoring jobs share the evaluation workers (and their deployments)
    ROLLOUT_SCORE: HOUSEKEEPING_QUEUE,
    FEEDBACK: DRIFT_QUEUE,
    FEEDBACK_JOIN: HOUSEKEEPING_QUEUE,
}
QUEUES: tuple[str, ...] = tuple(dict.fromkeys(TASK_QUEUES.values()))

# Job type (POST /train, /evaluate, /data-drift) -> the task that runs it.
TASK_FOR_JOB_TYPE: dict[str, str] = {"train": TRAIN, "evaluate": EVALUATE, "drift": DRIFT, "batch": BATCH,
                                     "feedback": FEEDBACK}
