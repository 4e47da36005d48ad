"""GET /metrics: Prometheus metrics of every API worker process."""

from __future__ import annotations

from flask import Response
from flask_openapi3 import APIBlueprint, Tag

from mlaas.adapters import telemetry
from mlaas.api.schemas import SECURITY, ErrorBody

bp = APIBlueprint("metrics", __name__, abp_tags=[
    Tag(name="operations", description="For operators")
], abp_security=SECURITY)


@bp.get("/metrics", responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}, 401: ErrorBody,
                               403: ErrorBody})
def metrics() -> Response:
    """Prometheus metrics (text format): requests, latency, predictions, model cache, capture drops (admin)."""
    return Response(telemetry.exposition(), mimetype=telemetry.CONTENT_TYPE)
