"""The console's pages: thin views that call the services the API calls and render templates."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, current_app, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from mlaas import jobs, models
from mlaas.api.routes.common import ctx, job_owner
from mlaas.api.routes.drift import REPORT_CSP
from mlaas.api.schemas import JobListQuery
from mlaas.api.ui import pages, session
from mlaas.auth import identify, parse_keys
from mlaas.drift import adhoc
from mlaas.errors import InvalidInput
from mlaas.training import promotion

bp = Blueprint("ui", __name__, url_prefix="/ui", template_folder="templates", static_folder="static")
MAX_KEY_LENGTH = 256


@bp.app_template_global()
def csrf_token() -> str:
    return session.csrf_token()


@bp.app_template_global()
def mlflow_link(path: str) -> str | None:
    """A link into the MLflow UI (``#/...`` route), when MLAAS_MLFLOW_UI_URL is set."""
    base = ctx().settings.mlflow_ui_url.rstrip("/")
    return f"{base}/#/{path}" if base else None


@bp.app_template_global()
def job_model(params: dict[str, Any]) -> tuple[str | None, Any]:
    """The model (and version) a job is about: a train/evaluate job's own, else a drift job's model side."""
    for side in (params, params.get("reference"), params.get("current")):
        if isinstance(side, dict) and isinstance(side.get("model"), str):
            return side["model"], side.get("version")
    return None, None


@bp.get("/")
def index() -> BaseResponse:
    return redirect(url_for("ui.models"))


@bp.get("/login")
def login() -> str:
    return render_template("login.html", error=None)


@bp.post("/login")
def login_post() -> BaseResponse | tuple[str, int]:
    """Check the key once, like the Bearer header would be, and keep it in the console's cookie."""
    session.check_csrf()
    settings = ctx().settings
    key = request.form.get("key", "").strip()
    if not settings.auth_enabled:
        return redirect(url_for("ui.models"), 303)
    problem = None
    if not key:
        problem = "key: enter an API key"
    elif len(key) > MAX_KEY_LENGTH or identify(parse_keys(settings.api_keys), key) is None:
        problem = "key: this API key is not valid"
    if problem:
        return render_template("login.html", error=problem), 401
    response = redirect(url_for("ui.models"), 303)
    session.keep_key(response, key)
    return response


@bp.post("/logout")
def logout() -> BaseResponse:
    session.check_csrf()
    response = redirect(url_for("ui.login"), 303)
    session.forget_key(response)
    return response


@bp.get("/models", endpoint="models")
def models_page() -> str:
    return render_template("models.html", models=models.list_models(ctx=ctx()))


@bp.get("/models/<name>", endpoint="model")
def model_page(name: str) -> str:
    context = ctx()
    if len(name) > 256:
        raise InvalidInput("name: a model name has at most 256 characters")
    registered = context.registry.get_model(name)  # 404 for an unknown model
    versions = context.registry.list_versions(name)
    production = promotion.current_production(context, name)
    return render_template(
        "model.html", model=registered, production=production.version if production else None,
        versions=[_version_row(v.version, v.tags, v.aliases, v.created_at) for v in versions],
        promotions=list(reversed(promotion.promotion_history(context, name))),
        health=pages.model_health(name, ctx=context))


@bp.get("/jobs", endpoint="jobs")
def jobs_page() -> str:
    # the filter form sends "" for "any"; a bad filter is a 400 naming the field, as through GET /jobs
    query = JobListQuery.model_validate({k: v for k, v in request.args.items() if v})
    page = jobs.listing(ctx=ctx(), job_type=query.type, state=query.state, limit=query.limit, offset=query.offset,
                        owner=job_owner())
    return render_template("jobs.html", page=page, query=query)


@bp.get("/jobs/<job_id>/report", endpoint="report")
def report(job_id: str) -> Response:
    """A drift job's HTML report, for the console's links (the caller's own jobs; an admin's: any)."""
    if len(job_id) > 64:
        raise InvalidInput("job_id: at most 64 characters")
    html = adhoc.report_html(job_id, ctx=ctx(), owner=job_owner())  # another key's job: 404
    return Response(html, mimetype="text/html", headers={"Content-Security-Policy": REPORT_CSP})


def _version_row(number: int, tags: dict[str, str], aliases: tuple[str, ...], created: Any) -> dict[str, Any]:
    try:
        scores = json.loads(tags.get("eval.metrics", "{}"))
    except ValueError:
        scores = {}
    metric = tags.get("eval.metric")
    return {"version": number, "stage": tags.get("stage"), "aliases": aliases, "created_at": created,
            "metric": metric, "score": scores.get(metric) if metric else None, "dataset": tags.get("dataset")}


@bp.after_request
def _finish(response: BaseResponse) -> BaseResponse:
    """Errors as pages (no key: the login page), and the console's security headers on every answer."""
    if response.mimetype == "application/problem+json":
        body = response.get_json(silent=True) or {}
        if response.status_code == 401:
            response = redirect(url_for("ui.login"), 303)
            session.forget_key(response)
        else:
            page = render_template("error.html", error=body, status=response.status_code)
            response = current_app.response_class(page, status=response.status_code, mimetype="text/html",
                                                  headers={k: v for k, v in response.headers.items()
                                                           if k in ("Retry-After", "Allow", "X-Request-ID")})
    return session.finish(response)

