"""Prometheus metrics. Correct under gunicorn's and Celery's worker processes (multiprocess mode).

The process that forks (gunicorn's master, Celery's main process) must set PROMETHEUS_MULTIPROC_DIR
before this module is imported: ``mlaas.process.configure_process(settings, metrics_dir=True)``, called by
``mlaas/api/gunicorn_conf.py`` and ``worker/celery_app.py``, does.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client import start_http_server as _start_http_server

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
JOB_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)

REQUESTS = Counter("mlaas_http_requests_total", "HTTP requests", ["endpoint", "method", "status"])
LATENCY = Histogram("mlaas_http_request_duration_seconds", "HTTP request latency", ["endpoint", "method", "status"],
                    buckets=LATENCY_BUCKETS)
PREDICTIONS = Counter("mlaas_predictions_total", "Rows scored", ["model", "version"])
SCORED = Counter("mlaas_inference_path_total", "Inference requests by the path that scored them (compiled, "
                 "fallback: rows the compiled model could not take, sklearn: no compiled model)",
                 ["model", "version", "path"])
MODEL_LOADS = Histogram("mlaas_model_load_seconds", "Time to load a model version", ["model", "version"],
                        buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30))
CACHE = Counter("mlaas_model_cache_total", "Model cache lookups", ["result"])
JOBS = Counter("mlaas_jobs_total", "Jobs that reached a state", ["type", "state"])
JOB_SECONDS = Histogram("mlaas_job_duration_seconds", "Job run time", ["type", "state"], buckets=JOB_BUCKETS)
DRIFT_COLUMN = Gauge("mlaas_drift_column_drifted", "Last drift verdict of a column (1 drifted)",
                     ["model", "column"], multiprocess_mode="mostrecent")
DRIFT_DATASET = Gauge("mlaas_drift_dataset_drifted", "Last dataset drift verdict (1 drifted)", ["model"],
                      multiprocess_mode="mostrecent")
CAPTURE_DROPPED = Counter("mlaas_capture_dropped_rows_total", "Inference rows not captured", ["model", "reason"])


def multiprocess_enabled() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def exposition() -> bytes:
    """Every process's metrics (multiprocess mode) or this process's, in the text format."""
    if multiprocess_enabled():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest()


def mark_process_dead(pid: int) -> None:
    if multiprocess_enabled():
        multiprocess.mark_process_dead(pid)


def serve(port: int) -> None:
    """Expose metrics on their own port (Celery workers)."""
    if multiprocess_enabled():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        _start_http_server(port, addr="0.0.0.0", registry=registry)
    else:
        _start_http_server(port, addr="0.0.0.0")


def request_done(endpoint: str, method: str, status: int, seconds: float) -> None:
    labels = (endpoint, method, str(status))
    REQUESTS.labels(*labels).inc()
    LATENCY.labels(*labels).observe(seconds)


def predicted(model: str, version: int, rows: int, path: str = "sklearn") -> None:
    PREDICTIONS.labels(model, str(version)).inc(rows)
    SCORED.labels(model, str(version), path).inc()


def model_loaded(model: str, version: int, seconds: float) -> None:
    MODEL_LOADS.labels(model, str(version)).observe(seconds)


def cache_lookup(hit: bool) -> None:
    CACHE.labels("hit" if hit else "miss").inc()


def job_finished(job_type: str, state: str, seconds: float | None) -> None:
    JOBS.labels(job_type, state).inc()
    if seconds is not None:
        JOB_SECONDS.labels(job_type, state).observe(seconds)


def drift_verdict(model: str, dataset_drift: bool, columns: dict[str, bool]) -> None:
    DRIFT_DATASET.labels(model).set(float(dataset_drift))
    for column, drifted in columns.items():
        DRIFT_COLUMN.labels(model, column).set(float(drifted))


def capture_dropped(model: str, reason: str, rows: int) -> None:
    CAPTURE_DROPPED.labels(model, reason).inc(rows)
