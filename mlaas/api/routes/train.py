"""POST /train: resolve the model now, run the retraining as a job."""

from __future__ import annotations

from typing import Any

from flask_openapi3 import APIBlueprint, Tag

from mlaas.api.routes.common import accepted, ctx, request_id
from mlaas.api.schemas import SECURITY, ErrorBody, IdempotencyHeader, JobAccepted
from mlaas.api.security import require_promote
from mlaas.training import retrain
from mlaas.training.specs import TrainSpec

bp = APIBlueprint("train", __name__, abp_tags=[
    Tag(name="training", description="Retrain registered models")
], abp_security=SECURITY)


@bp.post("/train", responses={202: JobAccepted, 400: ErrorBody, 404: ErrorBody, 409: ErrorBody, 503: ErrorBody})
def train(body: TrainSpec, header: IdempotencyHeader) -> tuple[dict[str, Any], int]:
    """Retrain a registered model version on a dataset in storage; returns a job to poll.

    ``promote: true`` needs the ``promote`` (or ``admin``) scope."""
    if body.promote:
        require_promote("promote")
    return accepted(retrain.submit(body, ctx=ctx(), idempotency_key=header.idempotency_key, request_id=request_id()))
