"""POST /inference: synchronous predictions, paired with row ids."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flask import current_app, g, request
from flask_openapi3 import APIBlueprint, Tag

from mlaas.api.schemas import SECURITY, ErrorBody, InferenceQuery, InferenceRequest, InferenceResponse
from mlaas.errors import TooLarge
from mlaas.services.serving import Server

bp = APIBlueprint("inference", __name__, abp_tags=[
    Tag(name="inference", description="Synchronous predictions")
], abp_security=SECURITY)

PAYLOAD_KEYS = ("data", "dataframe_split", "dataframe_records", "instances", "inputs")
MAX_COLUMNS = 10_000
MAX_TEXT_CHARS = 10_000


@bp.before_request
def _refuse_bombs() -> None:
    """Count rows, columns and text in the parsed body before validation copies it: bombs cost little memory."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return
    max_rows = current_app.config["MLAAS_SETTINGS"].max_inference_rows
    for key in PAYLOAD_KEYS:
        value = body.get(key)
        if key == "dataframe_split" and isinstance(value, dict):
            rows, columns = value.get("data"), value.get("columns")
            width = len(columns) if isinstance(columns, list) else 0
        elif isinstance(value, dict):  # inputs or instances as {column: [values]}
            rows, width = next((v for v in value.values() if isinstance(v, list)), None), len(value)
        else:
            rows, width = value, 0
        if not isinstance(rows, list):
            continue
        if len(rows) > max_rows:
            raise TooLarge(f"{key}: {len(rows)} rows is more than the limit of {max_rows} per request")
        width = max([width, *(len(r) for r in rows if isinstance(r, dict | list))])
        if width > MAX_COLUMNS:
            raise TooLarge(f"{key}: {width} columns is more than the limit of {MAX_COLUMNS}")
        cells = _cells(rows if key == "dataframe_split" else value)
        if (request.content_length or 0) > MAX_TEXT_CHARS and any(
                isinstance(v, str) and len(v) > MAX_TEXT_CHARS for v in cells):
            raise TooLarge(f"{key}: a value is longer than {MAX_TEXT_CHARS} characters")


def _cells(value: Any) -> Iterator[Any]:
    """Every value one or two levels down (records, rows, columns)."""
    for item in value.values() if isinstance(value, dict) else value:
        if isinstance(item, dict):
            yield from item.values()
        elif isinstance(item, list):
            yield from item
        else:
            yield item


@bp.post("/inference", responses={200: InferenceResponse, 400: ErrorBody, 404: ErrorBody, 413: ErrorBody,
                                  503: ErrorBody})
def infer(query: InferenceQuery, body: InferenceRequest) -> dict[str, Any]:
    """Score rows with a registered model version (the production version unless one is named)."""
    server: Server = current_app.config["MLAAS_SERVER"]
    version = body.version if body.version is not None else query.version
    payload = body.model_dump(exclude={"model", "version", "params"}, exclude_none=True)
    return server.predict(body.model or query.model, version, payload, request_id=getattr(g, "request_id", ""),
                          raw=request.get_data(cache=True))
