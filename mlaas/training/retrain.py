"""Retraining a registered model on new data from storage, logged and registered in MLflow."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import train_test_split

from mlaas import jobs
from mlaas.adapters.registry import STAGE_TAG, ModelVersion
from mlaas.context import Context
from mlaas.datasets.config import DataConfig
from mlaas.datasets.frames import LoadedFrame, checked_uri, read_config, read_dataset, write_config, write_frame
from mlaas.datasets.uploads import readable_uri
from mlaas.errors import Cancelled, InvalidInput, MlaasError
from mlaas.inference.boosters import NativeModel
from mlaas.training import promotion, scoring
from mlaas.training.specs import TrainJob, TrainSpec
from mlaas.uris import S3Uri

log = logging.getLogger(__name__)

Progress = Callable[[str, int], None]


def prepare(spec: TrainSpec, *, ctx: Context) -> TrainJob:
    """Resolve the model version and fill data URIs from its tags; 404/400 before anything is queued."""
    version = ctx.registry.resolve(spec.model, spec.version)
    dataset = spec.dataset or version.tags.get("dataset")
    data_config = spec.data_config or version.tags.get("data_config")
    if not dataset or not data_config:
        missing = [n for n, v in (("dataset", dataset), ("data_config", data_config)) if not v]
        raise InvalidInput(
            f"{' and '.join(missing)} missing: give them in the request (version {version.version} "
            "records none from a previous training)"
        )
    for field, value in (("dataset", dataset), ("data_config", data_config), ("test_dataset", spec.test_dataset)):
        if value:
            checked_uri(value, settings=ctx.settings, field=field)
            if value == getattr(spec, field):  # named by this request, not recorded by an earlier training
                readable_uri(value, ctx=ctx, field=field)
    return TrainJob(model=version.name, version=version.version, dataset=dataset, data_config=data_config,
                    test_dataset=spec.test_dataset, drift_fraction=spec.drift_fraction,
                    test_fraction=spec.test_fraction, random_state=spec.random_state, promote=spec.promote)


def submit(spec: TrainSpec, *, ctx: Context, idempotency_key: str | None = None,
           request_id: str = "") -> dict[str, Any]:
    """Check and pin a training request, then queue it as a job; the same idempotency key gives the same job."""
    job, _ = jobs.submit(prepare(spec, ctx=ctx), ctx=ctx, idempotency_key=idempotency_key, request_id=request_id)
    return job


@dataclass(frozen=True)
class Inputs:
    """What a training job read: the data config, the training data, an optional test set, the task."""

    config_uri: S3Uri
    config: DataConfig
    data: LoadedFrame
    test: LoadedFrame | None
    task: str


@dataclass(frozen=True)
class Parts:
    """The rows each stage uses, and where the baseline and the test set are stored."""

    train: pd.DataFrame
    baseline: pd.DataFrame
    test: pd.DataFrame
    baseline_uri: S3Uri
    test_uri: str


def run(job: TrainJob, *, ctx: Context, job_id: str, progress: Progress) -> dict[str, Any]:
    """The training job: data → split → baseline → fit → evaluate → log → register → tag → promote."""
    progress("download_data", 5)
    inputs = load_inputs(job, ctx=ctx)
    progress("split", 15)
    train_df, baseline_df, holdout_df = split(
        inputs.data.frame, inputs.config, inputs.task, drift_fraction=job.drift_fraction,
        test_fraction=0.0 if inputs.test is not None else job.test_fraction, random_state=job.random_state,
    )
    progress("save_baseline", 25)
    parts = save_parts(train_df, baseline_df, holdout_df, inputs, job, ctx=ctx, job_id=job_id)
    progress("load_model", 35)
    estimator = load_source(job, ctx=ctx)
    progress("fit", 50)
    fit(estimator, parts.train, inputs, job)
    progress("evaluate", 70)
    X_test, y_test = parts.test[inputs.config.features], parts.test[inputs.config.target_column]
    y_pred, proba, classes = scoring.predict(estimator, X_test, inputs.task)
    scores = scoring.compute(inputs.task, y_test, y_pred, proba, classes)
    progress("register", 85)
    new_version, run_id, run_name = register(job, estimator, inputs, parts, scores, ctx=ctx, job_id=job_id,
                                             fence=lambda: progress("register", 90))
    decision: dict[str, Any] = {"requested": job.promote, "promoted": False}
    try:  # a cancel that arrived while the version was being created withdraws it
        progress("registered", 92)
        if job.promote:
            progress("promote", 95)
    except Cancelled:
        withdraw(job.model, new_version, job_id, ctx=ctx)
        raise
    if job.promote:
        decision = promote_if_better(job.model, new_version.version, scores, X=X_test, y=y_test, task=inputs.task,
                                     candidate=estimator, ctx=ctx, actor=f"job:{job_id}")
    return {
        "run_id": run_id, "run_name": run_name, "model": job.model, "version": new_version.version,
        "source_version": job.version, "task": inputs.task, "drift_data": str(parts.baseline_uri),
        "test_dataset": parts.test_uri, "test_set": "test_dataset" if inputs.test is not None else "holdout",
        "metrics": scores, "undefined_metrics": scores.undefined, "promotion": decision,
    }


def load_inputs(job: TrainJob, *, ctx: Context) -> Inputs:
    """Read the data config, the training data and the test set (if given), each checked against the config."""
    config_uri = checked_uri(job.data_config, settings=ctx.settings, field="data_config")
    config = DataConfig.parse(read_config(ctx.storage, config_uri), source=str(config_uri))
    data = _load_checked(ctx, job.dataset, config, "dataset")
    test = _load_checked(ctx, job.test_dataset, config, "test_dataset") if job.test_dataset else None
    return Inputs(config_uri, config, data, test, config.infer_task(data.frame[config.target_column]))


def save_parts(train_df: pd.DataFrame, baseline_df: pd.DataFrame, holdout_df: pd.DataFrame, inputs: Inputs,
               job: TrainJob, *, ctx: Context, job_id: str) -> Parts:
    """Store the drift baseline with its data config (and the holdout when it is the test set)."""
    folder = ctx.settings.drift_uri(f"{job.model}/{job_id}")
    baseline_uri = folder.child("baseline.parquet")
    write_frame(ctx.storage, baseline_uri, baseline_df)
    write_config(ctx.storage, folder.child("data_config.yaml"), inputs.config.model_dump(exclude_none=True))
    if inputs.test is not None:
        return Parts(train_df, baseline_df, inputs.test.frame, baseline_uri, str(inputs.test.uri))
    write_frame(ctx.storage, folder.child("holdout.parquet"), holdout_df)
    return Parts(train_df, baseline_df, holdout_df, baseline_uri, str(folder.child("holdout.parquet")))


def load_source(job: TrainJob, *, ctx: Context) -> Any:
    """A fresh, unfitted copy of the source version's estimator, with the same hyperparameters."""
    version = ctx.registry.resolve(job.model, job.version)
    loaded = ctx.registry.load_model(version)
    if isinstance(loaded.estimator, NativeModel):  # XGBoost's file lacks some: the source run may have logged them
        return loaded.estimator.fresh(ctx.registry.run_params(version.run_id) if version.run_id else {})
    if loaded.flavor != "sklearn":
        raise InvalidInput(f"model {job.model} v{job.version} is not a scikit-learn model, so it cannot be retrained")
    return clone(loaded.estimator)


