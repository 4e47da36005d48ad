"""Structured JSON logging to stderr."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any

_CONTEXT: ContextVar[dict[str, str]] = ContextVar("mlaas_log_context", default={})  # noqa: B039 - never mutated

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update(_CONTEXT.get())
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(level: str = "INFO") -> None:
    """Send JSON logs to stderr at ``level`` (idempotent)."""
    root = logging.getLogger()
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())


def bind(**fields: str) -> Token[dict[str, str]]:
    """Add fields (e.g. request_id) to every log line of this context; undo with ``unbind``."""
    return _CONTEXT.set({**_CONTEXT.get(), **fields})


def unbind(token: Token[dict[str, str]]) -> None:
    _CONTEXT.reset(token)


@contextmanager
def log_context(**fields: str) -> Iterator[None]:
    """``bind`` for the duration of a block."""
    token = bind(**fields)
    try:
        yield
    finally:
        unbind(token)


def current(name: str) -> str | None:
    """A field of the current log context, if set."""
    return _CONTEXT.get().get(name)
