"""The mlaas stack (Redis, SeaweedFS S3, MLflow, Celery workers and beat, gunicorn API) as local processes.

``python -m scripts.localstack up|down|status|logs|env`` (``make up`` etc.); from Python, ``Stack(config)``
with ``start()``, ``stop()``, ``pids()``, ``env()``. Every process binds 127.0.0.1 on ports below the
kernel's ephemeral range and keeps its pid file, log and data under the state directory.

Modules: ``config`` (StackConfig, ports), ``processes`` (pids, signals, /proc), ``probes`` (readiness),
``units`` (how each process is launched), ``stack`` (start order, readiness waits, stop), ``watchdog``
(restarts), ``cli``.

Who owns process lifetimes: our code, with a watchdog, not supervisord. Measured here (Debian 12,
2 cores, December 2026): supervisor 4.3.0 is a 320 KB pure-Python wheel (4 MB installed, no
dependencies; Debian's 4.2.5 is 1.7 MB and installs a system-wide service beside ours). Its
``autorestart`` respawned a SIGKILLed program in 7 ms, but (1) it left the killed leader's child
running (it signals only the process it spawned), and for gunicorn those orphaned workers keep the
listening socket; (2) it knows "alive for ``startsecs``", not "ready", so start order and readiness
(PING, a signed S3 put/get, MLflow's API, Celery's ``ready.``, ``/health``) would stay in our code
anyway; (3) a program's environment is fixed in its config, while callers start components inside
``environment(...)`` blocks with per-start settings (the fault tests restart the worker with extra
settings), which would mean rewriting the config and ``supervisorctl update`` per start; (4) Redis
must then run in the foreground and every start and stop goes through XML-RPC. The fault tests need
only pids (``Stack.pids()``) and the stack's own start/stop, which both designs can give. A
watchdog process (``watchdog.py``, ~120 lines) reusing the stack's launch code gives restarts with
readiness, the per-start ``MLAAS_*`` settings and clean-up of orphaned group members. Measured: it
notices a death within one poll (``restart_interval``, 1 s); in four runs a SIGKILLed Celery worker
was ready again 7.6-20.6 s later and a gunicorn API (master SIGKILLed, its workers left holding the
port) 6.6-19.2 s later, both restarted in parallel (the high ends with other test stacks running).
It costs one Python process of ~23 MB RSS polling pid files.
``MLAAS_STACK_RESTART=0`` (``StackConfig(restart=False)``) switches it off; the stack's own
``stop``/``start`` (what the fault tests use) never race it, as both take the stack's lock file.
"""

from __future__ import annotations

from .cli import main
from .config import (
    COMPONENTS,
    NEEDS,
    READY_TIMEOUT,
    REPO_ROOT,
    STAGES,
    WATCHED,
    StackConfig,
    StackError,
    free_port_pair,
    free_ports,
    group_name,
)
from .probes import ensure_buckets, http_ok, log_contains, redis_ping, s3_client, s3_probe
from .processes import children, environment, pid_alive, read_pid, rss_mb, tail, terminate
from .stack import Stack
from .units import Report, Unit, weed_command

__all__ = [
    "COMPONENTS", "NEEDS", "READY_TIMEOUT", "REPO_ROOT", "STAGES", "WATCHED", "Report", "Stack", "StackConfig",
    "StackError", "Unit", "children", "ensure_buckets", "environment", "free_port_pair", "free_ports",
    "group_name", "http_ok", "log_contains", "main", "pid_alive", "read_pid", "redis_ping", "rss_mb", "s3_client",
    "s3_probe", "tail", "terminate", "weed_command",
]
