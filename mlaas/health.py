"""Dependency checks for readiness, run concurrently with short timeouts."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from mlaas.context import Context
from mlaas.errors import MlaasError

_POOL = ThreadPoolExecutor(max_workers=3, thread_name_prefix="ready")


def check_dependencies(ctx: Context, timeout: float = 4.0) -> dict[str, str]:
    """``{"redis"|"mlflow"|"s3": "ok" or the reason it is down}``."""
    probes = {"redis": ctx.jobs.ping, "mlflow": ctx.registry.ping, "s3": ctx.storage.ping}
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
