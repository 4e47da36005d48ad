"""gunicorn settings for the API: ``gunicorn -c python:mlaas.api.gunicorn_conf "mlaas.api.app:create_app()"``.

Sets up the process (Prometheus's multiprocess directory among it) before any worker imports the metrics;
answers the requests gunicorn refuses by itself with the API's JSON error body.
"""

from __future__ import annotations

import json
from typing import Any

from gunicorn import util

from mlaas.errors import code_of, problem
from mlaas.process import configure_process, limit_native_threads
from mlaas.settings import Settings


def _problem_json(sock: Any, status: int, reason: str, message: str) -> None:
    """Requests gunicorn refuses itself (request line too long, malformed HTTP): the API's JSON error body."""
    body = json.dumps(problem(code_of(status), message or reason, status=status)).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/problem+json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin-1") + body)


util.write_error = _problem_json  # gunicorn's own error page is HTML

# The access log shows the path without its query string (%(U)s, not the request line %(r)s) and no Referer:
# a key sent as ?api_key=… is refused, and must not be written down either.
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s "%(a)s" %(L)s'


def on_starting(server: Any) -> None:
    """The master, before it forks workers: process set-up, with a metrics directory free of an earlier run's files."""
    settings = Settings.from_env()
    configure_process(settings, metrics_dir=True)
    limit_native_threads(settings, server.cfg.workers)  # the workers import numpy after the fork: they inherit it


def post_fork(server: Any, worker: Any) -> None:
    """Each worker: its native thread pools sized for its share of the cores (whatever the master loaded)."""
    limit_native_threads(Settings.from_env(), server.cfg.workers)


def child_exit(server: Any, worker: Any) -> None:
    """Let the metrics of a dead worker be merged correctly."""
    from mlaas.adapters.telemetry import mark_process_dead

    mark_process_dead(worker.pid)


def worker_exit(server: Any, worker: Any) -> None:
    """A worker that stops writes the captured and rollout requests it still holds (a killed one loses them)."""
    config = getattr(getattr(worker, "wsgi", None), "config", None)
    if config is not None and config.get("MLAAS_SERVER") is not None:
        config["MLAAS_SERVER"].write_held()
