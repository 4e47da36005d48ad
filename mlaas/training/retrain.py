"""Retraining a registered model on new data from storage, logged and registered in MLflow."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import train_test_split

from mlaas.adapters.registry import STAGE_TAG, ModelVersion
from mlaas.context import Context
from mlaas.datasets.config import DataConfig
from mlaas.datasets.frames import LoadedFrame, read_config, read_frame, write_config, write_frame
from mlaas.errors import InvalidInput
from mlaas.training import promotion, scoring
from mlaas.uris import S3Uri, parse_uri

Progress = Callable[[str, int], None]


@dataclass(frozen=True)
class Prepared:
    """A training job's parameters, resolved and checked at submission."""

    params: dict[str, Any]
    version: ModelVersion


def prepare(ctx: Context, request: dict[str, Any]) -> Prepared:
    """Resolve the model version and fill data URIs from its tags; 404/400 before anything is queued."""
    version = ctx.registry.resolve(request["model"], request.get("version"))
    dataset = request.get("dataset") or version.tags.get("dataset")
    data_config = request.get("data_config") or version.tags.get("data_config")
    missing = [n for n, v in (("dataset", dataset), ("data_config", data_config)) if not v]
    if missing:
        raise InvalidInput(
            f"{' and '.join(missing)} missing: give them in the request (version {version.version} "
            "records none from a previous training)"
        )
    buckets = ctx.settings.buckets
    uris = {"dataset": dataset, "data_config": data_config, "test_dataset": request.get("test_dataset")}
    for field, value in uris.items():
        if value:
            parse_uri(value, allowed_buckets=buckets, field=field)
    params = {
        "model": version.name,
        "version": version.version,
        "dataset": dataset,
        "data_config": data_config,
        "test_dataset": request.get("test_dataset"),
        "drift_fraction": request.get("drift_fraction", ctx.settings.drift_fraction),
        "test_fraction": request.get("test_fraction", ctx.settings.test_fraction),
        "random_state": request.get("random_state"),
        "promote": bool(request.get("promote", False)),
    }
    return Prepared(params, version)


