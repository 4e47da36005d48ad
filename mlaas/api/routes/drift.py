"""POST /data-drift and the HTML report of a drift job."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask_openapi3 import APIBlueprint, Tag

from mlaas.api.routes.common import accepted, ctx
from mlaas.api.schemas import SECURITY, DriftRequest, ErrorBody, IdempotencyHeader, JobAccepted, JobPath
from mlaas.drift import adhoc

bp = APIBlueprint("drift", __name__, abp_tags=[
    Tag(name="drift", description="Data drift")
], abp_security=SECURITY)


@bp.post("/data-drift", responses={202: JobAccepted, 400: ErrorBody, 404: ErrorBody, 503: ErrorBody})
def data_drift(body: DriftRequest, header: IdempotencyHeader) -> tuple[dict[str, Any], int]:
    """Compare a current data set with a reference (URIs, a version's baseline or its captured rows)."""
    params = adhoc.prepare(ctx(), body.model_dump(exclude_none=True))
    return accepted("drift", params, header.idempotency_key)


@bp.get("/jobs/<job_id>/report", responses={200: {"content": {"text/html": {"schema": {"type": "string"}}}},
                                            404: ErrorBody})
def drift_report(path: JobPath) -> Response:
    """The self-contained HTML report of a succeeded drift job."""
    html = adhoc.report_html(ctx(), ctx().jobs.get(path.job_id))
    return Response(html, mimetype="text/html", headers={"Content-Security-Policy": "default-src 'none'; "
                                                          "style-src 'unsafe-inline'; img-src data:"})
