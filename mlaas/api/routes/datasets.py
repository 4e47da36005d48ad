"""Datasets through the API, so a user can train without S3 credentials of their own."""

from __future__ import annotations

from typing import Any

from flask import current_app, request
from flask_openapi3 import APIBlueprint, Tag

from mlaas.api.routes.common import ctx
from mlaas.api.schemas import (
    SECURITY,
    DatasetList,
    DatasetListQuery,
    DatasetPath,
    DatasetPutQuery,
    DatasetStored,
    ErrorBody,
)
from mlaas.api.security import caller
from mlaas.datasets import uploads

bp = APIBlueprint("datasets", __name__, abp_tags=[
    Tag(name="datasets", description="Data in the datasets bucket")
], abp_security=SECURITY)


# The body is the file itself, streamed: its media type must be one the key's suffix takes (uploads.CONTENT_TYPES).
_BODY = {"requestBody": {"required": True, "description": "The file, in the format its key's suffix names",
                         "content": {kind: {"schema": {"type": "string", "format": "binary"}}
                                     for kind in sorted(set().union(*uploads.CONTENT_TYPES.values()))}}}


@bp.put("/datasets/<path:key>", responses={201: DatasetStored, 400: ErrorBody, 403: ErrorBody, 409: ErrorBody,
                                          413: ErrorBody, 415: ErrorBody}, openapi_extensions=_BODY)
def put_dataset(path: DatasetPath, query: DatasetPutQuery) -> tuple[dict[str, Any], int]:
    """Upload a CSV, Parquet, YAML or JSON body (streamed) to the datasets bucket; returns its s3:// URI."""
    request.max_content_length = current_app.config["MLAAS_SETTINGS"].max_dataset_bytes
    stored = uploads.upload(path.key, request.stream, ctx=ctx(), caller=caller(),
                            content_type=request.content_type or "", length=request.content_length,
                            overwrite=query.overwrite)
    return stored, 201


@bp.get("/datasets", responses={200: DatasetList, 400: ErrorBody})
def list_datasets(query: DatasetListQuery) -> dict[str, Any]:
    """The caller's objects in the datasets bucket under a prefix (an admin key: every object)."""
    return {"datasets": uploads.listing(query.prefix, query.limit, ctx=ctx(), caller=caller())}
