"""The models API: list, describe, promote, roll back."""

from __future__ import annotations

from typing import Any

from flask import current_app, g
from flask_openapi3 import APIBlueprint, Tag

from mlaas import models
from mlaas.api.routes.common import accepted, ctx, request_id
from mlaas.api.schemas import (
    SECURITY,
    ErrorBody,
    IdempotencyHeader,
    JobAccepted,
    ModelDetail,
    ModelList,
    ModelPath,
    ModelVersionPath,
    PromoteRequest,
    PromotionRecord,
    VersionDetail,
)
from mlaas.api.security import require_promote
from mlaas.training import evaluation
from mlaas.training.specs import EvaluateSpec

bp = APIBlueprint("models", __name__, abp_tags=[
    Tag(name="models", description="The model registry through mlaas")
], abp_security=SECURITY)


def actor() -> str:
    return getattr(g, "actor", None) or f"api request {request_id()}"


@bp.post("/evaluate", responses={202: JobAccepted, 400: ErrorBody, 404: ErrorBody, 409: ErrorBody, 503: ErrorBody})
def evaluate(body: EvaluateSpec, header: IdempotencyHeader) -> tuple[dict[str, Any], int]:
    """Evaluate a model version (optionally against another) on a labelled test set; returns a job.

    ``promote: true`` needs the ``promote`` (or ``admin``) scope."""
    if body.promote:
        require_promote("promote")
    return accepted(evaluation.submit(body, ctx=ctx(), idempotency_key=header.idempotency_key,
                                      request_id=request_id()))


@bp.get("/models", responses={200: ModelList, 503: ErrorBody})
def list_models() -> dict[str, Any]:
    """Registered models with their production version."""
    return {"models": models.list_models(ctx=ctx())}


@bp.get("/models/<name>", responses={200: ModelDetail, 404: ErrorBody})
def get_model(path: ModelPath) -> dict[str, Any]:
    """A model's versions with stage, aliases, latest evaluation, drift baseline and input schema."""
    return models.describe_model(path.name, ctx=ctx())


@bp.get("/models/<name>/versions/<int:version>", responses={200: VersionDetail, 404: ErrorBody})
def get_version(path: ModelVersionPath) -> dict[str, Any]:
    """One version in full, including whether it can be served here and why not."""
    return models.describe_version(path.name, path.version, ctx=ctx(), cache=current_app.config["MLAAS_SERVER"].cache)


@bp.post("/models/<name>/promote", responses={200: PromotionRecord, 404: ErrorBody, 409: ErrorBody})
def promote(path: ModelPath, body: PromoteRequest) -> dict[str, Any]:
    """Make a version the production version (atomic on the 'prod' alias); optionally gated."""
    return models.promote(path.name, body.version, ctx=ctx(), require_better=body.require_better, actor=actor())


@bp.post("/models/<name>/rollback", responses={200: PromotionRecord, 404: ErrorBody, 409: ErrorBody})
def rollback(path: ModelPath) -> dict[str, Any]:
    """Point production back at the previous production version."""
    return models.rollback(path.name, ctx=ctx(), actor=actor())
