"""Drift checks: captured inference rows of a model version against its ``drift-data`` baseline.

One mechanism for every check of served traffic: the flush task starts it once enough rows are waiting,
beat's sweep starts it too, and each check logs an MLflow run ``infer_{timestamp}``.
"""

from __future__ import annotations

import io
import logging
from typing import Any

import pandas as pd

from mlaas.adapters.capture_buffer import CaptureBuffer
from mlaas.context import Context
from mlaas.dataconfig import DataConfig
from mlaas.datasets import read_config, read_frame
from mlaas.drift import ColumnSpec, DriftReport, compare
from mlaas.errors import InvalidInput
from mlaas.services import capture
from mlaas.uris import S3Uri, parse_uri

log = logging.getLogger(__name__)
CHECK_LOCK_SECONDS = 900


def baseline_of(ctx: Context, model: str, version: int) -> tuple[pd.DataFrame, DataConfig, str]:
    """A version's drift baseline and the data config stored beside it (or recorded on the version)."""
    mv = ctx.registry.get_version(model, version)
    uri_text = mv.tags.get("drift-data")
    if not uri_text:
        raise InvalidInput(f"model {model} v{version} has no drift-data baseline (train it through mlaas first)")
    uri = parse_uri(uri_text, field="drift-data")
    beside = S3Uri(uri.bucket, uri.key.rsplit("/", 1)[0] + "/data_config.yaml")
    recorded = mv.tags.get("data_config", "")
    config_uri = beside if ctx.storage.exists(beside) else parse_uri(recorded, field="data_config")
    config = DataConfig.parse(read_config(ctx.storage, config_uri), source=str(config_uri))
    return read_frame(ctx.storage, uri, field="drift-data").frame, config, str(uri)


def spec_of(config: DataConfig) -> ColumnSpec:
    return ColumnSpec(numerical=list(config.numerical_features), categorical=list(config.categorical_features))


def check_inference(ctx: Context, buffer: CaptureBuffer, model: str, version: int, *,
                    min_rows: int | None = None) -> dict[str, Any]:
    """Compare the captured rows not yet checked with the baseline; log ``infer_{timestamp}``."""
    key = buffer.stream_key(model, version)
    lock = buffer.lock(f"check:{key}", CHECK_LOCK_SECONDS)
    if not lock.acquire(blocking=False):
        return {"model": model, "version": version, "checked": False, "reason": "a check is already running"}
    try:
        return _check(ctx, buffer, key, model, version, ctx.settings.drift_min_rows if min_rows is None else min_rows)
    finally:
        try:
            lock.release()
        except Exception:
            log.warning("drift check lock of %s expired before release", key)


def _check(ctx: Context, buffer: CaptureBuffer, key: str, model: str, version: int, min_rows: int) -> dict[str, Any]:
    watermark = buffer.get_text(f"checked:{key}") or ""
    base = capture.folder(ctx.settings.drift_bucket, model, version)
    files = sorted(o.uri.key for o in ctx.storage.list(base.bucket, base.key + "/") if o.uri.key > watermark
                   and o.uri.key.endswith(".parquet"))
    if not files:
        return {"model": model, "version": version, "checked": False, "reason": "no new captured rows"}
    frames = [pd.read_parquet(io.BytesIO(ctx.storage.get_bytes(S3Uri(base.bucket, f)))) for f in files]
    current = pd.concat(frames, ignore_index=True)
    if len(current) < min_rows:
        return {"model": model, "version": version, "checked": False,
                "reason": f"{len(current)} captured rows waiting, fewer than {min_rows}"}
    reference, config, baseline_uri = baseline_of(ctx, model, version)
    report = compare(reference, current, spec_of(config))
    window = {"from": str(current["_ts"].min()), "to": str(current["_ts"].max()), "rows": len(current),
              "files": len(files), "first_file": files[0], "last_file": files[-1]}
    run_id, run_name = log_drift_run(ctx, "infer", model, report, params={
        "model": model, "version": version, "reference": baseline_uri,
        "current": f"s3://{base.bucket}/{base.key}/", "window_from": window["from"], "window_to": window["to"],
        "rows_reference": len(reference), "rows_current": len(current), "files": len(files),
    }, tags={"mlaas.model_version": str(version)})
    buffer.set_text(f"checked:{key}", files[-1])
    buffer.take_unchecked(key, len(current))
    return {"model": model, "version": version, "checked": True, "run_id": run_id, "run_name": run_name,
            "dataset_drift": report.dataset_drift, "share_drifted": report.share_drifted,
            "drifted_columns": report.drifted_columns, "window": window}


def log_drift_run(ctx: Context, kind: str, model: str, report: DriftReport, *, params: dict[str, Any],
                  tags: dict[str, str] | None = None, artifacts: dict[str, str] | None = None) -> tuple[str, str]:
    """Log a drift run (``infer_`` or ``drift_``): per-column statistics, the verdict, the JSON report."""
    verdict = "drift" if report.dataset_drift else "no drift"
    run_tags = {"mlaas.kind": kind, "drift.verdict": verdict, **(tags or {})}
    with ctx.registry.run(kind, model, tags=run_tags) as run:
        run.log_params(params)
        metrics: dict[str, float] = {"dataset_drift": float(report.dataset_drift),
                                     "share_drifted": float(report.share_drifted)}
        for column in report.columns:
            if column.statistic is not None:
                metrics[f"{column.column}.statistic"] = float(column.statistic)
            if column.p_value is not None:
                metrics[f"{column.column}.p_value"] = float(column.p_value)
            metrics[f"{column.column}.drifted"] = float(column.drifted)
        run.log_metrics({_metric_name(k): v for k, v in metrics.items()})
        run.log_json(report.to_dict(), "drift_report.json")
        for name, text in (artifacts or {}).items():
            run.log_text(text, name)
        return run.run_id, run.name


def _metric_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in name)
