"""Helpers shared by the routes: the request's context, and answering a job submission."""

from __future__ import annotations

from typing import Any

from flask import current_app, g, url_for

from mlaas.context import Context


def ctx() -> Context:
    """The application's context (settings and adapters)."""
    return current_app.config["MLAAS_CONTEXT"]


def request_id() -> str:
    """The X-Request-ID of the current request."""
    return getattr(g, "request_id", "")


def job_owner() -> str | None:
    """Whose jobs the caller sees: every job (None) for an admin key or with auth off, else its own key's."""
    return None if getattr(g, "admin", False) else str(getattr(g, "key_name", ""))


def accepted(job: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Answer 202 with where to poll a submitted job (the same job again when an idempotency key matched)."""
    body = {
        "job_id": job["job_id"],
        "status_url": url_for("jobs.get_job", job_id=job["job_id"]),
        "state": job["state"],
        "model": job["params"].get("model"),
        "version": job["params"].get("version"),
    }
    return body, 202
