"""POST /inference: synchronous predictions, paired with row ids."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
from flask import current_app, g, request
from flask_openapi3 import APIBlueprint, Tag

from mlaas.api.schemas import SECURITY, ErrorBody, InferenceQuery, InferenceRequest, InferenceResponse
from mlaas.errors import TooLarge
from mlaas.inference.server import Server

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
        if _may_hold_long_text(request.get_data(cache=True)) and any(
                isinstance(v, str) and len(v) > MAX_TEXT_CHARS for v in cells):
            raise TooLarge(f"{key}: a value is longer than {MAX_TEXT_CHARS} characters")


def _may_hold_long_text(raw: bytes) -> bool:
    """Whether the raw body could hold a string longer than MAX_TEXT_CHARS; found with numpy, not by walking cells.

    In UTF-8 (what JSON bodies are; json also reads UTF-16 and UTF-32, which are walked instead), a JSON
    string of more than MAX_TEXT_CHARS characters takes at least that many bytes after its opening
    quote, up to its closing one. Quotes right after a backslash are not taken as delimiters: that skips
    every escaped quote and at worst joins two strings (``\\\\"``), which can only make a stretch longer.
    """
    if len(raw) <= MAX_TEXT_CHARS:
        return False
    if json.detect_encoding(raw) not in ("utf-8", "utf-8-sig"):  # UTF-16 or -32: let the cells be walked
        return True
    body = np.frombuffer(raw, dtype=np.uint8)
    quotes = np.flatnonzero(body == ord('"'))
    quotes = quotes[(quotes == 0) | (body[quotes - 1] != ord("\\"))]
    following = np.append(quotes[1:], len(body))
    return bool((following - quotes > MAX_TEXT_CHARS).any())


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
