"""Live quality of a rollout: both versions' answers to the compared rows, kept by id and joined with feedback.

The worker that compares a rollout keeps, per compared request, each row that has its own ``id`` with the two
versions' answers (labels or values; the probabilities of the version that scored it off the request path) in
the drift bucket, at most MLAAS_ROLLOUT_QUALITY_ROWS rows per rollout (rows beyond it, and rows without an id,
are counted):

``rollouts/<model>/<rollout id>/answers/<part>.parquet``   ``_entry``, ``_id``, ``_ts``, ``_served``,
                                                           ``production``, ``candidate``, ``<arm>_proba_<class>``

Whenever a model's outcomes are joined (after POST /feedback, and by beat every MLAAS_FEEDBACK_JOIN_SECONDS) its
rollout's figures are recomputed if the outcomes or the kept answers changed (evaluation's metrics, as
GET /models/<name>/performance computes them) and kept in Redis: GET /models/<name>/rollout reads one key,
whatever the number of outcomes, and the guard judges from the same figures.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd

from mlaas.adapters.monitorstore import utcnow
from mlaas.context import Context
from mlaas.errors import MlaasError
from mlaas.quality import join, performance, store
from mlaas.quality.estimate import label
from mlaas.rollouts.compare import ARMS, Tally
from mlaas.uris import BlobUri

log = logging.getLogger(__name__)
# A comparison is stamped when the worker scored it, up to this long after the request was answered (the queue's
# delay): an outcome received that long before the stamp still joins it.
SCORED_AFTER_SECONDS = 300.0
COMPACT_PARTS = 64  # a rollout's parts are merged into one once there are this many
LOCK_SECONDS = 600
PROBA = "_proba_"


def folder(ctx: Context, model: str, rollout_id: str) -> BlobUri:
    return ctx.settings.drift_uri(f"rollouts/{quote(model, safe='')}/{quote(rollout_id, safe='')}/answers")


class Kept:
    """The compared requests of a batch with both answers, gathered while scoring."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, Any], str, list[Any], np.ndarray | None, list[str], bool]] = []

    def add(self, entry: dict[str, Any], other: str, labels: list[Any], proba: np.ndarray | None,
            classes: list[str], regression: bool) -> None:
        """One request: its entry (served arm, body, served labels), the other arm's labels and probabilities."""
        self.requests.append((entry, other, labels, proba, classes, regression))


def frame(kept: Kept, ids_of: Any) -> tuple[pd.DataFrame, int]:
    """The rows to keep (one per compared row with an id of its own) and how many rows had no id.

    ``ids_of(body)`` gives a request's (ids, explicit) as ``payload.parse_rows`` reads them.
    """
    part = uuid.uuid4().hex[:12]
    records: list[dict[str, Any]] = []
    without_id = 0
    for n, (entry, other, labels, proba, classes, regression) in enumerate(kept.requests):
        ids, explicit = ids_of(entry["body"])
        served = entry["served"]
        for i, (row_id, own) in enumerate(zip(ids, explicit, strict=True)):
            if not own:
                without_id += 1
                continue
            record = {"_entry": f"{part}:{n}", "_id": label(row_id), "_served": served,
                      served: _answer(entry["labels"][i], regression), other: _answer(labels[i], regression)}
            if proba is not None:
                record.update((f"{other}{PROBA}{name}", float(proba[i, c])) for c, name in enumerate(classes))
            records.append(record)
    out = pd.DataFrame.from_records(records, columns=None if records else ["_entry", "_id", "_served", *ARMS])
    out.insert(2, "_ts", pd.Timestamp(utcnow()))
    return out, without_id


def _answer(value: Any, regression: bool) -> Any:
    return float(value) if regression else label(value)


def keep(model: str, rollout_id: str, kept: Kept, tally: Tally, *, ctx: Context, ids_of: Any) -> None:
    """Write a batch's compared rows with ids as one part, within the rollout's cap; the counts go to ``tally``."""
    rows, without_id = frame(kept, ids_of)
    c = tally.counts
    c["quality.rows_without_id"] += without_id
    if rows.empty:
        return
    taken = ctx.rollouts.reserve(rollout_id, len(rows), ctx.settings.rollout_quality_rows)
    c["quality.rows_not_kept"] += len(rows) - taken
    if not taken:
        return
    try:
        store.write(ctx, folder(ctx, model, rollout_id).child(f"{utcnow():%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}"
                                                              ".parquet"), rows.iloc[:taken])
    except MlaasError as exc:  # the comparison still counts; these rows are not joined
        log.warning("rollout %s: %d compared rows not kept for live quality: %s", rollout_id, taken, exc.message)
        ctx.rollouts.release(rollout_id, taken)
        c["quality.rows_not_stored"] += taken
        return
    c["quality.rows_kept"] += taken
    c["quality.parts"] += 1


