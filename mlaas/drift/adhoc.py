"""POST /data-drift: compare two data sets (URIs, a version's baseline, or its captured traffic) as a job."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from mlaas import jobs
from mlaas.context import Context
from mlaas.datasets.config import DataConfig
from mlaas.datasets.frames import checked_uri, read_config, read_dataset
from mlaas.datasets.uploads import readable_uri
from mlaas.drift import ColumnSpec, DriftReport, compare
from mlaas.drift.html import render_html
from mlaas.drift.specs import DriftSpec, ModelData, column_options
from mlaas.errors import InvalidInput, NotFound
from mlaas.monitoring.traffic import baseline_of, log_drift_run, select_captured, spec_of
from mlaas.uris import S3Uri

Progress = Callable[[str, int], None]
ADHOC_EXPERIMENT = "data-drift"


def prepare(spec: DriftSpec, *, ctx: Context) -> DriftSpec:
    """Check URIs and resolve model references now (400/404 before anything is queued); returns the pinned job."""
    sides: dict[str, str | ModelData] = {}
    for side in ("reference", "current"):
        value = getattr(spec, side)
        if isinstance(value, str):
            readable_uri(value, ctx=ctx, field=side)
            continue
        version = ctx.registry.resolve(value.model, value.version)
        if side == "reference":
            baseline = version.tags.get("drift-data")
            if not baseline:
                raise InvalidInput(f"reference: {version.name} v{version.version} has no drift-data baseline")
            checked_uri(baseline, settings=ctx.settings, field="reference (drift-data tag)")
        sides[side] = value.model_copy(update={"model": version.name, "version": version.version})
    if spec.data_config:
        readable_uri(spec.data_config, ctx=ctx, field="data_config")
    elif not spec.columns and isinstance(spec.reference, str):
        raise InvalidInput("data_config or columns: give one, to say which columns to compare and as what")
    return spec.model_copy(update=sides)


def submit(spec: DriftSpec, *, ctx: Context, idempotency_key: str | None = None,
           request_id: str = "") -> dict[str, Any]:
    """Check and pin a drift comparison, then queue it as a job; the same idempotency key gives the same job."""
    job, _ = jobs.submit(prepare(spec, ctx=ctx), ctx=ctx, idempotency_key=idempotency_key, request_id=request_id)
    return job


def run(job: DriftSpec, *, ctx: Context, job_id: str, progress: Progress) -> dict[str, Any]:
    """Load both sides, run the drift engine, log ``drift_{timestamp}`` with JSON and HTML reports."""
    progress("load_reference", 10)
    reference, ref_config, ref_label = _load_side(ctx, job.reference, "reference")
    progress("load_current", 30)
    current, _, cur_label = _load_side(ctx, job.current, "current")
    spec = _spec(ctx, job, ref_config)

    progress("compare", 50)
    report = compare(reference, current, spec, overrides=column_options(job.overrides), drift_share=job.drift_share,
                     correction=job.correction, domain_classifier=job.domain_classifier, min_rows=job.min_rows)

    progress("report", 75)
    model = _model_of(job)
    meta = {"job": job_id, "reference": ref_label, "current": cur_label, "rows reference": str(len(reference)),
            "rows current": str(len(current))}
    html = render_html(report, title=f"Data drift: {model or 'two data sets'}", reference_label="reference",
                       current_label="current", meta=meta)
    report_uri = report_of(ctx, job_id)
    ctx.storage.put_bytes(report_uri, html.encode(), content_type="text/html; charset=utf-8")
    run_id, run_name = log_drift_run(
        ctx, "drift", model or ADHOC_EXPERIMENT, report,
        params={"reference": ref_label, "current": cur_label, "rows_reference": len(reference),
                "rows_current": len(current), "drift_share": report.drift_share, "correction": report.correction},
        tags={"mlaas.job_id": job_id, **_version_tag(job)}, artifacts={"drift_report.html": html},
    )
    return {**summary(report), "run_id": run_id, "run_name": run_name, "report_url": f"/jobs/{job_id}/report",
            "artifacts": {"html": f"runs:/{run_id}/drift_report.html", "json": f"runs:/{run_id}/drift_report.json",
                          "html_s3": str(report_uri)}}


def summary(report: DriftReport) -> dict[str, Any]:
    """The verdict and a per-column summary for job results."""
    return {
        "dataset_drift": report.dataset_drift, "verdict": "drift" if report.dataset_drift else "no drift",
        "share_drifted": report.share_drifted, "drift_share": report.drift_share,
        "drifted_columns": report.drifted_columns, "rows_reference": report.n_reference_rows,
        "rows_current": report.n_current_rows,
        "columns": [{"column": c.column, "kind": c.kind, "method": c.method, "statistic": c.statistic,
                     "p_value": c.p_value, "threshold": c.threshold, "drifted": c.drifted, "status": c.status}
                    for c in report.columns],
        "domain_classifier": None if report.domain_classifier is None else {
            "auc": report.domain_classifier.auc, "threshold": report.domain_classifier.threshold,
            "drifted": report.domain_classifier.drifted},
    }


def report_html(job_id: str, *, ctx: Context, owner: str | None = None) -> bytes:
    """The HTML report of a finished drift job (given an owner, another owner's job is unknown: 404)."""
    job = ctx.jobs.get(job_id, owner=owner)
    if job["type"] != "drift":
        raise NotFound(f"job {job_id} is a {job['type']} job; only drift jobs have a report")
    if job["state"] != "succeeded":
        raise NotFound(f"job {job_id} is {job['state']}; its report exists once it succeeded")
    return ctx.storage.get_bytes(report_of(ctx, job_id))


def report_of(ctx: Context, job_id: str) -> S3Uri:
    """Where a drift job's HTML report is stored."""
    return ctx.settings.drift_uri(f"reports/{job_id}/drift_report.html")


def _model_of(job: DriftSpec) -> str | None:
    for side in (job.reference, job.current):
        if isinstance(side, ModelData):
            return side.model
    return None


def _version_tag(job: DriftSpec) -> dict[str, str]:
    """The model version a drift job compared (as monitor runs record it), when one side is a model's data."""
    for side in (job.reference, job.current):
        if isinstance(side, ModelData) and side.version is not None:
            return {"mlaas.model_version": str(side.version)}
    return {}


def _spec(ctx: Context, job: DriftSpec, ref_config: DataConfig | None) -> ColumnSpec:
    if job.columns:
        return ColumnSpec(numerical=list(job.columns.numerical), categorical=list(job.columns.categorical))
    if job.data_config:
        uri = checked_uri(job.data_config, settings=ctx.settings, field="data_config")
        return spec_of(DataConfig.parse(read_config(ctx.storage, uri), source=str(uri)))
    if ref_config is None:
        raise InvalidInput("data_config or columns: give one, to say which columns to compare and as what")
    return spec_of(ref_config)


def _load_side(ctx: Context, value: str | ModelData, side: str) -> tuple[pd.DataFrame, DataConfig | None, str]:
    if isinstance(value, str):
        loaded = read_dataset(ctx.storage, value, settings=ctx.settings, field=side)
        return loaded.frame, None, str(loaded.uri)
    model, version = value.model, int(value.version or 0)
    if side == "reference":
        frame, config, baseline = baseline_of(ctx, model, version)
        return frame, config, f"{model} v{version} baseline ({baseline})"
    frame = captured(ctx, model, version, value.since, value.until)
    return frame, None, f"{model} v{version} captured inference rows"


def captured(ctx: Context, model: str, version: int, since: str | None, until: str | None) -> pd.DataFrame:
    """Captured inference rows of a version between two ISO times (either may be open)."""
    start = _parse_time(since, "current.since") if since else None
    end = _parse_time(until, "current.until") if until else None
    rows, _ = select_captured(ctx, model, version, since=start, until=end)
    if rows.empty:
        raise InvalidInput(f"current: no captured inference rows of {model} v{version} in that window")
    return rows


def _parse_time(text: str, field: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{field}: {text!r} is not an ISO 8601 time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

