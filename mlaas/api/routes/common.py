"""Helpers shared by the routes: the request's context, and answering a job submission."""

from __future__ import annotations

from typing import Any

from flask import current_app, g, url_for

from mlaas import jobs
from mlaas.context import Context


def ctx() -> Context:
    return current_app.config["MLAAS_CONTEXT"]  # type: ignore[no-any-return]


def accepted(job_type: str, params: dict[str, Any], idempotency_key: str | None) -> tuple[dict[str, Any], int]:
    """Submit a job and answer 202 with where to poll it (the same job again when an idempotency key matched)."""
    job, _ = jobs.submit(ctx(), job_type, params, idempotency_key=idempotency_key,
                         request_id=getattr(g, "request_id", ""))
    body = {
        "job_id": job["job_id"],
        "status_url": url_for("jobs.get_job", job_id=job["job_id"]),
        "state": job["state"],
        "model": params.get("model"),
        "version": params.get("version"),
    }
    return body, 202
