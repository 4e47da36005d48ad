"""POST /inference: synchronous predictions, paired with row ids."""

from __future__ import annotations

from typing import Any

from flask import current_app, g, request
from flask_openapi3 import APIBlueprint, Tag

from mlaas.api.schemas import SECURITY, ErrorBody, InferenceQuery, InferenceRequest, InferenceResponse
from mlaas.inference import payload
from mlaas.inference.server import Server

bp = APIBlueprint("inference", __name__, abp_tags=[
    Tag(name="inference", description="Synchronous predictions")
], abp_security=SECURITY)



@bp.before_request
def _refuse_bombs() -> None:
    """Refuse oversized payloads from the parsed body before validation copies it."""
    payload.refuse_bombs(request.get_json(silent=True), request.get_data(cache=True),
                         max_rows=current_app.config["MLAAS_SETTINGS"].max_inference_rows)


@bp.post("/inference", responses={200: InferenceResponse, 400: ErrorBody, 404: ErrorBody, 413: ErrorBody,
                                  503: ErrorBody})
def infer(query: InferenceQuery, body: InferenceRequest) -> dict[str, Any]:
    """Score rows with a registered model version (the production version unless one is named)."""
    server: Server = current_app.config["MLAAS_SERVER"]
    version = body.version if body.version is not None else query.version
    payload = body.model_dump(exclude={"model", "version", "params"}, exclude_none=True)
    # The text the body was parsed from, when it was JSON: a rollout queues it rather than serialise the body again.
    raw = request.get_data(cache=True) if isinstance(request.get_json(silent=True), dict) else None
    return server.predict(body.model or query.model, version, payload, request_id=getattr(g, "request_id", ""),
                          raw=raw)