def answers(ctx: Context, model: str, rollout_id: str) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Every kept row of a rollout and the files read; many parts are merged into one first (hold the lock)."""
    files = store.listing(ctx, folder(ctx, model, rollout_id))
    frames = [store.read_parquet(ctx, key) for key, _ in files]
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if len(files) >= COMPACT_PARTS:
        rows = rows.drop_duplicates(subset=["_entry", "_id"])  # a merge that stopped before its deletes
        merged = folder(ctx, model, rollout_id).child(f"{utcnow():%Y%m%dT%H%M%S%fZ}-merged.parquet")
        store.write(ctx, merged, rows)
        for key, _ in files:
            ctx.storage.delete(ctx.settings.drift_uri(key))
        ctx.rollouts.add(rollout_id, {"quality.parts": 1.0 - len(files)})
        files = store.listing(ctx, folder(ctx, model, rollout_id))
    return rows, files


def compact(model: str, rollout_id: str, *, ctx: Context) -> None:
    """Merge a rollout's parts into one when there are many (the drain's writes are one part per batch)."""
    with ctx.monitors.lock(f"rollout-quality:{rollout_id}", LOCK_SECONDS) as acquired:
        if acquired:
            answers(ctx, model, rollout_id)


def delete(ctx: Context, model: str, rollout_id: str) -> None:
    """Remove a replaced rollout's kept rows."""
    for key, _ in store.listing(ctx, folder(ctx, model, rollout_id)):
        ctx.storage.delete(ctx.settings.drift_uri(key))


def _arm_rows(rows: pd.DataFrame, arm: str, version: int) -> pd.DataFrame:
    """One arm's answers as the join takes predictions."""
    out = pd.DataFrame({"_version": version, "_entry": rows["_entry"], "_id": rows["_id"], "_ts": rows["_ts"],
                        "_prediction": rows[arm]})
    prefix = f"{arm}{PROBA}"
    for name in (c for c in rows.columns if c.startswith(prefix)):
        out[PROBA + name[len(prefix):]] = rows[name]
    return out


def live_quality(outcomes: pd.DataFrame, rows: pd.DataFrame, task: str, versions: dict[str, int]) -> dict[str, Any]:
    """Realized metrics of each arm on the kept rows that have an outcome, and candidate minus production.

    Each outcome joins its id's latest comparison (as feedback joins captured predictions); probabilities
    count only for an arm that has them on every joined row (the version that answered a request gave labels).
    """
    empty = {"joined": 0, "production": None, "candidate": None, "difference": None}
    if outcomes.empty or rows.empty:
        return empty
    outcomes = outcomes[outcomes["_id"].astype(str).isin(set(rows["_id"].astype(str)))]
    if outcomes.empty:
        return empty
    figures: dict[str, dict[str, Any]] = {}
    for arm in ARMS:
        joined, _ = join.join(outcomes, _arm_rows(rows, arm, versions[arm]), slack_seconds=SCORED_AFTER_SECONDS)
        proba = [c for c in joined.columns if c.startswith(PROBA)]
        if proba and joined[proba].isna().to_numpy().any():
            joined = joined.drop(columns=proba)
        figures[arm] = {"version": versions[arm], **performance.realized(joined, task)}
    production, candidate = figures["production"]["metrics"], figures["candidate"]["metrics"]
    difference = {m: candidate[m] - production[m] for m in production if m in candidate}
    return {"joined": figures["production"]["n"], **figures, "difference": difference}


def refresh(model: str, *, ctx: Context) -> dict[str, Any] | None:
    """Recompute the live quality of the model's rollout (active or last ended) if its inputs changed, keep it in
    Redis, and let the guard judge an active one; None when the model never had a rollout."""
    from mlaas.rollouts import service  # the guard; service reads what this module keeps

    state = ctx.rollouts.get(model)
    if state is None:
        return None
    rollout_id = state["id"]
    with ctx.monitors.lock(f"rollout-quality:{rollout_id}", LOCK_SECONDS) as acquired:
        if not acquired:
            return {"rollout": rollout_id, "refreshed": False, "reason": "another refresh runs"}
        part_files = store.listing(ctx, folder(ctx, model, rollout_id))
        if not part_files:
            return {"rollout": rollout_id, "refreshed": False, "reason": "no compared rows kept"}
        outcome_files = store.listing(ctx, store.base(ctx, model).child("outcomes"))
        stamp = store.fingerprint(outcome_files, part_files)
        last = ctx.rollouts.quality(rollout_id)
        if last and last.get("fingerprint") == stamp:
            return {"rollout": rollout_id, "refreshed": False, "reason": "nothing changed"}
        rows, part_files = answers(ctx, model, rollout_id)
        frames = [store.read_parquet(ctx, key) for key, _ in outcome_files]
        outcomes = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        task = service.task_of(ctx.rollouts.stats(rollout_id))
        versions = {"production": int(state["production_version"]), "candidate": int(state["version"])}
        try:
            summary = live_quality(outcomes, rows, task, versions)
        except (ValueError, TypeError) as exc:  # e.g. outcomes that are not numbers for a regression
            summary = {"joined": 0, "production": None, "candidate": None, "difference": None,
                       "error": f"live quality not computed: {str(exc)[:300]}"}
        summary.update(refreshed_at=utcnow().isoformat(), fingerprint=store.fingerprint(outcome_files, part_files))
        ctx.rollouts.set_quality(rollout_id, summary)
    ended = service.guard_check(model, state, ctx=ctx) if state.get("state") == "active" else None
    return {"rollout": rollout_id, "refreshed": True, "joined": summary["joined"], "ended": ended}
