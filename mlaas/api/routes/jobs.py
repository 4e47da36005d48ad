"""Job status, listing and cancellation."""

from __future__ import annotations

from typing import Any

from flask_openapi3 import APIBlueprint, Tag

from mlaas import jobs
from mlaas.api.routes.common import ctx, job_owner
from mlaas.api.schemas import SECURITY, ErrorBody, JobList, JobListQuery, JobPath, JobStatus

bp = APIBlueprint("jobs", __name__, abp_tags=[
    Tag(name="jobs", description="Asynchronous jobs")
], abp_security=SECURITY)


@bp.get("/jobs/<job_id>", responses={200: JobStatus, 404: ErrorBody})
def get_job(path: JobPath) -> dict[str, Any]:
    """A job's state, progress, result or error, and its recorded transitions (another key's job: 404)."""
    return jobs.get(path.job_id, ctx=ctx(), owner=job_owner())


@bp.delete("/jobs/<job_id>", responses={200: JobStatus, 404: ErrorBody, 409: ErrorBody})
def cancel_job(path: JobPath) -> dict[str, Any]:
    """Cancel a queued or running job (a running job stops at its next step; another key's job: 404)."""
    return jobs.cancel(path.job_id, ctx=ctx(), owner=job_owner())


@bp.get("/jobs", responses={200: JobList})
def list_jobs(query: JobListQuery) -> dict[str, Any]:
    """Recent jobs (a key's own; an admin key's: everyone's), newest first, filtered by type and state, paged."""
    return jobs.listing(ctx=ctx(), job_type=query.type, state=query.state, limit=query.limit, offset=query.offset,
                        owner=job_owner())
