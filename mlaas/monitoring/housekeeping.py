"""Periodic work on captured traffic: flush every stream, then start the monitor checks that are due."""

from __future__ import annotations

import logging
import time
from typing import Any

from mlaas.adapters.capture_buffer import CaptureBuffer
from mlaas.adapters.monitorstore import MonitorStore
from mlaas.context import Context
from mlaas.errors import MlaasError
from mlaas.monitoring import capture, monitors
from mlaas.queues import CAPTURE_FLUSH, MONITOR_CHECK

log = logging.getLogger(__name__)


def helpers_for(ctx: Context, buffer: CaptureBuffer, streams: list[str]) -> int:
    """How many more flush tasks a backlog calls for: one per further batch waiting, within the configured bound."""
    batches = -(-sum(buffer.length(key) for key in streams) // ctx.settings.capture_flush_batch)
    return max(0, min(ctx.settings.capture_flush_parallel - 1, batches - 1))


def flush_all(ctx: Context, buffer: CaptureBuffer, store: MonitorStore | None = None, *,
              helpers: bool = False) -> dict[str, Any]:
    """Flush each stream until nothing is left to claim (or for most of MLAAS_CAPTURE_FLUSH_SECONDS); a failing stream
    does not stop the others. With ``helpers``, a backlog of several batches first queues more flush tasks
    (MLAAS_CAPTURE_FLUSH_PARALLEL in all), which claim other batches on other workers. With ``store``, queue
    the monitor checks that are due."""
    flushed: list[dict[str, Any]] = []
    checks: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    # within the interval, so that beat's next flush (which expires after it) finds the worker free
    deadline = time.monotonic() + 0.8 * ctx.settings.capture_flush_seconds
    streams = buffer.streams()
    queued = 0
    if helpers and streams:
        for _ in range(helpers_for(ctx, buffer, streams)):
            ctx.queue.send(CAPTURE_FLUSH, [False])
            queued += 1
    for key in streams:
        try:
            while time.monotonic() < deadline:
                out = capture.flush_stream(ctx, buffer, key)
                if out["rows"]:
                    flushed.append(out)
                if not out.get("entries"):
                    break
            if store is None:
                continue
            model, version = buffer.parse_stream_key(key)
            waiting = buffer.add_unchecked(key, 0)
            for monitor_id in monitors.due_on_flush(model, version, waiting, ctx=ctx):
                ctx.queue.send(MONITOR_CHECK, [monitor_id, None])
                checks.append({"monitor": monitor_id, "model": model, "version": version})
        except MlaasError as exc:
            log.warning("flushing %s failed: %s", key, exc.message)
            errors.append({"stream": key, "error": exc.to_dict()})
        except Exception:  # one broken stream never stops the others
            log.exception("flushing %s failed unexpectedly", key)
            errors.append({"stream": key, "error": {"code": "internal", "message": "unexpected error"}})
    return {"flushed": flushed, "checks_queued": checks, "errors": errors, "helpers_queued": queued}
