"""Drift checks of served traffic: a monitor's captured rows of a model version against its baseline.

One mechanism for every check of inference traffic: the flush task starts it once enough rows wait,
beat's sweep starts it on each monitor's schedule, and each check logs an MLflow run ``infer_{timestamp}``.
"""

from __future__ import annotations

import io
import logging
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from mlaas.adapters import telemetry
from mlaas.adapters.capture_buffer import entry_order
from mlaas.context import Context
from mlaas.datasets.config import DataConfig
from mlaas.datasets.frames import checked_uri, read_config, read_dataset
from mlaas.drift import ColumnSpec, DriftReport, compare
from mlaas.drift.specs import column_options
from mlaas.errors import InvalidInput
from mlaas.monitoring import capture
from mlaas.monitoring.specs import MonitorRecord
from mlaas.training import scoring

log = logging.getLogger(__name__)
PREDICTION = "_prediction"


def baseline_of(ctx: Context, model: str, version: int) -> tuple[pd.DataFrame, DataConfig, str]:
    """A version's drift baseline and the data config stored beside it (or recorded on the version)."""
    mv = ctx.registry.get_version(model, version)
    uri_text = mv.tags.get("drift-data")
    if not uri_text:
        raise InvalidInput(f"model {model} v{version} has no drift-data baseline (train it through mlaas first)")
    uri = checked_uri(uri_text, settings=ctx.settings, field="drift-data")  # a tag: checked like a request's URI
    beside = uri.sibling("data_config.yaml")
    recorded = mv.tags.get("data_config", "")
    config_uri = beside if ctx.storage.exists(beside) else checked_uri(recorded, settings=ctx.settings,
                                                                       field="data_config")
    config = DataConfig.parse(read_config(ctx.storage, config_uri), source=str(config_uri))
    return read_dataset(ctx.storage, uri, settings=ctx.settings, field="drift-data").frame, config, str(uri)


def spec_of(config: DataConfig) -> ColumnSpec:
    return ColumnSpec(numerical=list(config.numerical_features), categorical=list(config.categorical_features))


