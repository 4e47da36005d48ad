"""Process-wide set-up, done once by each entry point: the app factory, gunicorn's master, Celery worker and beat.

The adapters only use what is set here: MLflow's client reads its tracking URI and HTTP retry settings from
the environment, temp files go to ``MLAAS_TMP_DIR`` (MLflow leaves a folder per model logged or loaded), and
a parent that forks workers gives them one Prometheus multiprocess directory.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile

from mlaas.settings import Settings

METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def configure_process(settings: Settings, *, metrics_dir: bool = False) -> None:
    """Set this process's (and its children's) MLflow client, temp dir and, with ``metrics_dir``, Prometheus dir.

    ``metrics_dir`` is for a process that forks workers (gunicorn's master, Celery's main process) and must
    run before anything imports prometheus_client: the configured ``PROMETHEUS_MULTIPROC_DIR`` is emptied
    of an earlier run's files, or a new one is made.
    """
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(math.ceil(settings.mlflow_timeout)))
    os.environ["MLFLOW_TRACKING_URI"] = settings.mlflow_tracking_uri
    if settings.tmp_dir:
        os.makedirs(settings.tmp_dir, exist_ok=True)
        os.environ["TMPDIR"] = settings.tmp_dir
        tempfile.tempdir = settings.tmp_dir
    if metrics_dir:
        _fresh_metrics_dir()


def _fresh_metrics_dir() -> None:
    path = os.environ.get(METRICS_DIR_VARIABLE)
    if not path:
        os.environ[METRICS_DIR_VARIABLE] = tempfile.mkdtemp(prefix="mlaas-prom-")
        return
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path, exist_ok=True)
