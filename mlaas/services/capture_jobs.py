"""Periodic work on captured traffic: flush every stream, then start drift checks where enough rows wait."""

from __future__ import annotations

import logging
from typing import Any

from mlaas.adapters.capture_buffer import CaptureBuffer
from mlaas.context import Context
from mlaas.errors import MlaasError
from mlaas.services import capture

log = logging.getLogger(__name__)
MAX_BATCHES_PER_STREAM = 20


def flush_all(ctx: Context, buffer: CaptureBuffer) -> dict[str, Any]:
    """Flush each stream (a failing stream does not stop the others); queue drift checks that are due."""
    flushed, checks, errors = [], [], []
    for key in buffer.streams():
        try:
            for _ in range(MAX_BATCHES_PER_STREAM):
                out = capture.flush_stream(ctx, buffer, key)
                if out["rows"]:
                    flushed.append(out)
                if not out["rows"] or out.get("skipped"):
                    break
            model, version = buffer.parse_stream_key(key)
            if buffer.add_unchecked(key, 0) >= ctx.settings.drift_min_rows:
                ctx.queue.send("mlaas.inference_drift", [model, version, ctx.settings.drift_min_rows])
                checks.append({"model": model, "version": version})
        except MlaasError as exc:
            log.warning("flushing %s failed: %s", key, exc.message)
            errors.append({"stream": key, "error": exc.to_dict()})
    return {"flushed": flushed, "checks_queued": checks, "errors": errors}
