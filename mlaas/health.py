"""Dependency checks for readiness, run concurrently with short timeouts, answered from a result at most
``MAX_AGE_SECONDS`` old: an unauthenticated caller polling /ready cannot make the process call Redis, MLflow and
storage on every request."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from mlaas.context import Context
from mlaas.errors import MlaasError

_POOL = ThreadPoolExecutor(max_workers=3, thread_name_prefix="ready")
MAX_AGE_SECONDS = 2.0
_lock = threading.Lock()
_last: dict[int, tuple[float, dict[str, str]]] = {}  # per context: (when checked, result)


def check_dependencies(ctx: Context, timeout: float = 4.0, max_age: float = MAX_AGE_SECONDS) -> dict[str, str]:
    """``{"redis"|"mlflow"|"s3"|"azure": "ok" or the reason it is down}``, from a check at most ``max_age`` seconds old.

    One check runs at a time per process; callers arriving meanwhile wait for it and share its result.
    """
    with _lock:
        cached = _last.get(id(ctx))
        if cached is not None and time.monotonic() - cached[0] < max_age:
            return dict(cached[1])
        result = _check(ctx, timeout)
        _last[id(ctx)] = (time.monotonic(), result)
        return dict(result)


def _check(ctx: Context, timeout: float) -> dict[str, str]:
    # storage is checked under its backend's name: "s3" or "azure"
    probes = {"redis": ctx.jobs.ping, "mlflow": ctx.registry.ping, ctx.settings.storage_backend: ctx.storage.ping}
    futures = {name: _POOL.submit(probe) for name, probe in probes.items()}
    out: dict[str, str] = {}
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
            out[name] = "ok"
        except FutureTimeout:
            out[name] = "timed out"
        except MlaasError as exc:
            out[name] = exc.message
        except Exception as exc:  # a probe must never break readiness itself
            out[name] = type(exc).__name__
    return out
