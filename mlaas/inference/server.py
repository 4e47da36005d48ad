"""The inference hot path: resolve (cached), load (cached), validate, predict once, capture, answer."""

from __future__ import annotations

import logging
import threading
from functools import partial
from typing import Any

from mlaas.adapters import telemetry
from mlaas.adapters.capture_buffer import CaptureBuffer
from mlaas.adapters.registry import ModelVersion
from mlaas.context import Context
from mlaas.errors import InvalidInput, MlaasError, NotFound
from mlaas.inference import payload, predict
from mlaas.inference.cache import ModelCache
from mlaas.monitoring import capture
from mlaas.rollouts.router import Router

log = logging.getLogger(__name__)


class Server:
    """One per process: the model cache and the capture buffer live here."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.cache = ModelCache(ctx)
        self.rollouts = Router(ctx)
        self._buffer: CaptureBuffer | None = None

    @property
    def buffer(self) -> CaptureBuffer:
        if self._buffer is None:
            self._buffer = CaptureBuffer(self.ctx.settings)
        return self._buffer

    def predict(self, model: str | None, version: int | str | None, body: dict[str, Any], *,
                request_id: str = "", raw: bytes | None = None) -> dict[str, Any]:
        """Answer one inference request; the capture keeps the columns the model used, not the request's text.

        ``raw``: the JSON text ``body`` was read from (a rollout queues it as it came, see ``Router``)."""
        if not model:
            raise InvalidInput("model: missing (in the body or as ?model=)")
        rows = payload.parse_rows(body, max_rows=self.ctx.settings.max_inference_rows)
        resolved = self.cache.resolve(model, version)
        rollout = self.rollouts.active(model) if version is None else None
        if rollout is not None and rollout["version"] != resolved.version:  # a canary or shadow of this model
            return self.rollouts.serve(rollout, resolved, rows, body, request_id, partial(self.cache.resolve, model),
                                       partial(self._answer, rows=rows, request_id=request_id), raw=raw)
        return self._answer(resolved, rows=rows, request_id=request_id)[0]

    def _answer(self, resolved: ModelVersion, *, rows: payload.Rows, request_id: str
                ) -> tuple[dict[str, Any], list[Any]]:
        """Score rows with one version: (the response body, the predicted labels)."""
        served = self.cache.get(resolved)
        features, ignored = predict.prepare_features(rows, served)
        result = predict.predict(served, features, rows, ignored)
        telemetry.predicted(served.name, served.version, len(rows.ids), result.path)
        if self.ctx.settings.capture_enabled:
            capture.record(self.buffer, served.name, served.version, result, request_id)
        return predict.response_body(served, rows, result), result.labels

    def write_held(self) -> None:
        """Write the captured requests and queue the rollout requests this process still holds (at shutdown)."""
        if self._buffer is not None:
            self._buffer.write_pending()
        self.rollouts.flush()

    def warm(self) -> None:
        """Load every registered model's production version (in the background at start)."""

        def run() -> None:
            try:
                models = self.ctx.registry.list_models()
            except MlaasError as exc:
                log.warning("warming skipped: %s", exc.message)
                return
            for model in models:
                try:
                    self.cache.get(self.cache.resolve(model["name"], None))
                except NotFound:
                    continue
                except MlaasError as exc:
                    log.warning("warming %s failed: %s", model["name"], exc.message)

        threading.Thread(target=run, name="warm-models", daemon=True).start()