def select_captured(ctx: Context, model: str, version: int, *, after_file: str = "",
                    since: datetime | None = None, until: datetime | None = None,
                    unsettled_from: str | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Captured rows of a version: files after a watermark, rows between two times (each bound optional).

    With ``unsettled_from`` (the first entry a flusher still holds), files from that entry on are left for a
    later read, so a watermark never passes a batch that is still being written.
    """
    horizon = entry_order(unsettled_from) if unsettled_from else None
    base = capture.folder(ctx.settings.drift_bucket, model, version, ctx.settings.storage_scheme)
    frames, files = [], []
    for obj in sorted(ctx.storage.list(base.bucket, base.key + "/"), key=lambda o: o.uri.key):
        key = obj.uri.key
        day = key.split("date=")[-1][:10]
        if key <= after_file or not key.endswith(".parquet"):
            continue
        if horizon is not None and entry_order(key.rsplit("/", 1)[-1].split("_", 1)[0]) >= horizon:
            continue
        if (since and day < since.strftime("%Y-%m-%d")) or (until and day > until.strftime("%Y-%m-%d")):
            continue
        frame = pd.read_parquet(io.BytesIO(ctx.storage.get_bytes(obj.uri)))
        if since is not None:
            frame = frame[frame["_ts"] >= since]
        if until is not None:
            frame = frame[frame["_ts"] <= until]
        frames.append(frame)
        files.append(key)
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return rows, files


def check(monitor: MonitorRecord, version: int, *, ctx: Context, now: datetime, watermark: str = "",
          predictor: Any = None, unsettled_from: str | None = None) -> dict[str, Any]:
    """One check of a monitor; returns the outcome, with ``last_file`` to advance its watermark."""
    model = monitor.model
    window = monitor.window_seconds
    since = now - timedelta(seconds=window) if window else None
    current, files = select_captured(ctx, model, version, after_file="" if window else watermark, since=since,
                                     unsettled_from=None if window else unsettled_from)
    outcome: dict[str, Any] = {"model": model, "version": version, "monitor": monitor.id, "checked": False}
    if len(current) < monitor.min_rows:
        return {**outcome, "reason": f"{len(current)} captured rows, fewer than {monitor.min_rows}"}
    reference, config, baseline_uri = baseline_of(ctx, model, version)
    spec = spec_of(config)
    if monitor.prediction_drift and predictor is not None:
        reference, current, spec = _with_predictions(reference, current, spec, predictor, config)
    report = compare(reference, current, spec, overrides=column_options(monitor.overrides),
                     drift_share=monitor.drift_share, correction=monitor.correction)
    window_info = {"from": str(current["_ts"].min()), "to": str(current["_ts"].max()), "rows": len(current),
                   "files": len(files)}
    run_id, run_name = log_drift_run(ctx, "infer", model, report, params={
        "model": model, "version": version, "monitor": monitor.id, "reference": baseline_uri,
        "current": str(capture.folder(ctx.settings.drift_bucket, model, version, ctx.settings.storage_scheme)) + "/",
        "window_from": window_info["from"], "window_to": window_info["to"], "rows_reference": len(reference),
        "rows_current": len(current), "files": len(files),
    }, tags={"mlaas.model_version": str(version), "mlaas.monitor": monitor.id})
    return {**outcome, "checked": True, "run_id": run_id, "run_name": run_name,
            "dataset_drift": report.dataset_drift, "share_drifted": report.share_drifted,
            "drifted_columns": report.drifted_columns, "window": window_info, "last_file": files[-1] if files else ""}


def _with_predictions(reference: pd.DataFrame, current: pd.DataFrame, spec: ColumnSpec, predictor: Any,
                      config: DataConfig) -> tuple[pd.DataFrame, pd.DataFrame, ColumnSpec]:
    """Add the model's outputs on the baseline and the captured outputs as one more column to compare."""
    task = config.infer_task(reference[config.target_column]) if config.target_column in reference else "regression"
    predicted, _, _ = scoring.predict(predictor, reference[config.features], task)
    reference = reference.assign(**{PREDICTION: predicted})
    if task == "classification":
        reference[PREDICTION] = reference[PREDICTION].astype(str)
        return reference, current.assign(**{PREDICTION: current[PREDICTION].astype(str)}), ColumnSpec(
            spec.numerical, [*spec.categorical, PREDICTION])
    current = current.assign(**{PREDICTION: pd.to_numeric(current[PREDICTION], errors="coerce")})
    return reference, current, ColumnSpec([*spec.numerical, PREDICTION], spec.categorical)


def log_drift_run(ctx: Context, kind: str, model: str, report: DriftReport, *, params: dict[str, Any],
                  tags: dict[str, str] | None = None, artifacts: dict[str, str] | None = None) -> tuple[str, str]:
    """Log a drift run (``infer_`` or ``drift_``): per-column statistics, the verdict, the JSON report."""
    verdict = "drift" if report.dataset_drift else "no drift"
    telemetry.drift_verdict(model, report.dataset_drift,
                            {c.column: c.drifted for c in report.columns if c.status == "ok"})
    run_tags = {"mlaas.kind": kind, "drift.verdict": verdict, **(tags or {})}
    with ctx.registry.run(kind, model, tags=run_tags) as run:
        run.log_params(params)
        values: dict[str, float] = {"dataset_drift": float(report.dataset_drift),
                                    "share_drifted": float(report.share_drifted)}
        for column in report.columns:
            if column.statistic is not None:
                values[f"{column.column}.statistic"] = float(column.statistic)
            if column.p_value is not None:
                values[f"{column.column}.p_value"] = float(column.p_value)
            values[f"{column.column}.drifted"] = float(column.drifted)
        run.log_metrics({_metric_name(k): v for k, v in values.items()})
        run.log_json(report.to_dict(), "drift_report.json")
        for name, text in (artifacts or {}).items():
            run.log_text(text, name)
        return run.run_id, run.name


def _metric_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in name)
