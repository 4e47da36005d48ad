"""Job status, listing and cancellation; submission helpers for the routes that create jobs."""

from __future__ import annotations

from typing import Any

from flask import current_app, g, url_for
from flask_openapi3 import APIBlueprint, Tag

from mlaas.api.schemas import SECURITY, ErrorBody, JobList, JobListQuery, JobPath, JobStatus
from mlaas.context import Context
from mlaas.services import jobs

bp = APIBlueprint("jobs", __name__, abp_tags=[
    Tag(name="jobs", description="Asynchronous jobs")
], abp_security=SECURITY)


def ctx() -> Context:
    return current_app.config["MLAAS_CONTEXT"]  # type: ignore[no-any-return]


def accepted(job_type: str, params: dict[str, Any], idempotency_key: str | None) -> tuple[dict[str, Any], int]:
    """Submit a job and answer 202 with where to poll it (200 when an idempotency key matched)."""
    job, created = jobs.submit(ctx(), job_type, params, idempotency_key=idempotency_key,
                               request_id=getattr(g, "request_id", ""))
    body = {
        "job_id": job["job_id"],
        "status_url": url_for("jobs.get_job", job_id=job["job_id"]),
        "state": job["state"],
        "model": params.get("model"),
        "version": params.get("version"),
    }
    return body, 202


@bp.get("/jobs/<job_id>", responses={200: JobStatus, 404: ErrorBody})
def get_job(path: JobPath) -> dict[str, Any]:
    """A job's state, progress, result or error, and its recorded transitions."""
    return ctx().jobs.get(path.job_id)


@bp.delete("/jobs/<job_id>", responses={200: JobStatus, 404: ErrorBody, 409: ErrorBody})
def cancel_job(path: JobPath) -> dict[str, Any]:
    """Cancel a queued or running job (a running job stops at its next step)."""
    return jobs.cancel(ctx(), path.job_id)


@bp.get("/jobs", responses={200: JobList})
def list_jobs(query: JobListQuery) -> dict[str, Any]:
    """Recent jobs, newest first, filtered by type and state, paged."""
    page, total = ctx().jobs.list(job_type=query.type, state=query.state, limit=query.limit, offset=query.offset)
    return {"jobs": page, "total": total, "limit": query.limit, "offset": query.offset}
