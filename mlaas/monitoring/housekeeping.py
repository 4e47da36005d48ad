"""Periodic work on captured traffic: flush every stream, then start the monitor checks that are due."""

from __future__ import annotations

import logging
from typing import Any

from mlaas.adapters.capture_buffer import CaptureBuffer
from mlaas.adapters.monitorstore import MonitorStore
from mlaas.context import Context
from mlaas.errors import MlaasError
from mlaas.monitoring import capture, monitors
from mlaas.queues import MONITOR_CHECK

log = logging.getLogger(__name__)
MAX_BATCHES_PER_STREAM = 20


def flush_all(ctx: Context, buffer: CaptureBuffer, store: MonitorStore | None = None) -> dict[str, Any]:
    """Flush each stream (a failing stream does not stop the others); queue monitor checks that are due."""
    flushed, checks, errors = [], [], []
    for key in buffer.streams():
        try:
            for _ in range(MAX_BATCHES_PER_STREAM):
                out = capture.flush_stream(ctx, buffer, key)
                if out["rows"]:
                    flushed.append(out)
                if not out["rows"] or out.get("skipped"):
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
    return {"flushed": flushed, "checks_queued": checks, "errors": errors}
