"""POST /feedback: outcomes of served predictions, stored as received and joined later by a worker."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pandas as pd

from mlaas import jobs
from mlaas.adapters.monitorstore import utcnow
from mlaas.context import Context
from mlaas.datasets.frames import read_dataset
from mlaas.errors import InvalidInput, TooLarge
from mlaas.quality import join, store
from mlaas.quality.estimate import label
from mlaas.quality.specs import FeedbackJob, FeedbackSpec
from mlaas.queues import FEEDBACK_JOIN
from mlaas.uris import parse_uri

Progress = Callable[[str, int], None]
NAMED = 10  # ids named in an error message at most
JOIN_TRIES = 60


def _named(values: list[Any]) -> str:
    shown = ", ".join(repr(v) for v in values[:NAMED])
    return shown + (f" and {len(values) - NAMED} more" if len(values) > NAMED else "")


def outcomes_frame(ids: pd.Series, actual: pd.Series, batch: str, *, source: str) -> pd.DataFrame:
    """Outcomes as stored, after refusing missing ids, missing outcomes and duplicate ids (400 naming them)."""
    missing = [i for i, v in enumerate(ids) if v is None or (isinstance(v, float) and v != v) or v == ""]
    if missing:
        raise InvalidInput(f"{source}: rows {_named(missing)} have no id")
    text = ids.map(label)
    repeated = text[text.duplicated(keep=False)].unique().tolist()
    if repeated:
        raise InvalidInput(f"{source}: duplicate ids {_named(repeated)} (give one outcome per id)")
    empty = actual.isna()
    if empty.any():
        raise InvalidInput(f"{source}: ids {_named(text[empty].tolist())} have no outcome")
    received = pd.Timestamp(utcnow())
    return pd.DataFrame({"_id": text.to_numpy(), "actual": actual.map(label).to_numpy(),
                         "_received": [received] * len(text), "_batch": batch})


def _check_model(spec: FeedbackSpec, *, ctx: Context) -> str:
    return str(ctx.registry.get_model(spec.model)["name"])  # 404 for an unknown model


def submit(spec: FeedbackSpec, *, ctx: Context) -> dict[str, Any]:
    """Store inline outcomes and queue their join; returns what was accepted."""
    model = _check_model(spec, ctx=ctx)
    data = spec.data or []
    if len(data) > ctx.settings.max_feedback_rows:
        raise TooLarge(f"data: {len(data)} outcomes, more than MLAAS_MAX_FEEDBACK_ROWS "
                       f"({ctx.settings.max_feedback_rows}); send them in parts, or as a dataset")
    batch = uuid.uuid4().hex
    frame = outcomes_frame(pd.Series([o.id for o in data], dtype=object),
                           pd.Series([o.actual for o in data], dtype=object), batch, source="data")
    store.write(ctx, store.outcomes_uri(ctx, model, batch, utcnow()), frame)
    # One join queued per model and join interval, however many requests come: beat's join takes the rest.
    if ctx.monitors.claim("feedback-join", model, ttl=max(1, round(ctx.settings.feedback_join_seconds))):
        ctx.queue.send(FEEDBACK_JOIN, [model])
    return {"model": model, "accepted": len(frame), "batch": batch,
            "performance_url": f"/models/{model}/performance"}


def submit_bulk(spec: FeedbackSpec, *, ctx: Context, idempotency_key: str | None = None,
                request_id: str = "") -> dict[str, Any]:
    """Queue a job that reads outcomes from a dataset in storage and joins them."""
    model = _check_model(spec, ctx=ctx)
    dataset = spec.dataset or ""
    parse_uri(dataset, allowed_buckets=ctx.settings.buckets, field="dataset")
    job = FeedbackJob(model=model, dataset=dataset, id_column=spec.id_column, actual_column=spec.actual_column)
    record, _ = jobs.submit(job, ctx=ctx, idempotency_key=idempotency_key, request_id=request_id)
    return record


def run(job: FeedbackJob, *, ctx: Context, job_id: str, progress: Progress) -> dict[str, Any]:
    """The bulk feedback job: read the dataset, check it, store its outcomes, join them now."""
    progress("download_data", 10)
    data = read_dataset(ctx.storage, job.dataset, settings=ctx.settings, field="dataset")
    absent = [c for c in (job.id_column, job.actual_column) if c not in data.frame.columns]
    if absent:
        raise InvalidInput(f"dataset {data.uri}: no column {_named(absent)} (columns: "
                           f"{_named([str(c) for c in data.frame.columns])})")
    frame = outcomes_frame(data.frame[job.id_column].astype(object), data.frame[job.actual_column], job_id,
                           source=f"dataset {data.uri}")
    progress("store", 40)
    store.write(ctx, store.outcomes_uri(ctx, job.model, job_id, utcnow()), frame)
    progress("join", 60)
    joined = join.run(job.model, ctx=ctx, force=True, batch=job_id)
    for _ in range(JOIN_TRIES):  # another join of the model holds its lock: this job's counts need one of its own
        if joined["joined"]:
            break
        time.sleep(1)
        joined = join.run(job.model, ctx=ctx, force=True, batch=job_id)
    return {"model": job.model, "dataset": str(data.uri), "dataset_sha256": data.sha256, "accepted": len(frame),
            "batch": job_id, "join": join.public(joined.get("report"))}