def fit(estimator: Any, train_df: pd.DataFrame, inputs: Inputs, job: TrainJob) -> None:
    """Fit the estimator on the training rows; a fit the data cannot support is a 400 naming the dataset."""
    try:
        estimator.fit(train_df[inputs.config.features], train_df[inputs.config.target_column])
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(f"fitting {job.model} v{job.version} on {inputs.data.uri} failed: {exc}") from None


def register(job: TrainJob, estimator: Any, inputs: Inputs, parts: Parts, scores: dict[str, float], *,
             ctx: Context, job_id: str,
             fence: Callable[[], None] = lambda: None) -> tuple[ModelVersion, str | None, str]:
    """Log the run and register the new version with its tags, once per job (a redelivery reuses it).

    ``fence`` runs right before the version is created: it raises when this attempt no longer holds the job
    (its lease was taken over), so a stale attempt registers nothing.
    """
    tags = {
        "drift-data": str(parts.baseline_uri), "dataset": str(inputs.data.uri), "data_config": str(inputs.config_uri),
        "test_dataset": parts.test_uri, "source_version": str(job.version), "job_id": job_id, "task": inputs.task,
    }
    # Only a job that ran before (a redelivery: attempts > 1) can have registered its version already.
    ran_before = ctx.jobs.get(job_id).get("attempts") != 1
    existing = ctx.registry.find_version_by_tag(job.model, "job_id", job_id) if ran_before else None
    if existing is None:  # the version is created with all its tags: one call to the registry instead of one per tag
        return _log_and_register(ctx, job_id, job, estimator, inputs, scores, parts, tags=tags, fence=fence)
    run_name = existing.tags.get("run_name", "")
    tags.update({STAGE_TAG: existing.tags.get(STAGE_TAG, "staging"), "run_name": run_name})
    ctx.registry.set_tags(job.model, existing.version, tags)  # a redelivery may have stopped before them
    return existing, existing.run_id, run_name


