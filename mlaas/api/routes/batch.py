"""POST /batch-inference: pin the model version now, score the whole data set as a job."""

from __future__ import annotations

from typing import Any

from flask_openapi3 import APIBlueprint, Tag

from mlaas.api.routes.common import accepted, ctx, request_id
from mlaas.api.schemas import SECURITY, ErrorBody, IdempotencyHeader, JobAccepted
from mlaas.batch import service
from mlaas.batch.specs import BatchSpec

bp = APIBlueprint("batch", __name__, abp_tags=[
    Tag(name="batch", description="Score whole data sets in storage")
], abp_security=SECURITY)


@bp.post("/batch-inference", responses={202: JobAccepted, 400: ErrorBody, 404: ErrorBody, 409: ErrorBody,
                                         413: ErrorBody, 503: ErrorBody})
def batch_inference(body: BatchSpec, header: IdempotencyHeader) -> tuple[dict[str, Any], int]:
    """Score every row of a CSV or Parquet data set into Parquet parts; returns a job to poll.

    The result names the output prefix, the rows scored and the parts written; bad rows fail the job (naming
    chunk and row) or, with ``on_error: skip``, go to ``errors-*.parquet`` parts and are counted."""
    return accepted(service.submit(body, ctx=ctx(), idempotency_key=header.idempotency_key,
                                   request_id=request_id()))
