"""POST /data-drift and the HTML report of a drift job."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask_openapi3 import APIBlueprint, Tag

from mlaas.api.routes.common import accepted, ctx, job_owner, request_id
from mlaas.api.schemas import SECURITY, ErrorBody, IdempotencyHeader, JobAccepted, JobPath
from mlaas.drift import adhoc
from mlaas.drift.specs import DriftSpec

bp = APIBlueprint("drift", __name__, abp_tags=[
    Tag(name="drift", description="Data drift")
], abp_security=SECURITY)
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"  # the report is one self-contained page


@bp.post("/data-drift", responses={202: JobAccepted, 400: ErrorBody, 404: ErrorBody, 503: ErrorBody})
def data_drift(body: DriftSpec, header: IdempotencyHeader) -> tuple[dict[str, Any], int]:
    """Compare a current data set with a reference (URIs, a version's baseline or its captured rows)."""
    return accepted(adhoc.submit(body, ctx=ctx(), idempotency_key=header.idempotency_key, request_id=request_id()))


@bp.get("/jobs/<job_id>/report", responses={200: {"content": {"text/html": {"schema": {"type": "string"}}}},
                                            404: ErrorBody})
def drift_report(path: JobPath) -> Response:
    """The self-contained HTML report of a succeeded drift job (another key's job: 404)."""
    html = adhoc.report_html(path.job_id, ctx=ctx(), owner=job_owner())
    return Response(html, mimetype="text/html", headers={"Content-Security-Policy": REPORT_CSP})
