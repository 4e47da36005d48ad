"""POST /feedback (outcomes of served predictions) and GET /models/<name>/performance (live quality)."""

from __future__ import annotations

from typing import Any

from flask_openapi3 import APIBlueprint, Tag

from mlaas.api.routes.common import accepted, ctx, request_id
from mlaas.api.schemas import SECURITY, ErrorBody, IdempotencyHeader, ModelPath
from mlaas.api.schemas.quality import FeedbackAccepted, Performance, PerformanceParams
from mlaas.quality import feedback, performance
from mlaas.quality.specs import FeedbackSpec

bp = APIBlueprint("feedback", __name__, abp_tags=[
    Tag(name="quality", description="Ground truth by row id and live model quality")
], abp_security=SECURITY)


@bp.post("/feedback", responses={202: FeedbackAccepted, 400: ErrorBody, 404: ErrorBody, 409: ErrorBody,
                                 413: ErrorBody, 422: ErrorBody, 503: ErrorBody})
def post_feedback(body: FeedbackSpec, header: IdempotencyHeader) -> tuple[dict[str, Any], int]:
    """Outcomes of served rows by their ids (inline), or a dataset of them (a job: the answer is JobAccepted)."""
    if body.dataset is not None:
        return accepted(feedback.submit_bulk(body, ctx=ctx(), idempotency_key=header.idempotency_key,
                                             request_id=request_id()))
    return feedback.submit(body, ctx=ctx()), 202


@bp.get("/models/<name>/performance", responses={200: Performance, 400: ErrorBody, 404: ErrorBody})
def get_performance(path: ModelPath, query: PerformanceParams) -> dict[str, Any]:
    """Realized metrics of a version's joined outcomes, overall and per window, beside the CBPE estimate."""
    return performance.performance(path.name, query.version, ctx=ctx(), since=query.since, until=query.until,
                                   window=query.window)