def run(ctx: Context, job_id: str, params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """The training job: data → split → baseline → fit → evaluate → log → register → tag → promote."""
    name, source_version = params["model"], int(params["version"])
    buckets = ctx.settings.buckets
    progress("download_data", 5)
    config_uri = parse_uri(params["data_config"], allowed_buckets=buckets, field="data_config")
    config = DataConfig.parse(read_config(ctx.storage, config_uri), source=str(config_uri))
    data = _load_checked(ctx, params["dataset"], config, "dataset")
    test = _load_checked(ctx, params["test_dataset"], config, "test_dataset") if params.get("test_dataset") else None
    task = config.infer_task(data.frame[config.target_column])

    progress("split", 15)
    train_df, baseline_df, holdout_df = split(
        data.frame, config, task, drift_fraction=float(params["drift_fraction"]),
        test_fraction=0.0 if test is not None else float(params["test_fraction"]),
        random_state=params.get("random_state"),
    )
    test_df = test.frame if test is not None else holdout_df

    progress("save_baseline", 25)
    folder = S3Uri(ctx.settings.drift_bucket, f"{name}/{job_id}")
    baseline_uri = folder.child("baseline.parquet")
    write_frame(ctx.storage, baseline_uri, baseline_df)
    write_config(ctx.storage, folder.child("data_config.yaml"), config.model_dump(exclude_none=True))
    test_uri = str(test.uri) if test is not None else str(folder.child("holdout.parquet"))
    if test is None:
        write_frame(ctx.storage, folder.child("holdout.parquet"), holdout_df)

    progress("load_model", 35)
    source = ctx.registry.resolve(name, source_version)
    loaded = ctx.registry.load_model(source)
    if loaded.flavor != "sklearn":
        raise InvalidInput(f"model {name} v{source_version} is not a scikit-learn model, so it cannot be retrained")

    progress("fit", 50)
    estimator = clone(loaded.estimator)
    X_train, y_train = train_df[config.features], train_df[config.target_column]
    try:
        estimator.fit(X_train, y_train)
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(f"fitting {name} v{source_version} on {data.uri} failed: {exc}") from None

    progress("evaluate", 70)
    X_test, y_test = test_df[config.features], test_df[config.target_column]
    y_pred, proba, classes = scoring.predict(estimator, X_test, task)
    scores = scoring.compute(task, y_test, y_pred, proba, classes)

    progress("register", 85)
    tags = {
        "drift-data": str(baseline_uri), "dataset": str(data.uri), "data_config": str(config_uri),
        "test_dataset": test_uri, "source_version": str(source_version), "job_id": job_id, "task": task,
    }
    # Only a job that ran before (a redelivery: attempts > 1) can have registered its version already.
    ran_before = ctx.jobs.get(job_id).get("attempts") != 1
    existing = ctx.registry.find_version_by_tag(name, "job_id", job_id) if ran_before else None
    if existing is not None:  # redelivered after registering: reuse, never register twice
        new_version, run_id, run_name = existing, existing.run_id, existing.tags.get("run_name", "")
        tags.update({STAGE_TAG: existing.tags.get(STAGE_TAG, "staging"), "run_name": run_name})
        ctx.registry.set_tags(name, new_version.version, tags)  # a redelivery may have stopped before them
    else:  # the version is created with all its tags: one call to the registry instead of one per tag
        new_version, run_id, run_name = _log_and_register(
            ctx, job_id, params, estimator, config, task, scores, data, test_uri, baseline_uri,
            sizes={"train": len(train_df), "baseline": len(baseline_df), "test": len(test_df)}, tags=tags,
        )

    decision: dict[str, Any] = {"requested": bool(params.get("promote")), "promoted": False}
    if params.get("promote"):
        progress("promote", 95)
        verdict = promotion.gate(ctx, name, scores, X=X_test, y=y_test, task=task, exclude_version=new_version.version)
        decision.update(verdict.to_dict())
        if verdict.passed:
            promotion.promote(ctx, name, new_version.version, actor=f"job:{job_id}", reason=verdict.reason)
            decision["promoted"] = True
    return {
        "run_id": run_id, "run_name": run_name, "model": name, "version": new_version.version,
        "source_version": source_version, "task": task, "drift_data": str(baseline_uri), "test_dataset": test_uri,
        "test_set": "test_dataset" if test is not None else "holdout", "metrics": scores,
        "undefined_metrics": scores.undefined, "promotion": decision,
    }


def split(
    frame: pd.DataFrame, config: DataConfig, task: str, *, drift_fraction: float, test_fraction: float,
    random_state: int | None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Split rows (X and y together) into training, drift-baseline and holdout parts; stratified when possible."""
    columns = list(dict.fromkeys([*config.index_columns, *config.features, config.target_column]))
    rows = frame[columns].reset_index(drop=True)
    if drift_fraction + test_fraction >= 0.9:
        raise InvalidInput("drift_fraction + test_fraction must leave at least 10% of the rows for training")
    parts: list[pd.DataFrame] = []
    rest = rows
    taken = 0.0
    for fraction in (drift_fraction, test_fraction):  # both are shares of the whole data set
        if fraction <= 0:
            parts.append(rest.iloc[0:0])
            continue
        share = fraction / (1 - taken)
        stratify = _stratify(rest[config.target_column], share) if task == "classification" else None
        try:
            rest, part = train_test_split(rest, test_size=share, stratify=stratify, random_state=random_state)
        except ValueError as exc:
            raise InvalidInput(f"dataset: cannot split {len(rest)} rows with fraction {fraction}: {exc}") from None
        parts.append(part)
        taken += fraction
    if len(rest) < 2:
        raise InvalidInput(f"dataset: only {len(rest)} rows left for training after the splits")
    return rest, parts[0], parts[1]


def _stratify(target: pd.Series, fraction: float) -> pd.Series | None:
    counts = target.value_counts()
    smallest_side = min(fraction, 1 - fraction) * len(target)
    if counts.min() < 2 or smallest_side < len(counts):
        return None
    return target


def _load_checked(ctx: Context, uri_text: str, config: DataConfig, field: str) -> LoadedFrame:
    uri = parse_uri(uri_text, allowed_buckets=ctx.settings.buckets, field=field)
    loaded = read_frame(ctx.storage, uri, field=field)
    config.check_columns(loaded.frame, source=f"{field} {uri}")
    target = loaded.frame[config.target_column]
    if target.isna().all():
        raise InvalidInput(f"{field} {uri}: target column {config.target_column!r} is empty")
    if target.isna().any():
        raise InvalidInput(
            f"{field} {uri}: target column {config.target_column!r} has {int(target.isna().sum())} missing values"
        )
    task = config.infer_task(target)
    if task == "classification" and target.nunique() < 2 and field == "dataset":
        raise InvalidInput(f"{field} {uri}: target column {config.target_column!r} has fewer than two classes")
    if task == "regression":
        if not pd.api.types.is_numeric_dtype(target):
            raise InvalidInput(f"{field} {uri}: regression target {config.target_column!r} is not numeric")
        if target.nunique() < 2 and field == "dataset":
            raise InvalidInput(f"{field} {uri}: target column {config.target_column!r} is constant")
    return loaded


def _log_and_register(
    ctx: Context, job_id: str, params: dict[str, Any], estimator: Any, config: DataConfig, task: str,
    scores: dict[str, float], data: LoadedFrame, test_uri: str, baseline_uri: S3Uri, sizes: dict[str, int],
    tags: dict[str, str],
) -> tuple[ModelVersion, str, str]:
    name = params["model"]
    with ctx.registry.run("train", name, tags={"mlaas.job_id": job_id, "mlaas.kind": "train"}) as run:
        run.log_params({
            "source_model": name, "source_version": params["version"], "dataset": str(data.uri),
            "dataset_sha256": data.sha256, "data_config": params["data_config"], "test_dataset": test_uri,
            "baseline": str(baseline_uri), "task": task, "drift_fraction": params["drift_fraction"],
            "test_fraction": params["test_fraction"] if not params.get("test_dataset") else 0,
            "random_state": params.get("random_state"), "rows": len(data.frame),
            **{f"rows_{k}": v for k, v in sizes.items()},
            "test_set": "test_dataset" if params.get("test_dataset") else "holdout",
        })
        run.log_metrics(scores)
        run.log_json(config.model_dump(), "data_config.json")
        example = data.frame[config.features].head(5)
        version = run.register_sklearn_model(
            estimator, name=name, example=example, tags={**tags, STAGE_TAG: "staging", "run_name": run.name}
        )
        return version, run.run_id, run.name