def withdraw(model: str, version: ModelVersion, job_id: str, *, ctx: Context) -> None:
    """Delete the version a cancelled job created (never served: no alias points at it yet); the run stays."""
    try:
        ctx.registry.delete_version(model, version.version)
    except MlaasError as exc:  # the job still ends cancelled; the version stays, tagged as such
        log.warning("job %s cancelled; its version %s v%s not deleted: %s", job_id, model, version.version,
                    exc.message)
        with contextlib.suppress(MlaasError):
            ctx.registry.set_tags(model, version.version, {STAGE_TAG: "cancelled"})
    else:
        log.info("job %s cancelled; its version %s v%s deleted", job_id, model, version.version)


def promote_if_better(model: str, number: int, scores: dict[str, float], *, X: pd.DataFrame, y: pd.Series,
                      task: str, candidate: Any, ctx: Context, actor: str) -> dict[str, Any]:
    """Apply the promotion gate to a version (``candidate``: its estimator); promote it when it passes."""
    verdict = promotion.gate(ctx, model, scores, X=X, y=y, task=task, candidate=candidate, exclude_version=number)
    decision: dict[str, Any] = {"requested": True, "promoted": False, **verdict.to_dict()}
    if verdict.passed:
        promotion.promote(ctx, model, number, actor=actor, reason=verdict.reason)
        decision["promoted"] = True
    return decision


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
    loaded = read_dataset(ctx.storage, uri_text, settings=ctx.settings, field=field)
    uri = loaded.uri
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


def _log_and_register(ctx: Context, job_id: str, job: TrainJob, estimator: Any, inputs: Inputs,
                      scores: dict[str, float], parts: Parts, *, tags: dict[str, str],
                      fence: Callable[[], None]) -> tuple[ModelVersion, str | None, str]:
    data, config = inputs.data, inputs.config
    sizes = {"train": len(parts.train), "baseline": len(parts.baseline), "test": len(parts.test)}
    with ctx.registry.run("train", job.model, tags={"mlaas.job_id": job_id, "mlaas.kind": "train"}) as run:
        run.log_params({
            "source_model": job.model, "source_version": job.version, "dataset": str(data.uri),
            "dataset_sha256": data.sha256, "data_config": job.data_config, "test_dataset": parts.test_uri,
            "baseline": str(parts.baseline_uri), "task": inputs.task, "drift_fraction": job.drift_fraction,
            "test_fraction": job.test_fraction if not job.test_dataset else 0,
            "random_state": job.random_state, "rows": len(data.frame),
            **{f"rows_{k}": v for k, v in sizes.items()},
            "test_set": "test_dataset" if job.test_dataset else "holdout",
        })
        run.log_metrics(scores)
        run.log_json(config.model_dump(), "data_config.json")
        example = data.frame[config.features].head(5)
        fence()
        register_model = run.register_native_model if isinstance(estimator, NativeModel) else run.register_sklearn_model
        version = register_model(
            estimator, name=job.model, example=example, tags={**tags, STAGE_TAG: "staging", "run_name": run.name}
        )
        return version, run.run_id, run.name
