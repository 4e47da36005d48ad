"""Evaluating a model version (and optionally a challenger) on a labelled test set in storage."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from mlaas import jobs
from mlaas.adapters.registry import ModelVersion
from mlaas.context import Context
from mlaas.datasets.config import DataConfig
from mlaas.datasets.frames import LoadedFrame, checked_uri, frame_to_parquet, read_config, read_dataset
from mlaas.datasets.uploads import readable_uri
from mlaas.errors import InvalidInput
from mlaas.training import plots, promotion, scoring
from mlaas.training.retrain import promote_if_better
from mlaas.training.specs import EvaluateJob, EvaluateSpec

Progress = Callable[[str, int], None]
EVAL_TAGS = ("eval.run_id", "eval.dataset", "eval.dataset_sha256", "eval.metric", "eval.value", "eval.metrics",
             "eval.at")


def prepare(spec: EvaluateSpec, *, ctx: Context) -> EvaluateJob:
    """Resolve the versions and fill the test set and config; 404/400 before anything is queued."""
    version = ctx.registry.resolve(spec.model, spec.version)
    dataset = spec.dataset or version.tags.get("test_dataset") or ctx.settings.default_test_dataset
    data_config = spec.data_config or version.tags.get("data_config")
    if not dataset or not data_config:
        missing = [n for n, v in (("dataset", dataset), ("data_config", data_config)) if not v]
        raise InvalidInput(f"{' and '.join(missing)} missing: give them in the request (version "
                           f"{version.version} records none, and no default test set is configured)")
    for field, value in (("dataset", dataset), ("data_config", data_config)):
        checked_uri(value, settings=ctx.settings, field=field)
        if value == getattr(spec, field):  # named by this request, not a recorded tag or the configured default
            readable_uri(value, ctx=ctx, field=field)
    challenger = None
    if spec.compare_with is not None:
        challenger = ctx.registry.resolve(version.name, spec.compare_with).version
    return EvaluateJob(model=version.name, version=version.version, dataset=dataset, data_config=data_config,
                       compare_with=challenger, promote=spec.promote)


def submit(spec: EvaluateSpec, *, ctx: Context, idempotency_key: str | None = None,
           request_id: str = "") -> dict[str, Any]:
    """Check and pin an evaluation request, then queue it as a job; the same idempotency key gives the same job."""
    job, _ = jobs.submit(prepare(spec, ctx=ctx), ctx=ctx, idempotency_key=idempotency_key, request_id=request_id)
    return job


def run(job: EvaluateJob, *, ctx: Context, job_id: str, progress: Progress) -> dict[str, Any]:
    """The evaluation job: data → predictions → metrics and pictures → ``eval_`` run → tags → verdict."""
    name = job.model
    progress("download_data", 10)
    config_uri = checked_uri(job.data_config, settings=ctx.settings, field="data_config")
    config = DataConfig.parse(read_config(ctx.storage, config_uri), source=str(config_uri))
    data = read_dataset(ctx.storage, job.dataset, settings=ctx.settings, field="dataset")
    config.check_columns(data.frame, source=f"dataset {data.uri}")
    frame = data.frame.dropna(subset=[config.target_column])
    if frame.empty:
        raise InvalidInput(f"dataset {data.uri}: no row has a value in {config.target_column!r}")
    X, y = frame[config.features], frame[config.target_column]

    results = {}
    order = [job.version] + ([job.compare_with] if job.compare_with else [])
    for step, number in enumerate(dict.fromkeys(order)):
        progress(f"evaluate_v{number}", 30 + 30 * step)
        version = ctx.registry.get_version(name, int(number))
        results[number] = _evaluate(ctx, version, X, y, config, data, job_id)

    progress("compare", 90)
    main = results[job.version]
    out: dict[str, Any] = {"model": name, "version": job.version, "dataset": str(data.uri),
                           "dataset_sha256": data.sha256, "rows": len(frame), "task": main["task"],
                           "metrics": main["metrics"], "undefined_metrics": main["metrics"].undefined,
                           "confusion_matrix": main.get("confusion_matrix"),
                           "run_id": main["run_id"], "run_name": main["run_name"]}
    metric = promotion.primary_metric(ctx, name, main["task"])
    if job.compare_with:
        other = results[job.compare_with]
        verdict = promotion.decide(metric, main["metrics"], other["metrics"], job.compare_with)
        out["comparison"] = {
            "metric": metric, "challenger_version": job.compare_with, "challenger_metrics": other["metrics"],
            "challenger_run_id": other["run_id"], "better": verdict.passed, "reason": verdict.reason,
        }
    out["promotion"] = {"requested": job.promote, "promoted": False}
    if job.promote:
        out["promotion"] = promote_if_better(name, job.version, main["metrics"], X=X, y=y, task=main["task"],
                                             candidate=main["estimator"], ctx=ctx, actor=f"job:{job_id}")
    return out


def _evaluate(ctx: Context, version: ModelVersion, X: pd.DataFrame, y: pd.Series, config: DataConfig,
              data: LoadedFrame, job_id: str) -> dict[str, Any]:
    loaded = ctx.registry.load_model(version)
    task = version.tags.get("task") or config.infer_task(y)
    try:
        y_pred, proba, classes = scoring.predict(loaded.estimator, X, task)
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(f"{version.name} v{version.version} could not score {data.uri}: {exc}") from None
    scores = scoring.compute(task, y, y_pred, proba, classes)
    label = f"{version.name} v{version.version}"
    with ctx.registry.run("eval", version.name, tags={"mlaas.job_id": job_id, "mlaas.kind": "eval",
                                                      "mlaas.model_version": str(version.version)}) as run:
        run.log_params({"model": version.name, "version": version.version, "dataset": str(data.uri),
                        "dataset_sha256": data.sha256, "rows": len(X), "task": task})
        run.log_metrics(scores)
        predictions = pd.DataFrame({"row": range(len(X)), "actual": y.to_numpy(), "predicted": y_pred})
        if proba is not None:
            for i, cls in enumerate(classes):
                predictions[f"proba_{cls}"] = proba[:, i]
        run.log_bytes(frame_to_parquet(predictions), "predictions.parquet")
        extra: dict[str, Any] = {}
        if task == "classification":
            cm = scoring.confusion(y, y_pred)
            extra["confusion_matrix"] = cm
            run.log_json(cm, "confusion_matrix.json")
            run.log_bytes(plots.confusion_matrix_png(cm["labels"], cm["matrix"], label), "confusion_matrix.png")
            if proba is not None and len(np.unique(y)) > 1:
                run.log_bytes(plots.roc_png(y, proba, classes, label), "roc_curve.png")
        else:
            run.log_bytes(plots.residuals_png(y, y_pred, label), "residuals.png")
        run_id, run_name = run.run_id, run.name
    metric = promotion.primary_metric(ctx, version.name, task)
    ctx.registry.set_tags(version.name, version.version, {
        "eval.run_id": run_id, "eval.dataset": str(data.uri), "eval.dataset_sha256": data.sha256,
        "eval.metric": metric, "eval.value": scores.get(metric, ""),
        "eval.metrics": json.dumps(scores, allow_nan=False),
        "eval.at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "task": task,
    })
    return {"task": task, "metrics": scores, "run_id": run_id, "run_name": run_name, "estimator": loaded.estimator,
            **extra}
