"""Joining outcomes to the predictions that answered them, by (model, row id), off the request path.

Each outcome is joined to the latest captured prediction of its id made at or before the outcome arrived,
whatever the delay between the two. An outcome with no such prediction (yet: the capture of a prediction is
flushed a little later) is unmatched and tried again at the next join. Two outcomes of the same prediction
are duplicates: the later one counts, the earlier one is reported. Every join recomputes the whole table
from the stored outcomes and captures, so it is idempotent and a crashed join is simply redone.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from mlaas.adapters.monitorstore import utcnow
from mlaas.context import Context
from mlaas.quality import store

log = logging.getLogger(__name__)
JOIN_LOCK_SECONDS = 600
LISTED_IDS = 20  # unmatched and duplicate ids named in a report


def _seconds(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, utc=True).astype("datetime64[ns, UTC]").astype("int64") / 1e9


def join(outcomes: pd.DataFrame, predictions: pd.DataFrame, batch: str | None = None, *,
         slack_seconds: float = 0.0) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The joined rows (one per answered prediction that has an outcome) and the counts of what was not joined.

    ``outcomes``: ``_id``, ``actual``, ``_received``, ``_batch``; ``predictions``: ``_version``, ``_entry``,
    ``_id``, ``_ts``, ``_prediction`` and ``_proba_<class>`` columns, as captured. Given a ``batch``, the report
    also counts that batch's own outcomes (``batch``: matched, unmatched, and duplicates of other outcomes).
    ``slack_seconds``: predictions stamped up to this long after they were answered (a rollout's comparisons
    carry the time a worker scored them) also join outcomes received before their stamp.
    """
    report: dict[str, Any] = {"outcomes": len(outcomes), "matched": 0, "unmatched": 0, "unmatched_ids": [],
                              "duplicates": 0, "duplicate_ids": [], "ids_answered_more_than_once": 0}
    if outcomes.empty:
        return pd.DataFrame(), report
    left = outcomes.assign(_id=outcomes["_id"].astype(str), _at=_seconds(outcomes["_received"]))
    left = left.sort_values(["_at", "_batch"], kind="stable").reset_index(drop=True)
    if predictions.empty:
        merged = left.assign(_version=pd.NA, _entry=None, _ts=pd.NaT, _prediction=None)
    else:
        right = predictions.assign(_id=predictions["_id"].astype(str), _at=_seconds(predictions["_ts"]) - slack_seconds)
        right = right.sort_values("_at", kind="stable").reset_index(drop=True)
        counts = right.groupby("_id").size()
        report["ids_answered_more_than_once"] = int((counts[counts.index.isin(left["_id"])] > 1).sum())
        merged = pd.merge_asof(left, right, on="_at", by="_id", direction="backward")
    found = merged["_version"].notna()
    unmatched = merged[~found]
    matched = merged[found].copy()
    later_first = matched.iloc[::-1]
    superseded = later_first.duplicated(subset=["_version", "_entry", "_id"], keep="first").iloc[::-1]
    repeated_unmatched = unmatched.iloc[::-1].duplicated(subset=["_id"], keep="first").iloc[::-1]
    if batch is not None:
        mine_matched, mine_unmatched = matched["_batch"] == batch, unmatched["_batch"] == batch
        shared = (matched.duplicated(subset=["_version", "_entry", "_id"], keep=False) & mine_matched).sum() + (
            unmatched.duplicated(subset=["_id"], keep=False) & mine_unmatched).sum()
        report["batch"] = {"batch": batch, "matched": int((mine_matched & ~superseded).sum()),
                           "unmatched": int((mine_unmatched & ~repeated_unmatched).sum()), "duplicates": int(shared)}
    duplicate_ids = pd.concat([matched.loc[superseded, "_id"], unmatched.loc[repeated_unmatched, "_id"]])
    unmatched = unmatched[~repeated_unmatched]
    matched = matched[~superseded]
    report.update(matched=len(matched), unmatched=len(unmatched),
                  unmatched_ids=unmatched["_id"].head(LISTED_IDS).tolist(),
                  duplicates=len(duplicate_ids), duplicate_ids=list(dict.fromkeys(duplicate_ids))[:LISTED_IDS])
    columns = ["_version", "_entry", "_id", "_ts", "_received", "_batch", "actual", "_prediction",
               *sorted(c for c in matched.columns if c.startswith("_proba_"))]
    rows = matched[[c for c in columns if c in matched.columns]].copy()
    rows["_version"] = rows["_version"].astype(int)
    return rows.reset_index(drop=True), report


def run(model: str, *, ctx: Context, force: bool = False, batch: str | None = None) -> dict[str, Any]:
    """Join a model's outcomes to its captured predictions and store the result, unless nothing changed."""
    with ctx.monitors.lock(f"feedback-join:{model}", JOIN_LOCK_SECONDS) as acquired:
        if not acquired:
            return {"model": model, "joined": False, "reason": "another join of this model runs"}
        outcomes, outcome_files = store.outcomes(ctx, model)
        if not outcome_files:
            return {"model": model, "joined": False, "reason": "no outcomes"}
        predictions, capture_files = store.predictions(ctx, model)
        stamp = store.fingerprint(outcome_files, capture_files)
        report_uri = store.base(ctx, model).child("join.json")
        last = store.read_json(ctx, report_uri)
        if not force and last and last.get("fingerprint") == stamp:
            return {"model": model, "joined": False, "reason": "nothing changed", "report": last}
        rows, report = join(outcomes, predictions, batch)
        join_id = f"{utcnow():%Y%m%dT%H%M%S%fZ}-{stamp[:8]}"
        written = []
        if not rows.empty:
            days = pd.to_datetime(rows["_ts"], utc=True).dt.strftime("%Y-%m-%d")
            for (version, day), part in rows.groupby([rows["_version"], days], sort=True):
                uri = store.joined_uri(ctx, model, int(version), str(day), join_id)
                store.write(ctx, uri, part.drop(columns=["_version"]))
                written.append(uri.key)
        # Files of the join before the last one are emptied (no delete in BlobStore): a reader that has just
        # read the last report still finds that join's files whole.
        keep = set(written) | set((last or {}).get("files", []))
        for key in (last or {}).get("previous_files", []):
            if key not in keep:
                store.write(ctx, ctx.settings.drift_uri(key), pd.DataFrame())
        versions = sorted(int(v) for v in rows["_version"].unique()) if not rows.empty else []
        report.update(model=model, versions=versions, joined_at=utcnow().isoformat(), fingerprint=stamp,
                      join_id=join_id, files=written, previous_files=(last or {}).get("files", []))
        store.write_json(ctx, report_uri, report)
        log.info("feedback of %s joined: %d matched, %d unmatched, %d duplicates", model, report["matched"],
                 report["unmatched"], report["duplicates"])
        return {"model": model, "joined": True, "report": report}


def last_report(model: str, *, ctx: Context) -> dict[str, Any] | None:
    """The counts of a model's last join (None before the first)."""
    return store.read_json(ctx, store.base(ctx, model).child("join.json"))


def public(report: dict[str, Any] | None) -> dict[str, Any]:
    """A join report as callers see it (without the fields that keep joins consistent)."""
    return {k: v for k, v in (report or {}).items() if k not in ("fingerprint", "files", "previous_files")}
