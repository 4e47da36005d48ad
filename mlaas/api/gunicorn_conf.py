"""gunicorn settings for the API: ``gunicorn -c python:mlaas.api.gunicorn_conf "mlaas.api.app:create_app()"``.

Sets up Prometheus's multiprocess mode before any worker imports the metrics, and cleans it per start.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="mlaas-prom-api-")


def on_starting(server: Any) -> None:
    """Start with no metrics files from an earlier run."""
    path = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path, exist_ok=True)


def child_exit(server: Any, worker: Any) -> None:
    """Let the metrics of a dead worker be merged correctly."""
    from mlaas.adapters.telemetry import mark_process_dead

    mark_process_dead(worker.pid)
