"""A model's health over time, read back from what mlaas logged: drift runs, quality runs, captured traffic.

Drift: the ``infer_`` (monitor checks of served traffic) and ``drift_`` (POST /data-drift) runs' per-column
metrics. Quality: the ``perf_`` runs that live-quality windows log (realized metrics, and ``estimated…`` ones
before labels arrive). Traffic: captured prediction rows per time window, from the Parquet files in storage.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pandas as pd

from mlaas.adapters.runsearch import RunRecord, recent_runs
from mlaas.context import Context

DRIFT_KINDS = ("infer", "drift")
QUALITY_KIND = "perf"
ESTIMATED_PREFIX = "estimated"  # perf_ metrics named estimated_<metric> (or estimated.<metric>) are estimates
COUNT_METRICS = frozenset({"n", "rows", "matched", "unmatched", "duplicates"})
WINDOW_KEYS = ("window_end", "end", "window_to", "until")  # a run's window end, when it logged one
BUCKETS = (timedelta(minutes=1), timedelta(minutes=5), timedelta(hours=1), timedelta(days=1))
MAX_BARS = 60


@dataclass(frozen=True)
class ColumnCell:
    """One column's outcome in one drift run."""

    drifted: bool
    statistic: float | None
    p_value: float | None


@dataclass(frozen=True)
class DriftRun:
    """One drift check: when, on which version, its verdict and each column's outcome."""

    run: RunRecord
    kind: str
    version: str
    share_drifted: float | None
    dataset_drift: bool
    cells: dict[str, ColumnCell]
    job_id: str | None


@dataclass(frozen=True)
class Series:
    """A named line of (time, value) points; ``estimated`` lines are drawn dashed."""

    name: str
    points: list[tuple[datetime, float]] = field(default_factory=list)
    estimated: bool = False


def drift_history(model: str, *, ctx: Context, limit: int) -> tuple[list[str], list[DriftRun]]:
    """The columns seen and the newest ``limit`` drift runs of a model, oldest first."""
    runs: list[DriftRun] = []
    columns: dict[str, None] = {}  # in order of appearance
    for run in recent_runs(ctx.registry, model, DRIFT_KINDS, limit=limit):
        cells: dict[str, dict[str, float]] = {}
        for key, value in run.metrics.items():
            column, _, part = key.rpartition(".")
            if column and part in ("statistic", "p_value", "drifted"):
                cells.setdefault(column, {})[part] = value
        for column in cells:
            columns.setdefault(column, None)
        share = run.metrics.get("share_drifted")
        runs.append(DriftRun(
            run=run, kind=run.tags.get("mlaas.kind") or run.name.split("_", 1)[0],
            version=run.tags.get("mlaas.model_version") or run.params.get("version", ""),
            share_drifted=share, dataset_drift=bool(run.metrics.get("dataset_drift", 0.0)),
            cells={c: ColumnCell(bool(v.get("drifted", 0.0)), v.get("statistic"), v.get("p_value"))
                   for c, v in cells.items()},
            job_id=run.tags.get("mlaas.job_id") if run.name.startswith("drift_") else None))
    return list(columns), runs


def quality_history(model: str, *, ctx: Context, limit: int) -> tuple[list[Series], list[RunRecord]]:
    """One line per metric of the model's ``perf_`` runs (estimates apart), and the runs, oldest first."""
    runs = recent_runs(ctx.registry, model, (QUALITY_KIND,), limit=limit)
    # a window whose figures changed is logged again: the newest run of each (version, window) counts
    newest = {(r.tags.get("mlaas.model_version", ""), window_end(r)): r for r in runs}
    runs = sorted(newest.values(), key=lambda r: r.started)
    lines: dict[str, Series] = {}
    for run in runs:
        at = window_end(run)
        for key, value in sorted(run.metrics.items()):
            if key in COUNT_METRICS:
                continue
            estimated = key.startswith(ESTIMATED_PREFIX)
            series = lines.setdefault(key, Series(key, [], estimated))
            series.points.append((at, value))
    return list(lines.values()), runs


def window_end(run: RunRecord) -> datetime:
    """The end of the window a run describes, when it logged one; else when it started."""
    for key in WINDOW_KEYS:
        text = run.params.get(key) or run.tags.get(key)
        if text:
            try:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                continue
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return run.started


def traffic(model: str, *, ctx: Context, max_files: int) -> dict[str, Any]:
    """Captured requests per time window, per version, from the newest ``max_files`` capture files."""
    prefix = f"capture/{quote(model, safe='')}/"
    keys = sorted((o.uri for o in ctx.storage.list(ctx.settings.drift_bucket, prefix)
                   if o.uri.key.endswith(".parquet")), key=lambda u: u.key.rsplit("/", 1)[-1])
    truncated = len(keys) > max_files
    stamps: list[pd.DataFrame] = []
    for uri in keys[-max_files:]:
        version = uri.key[len(prefix):].split("/", 1)[0]
        frame = pd.read_parquet(io.BytesIO(ctx.storage.get_bytes(uri)), columns=["_ts", "_entry"])
        stamps.append(frame.assign(version=version))
    if not stamps:
        return {"bucket": None, "series": [], "files": 0, "truncated": False, "rows": 0, "requests": 0}
    rows = pd.concat(stamps, ignore_index=True)
    rows["_ts"] = pd.to_datetime(rows["_ts"], utc=True)
    bucket = bucket_size(rows["_ts"].min(), rows["_ts"].max())
    rows["window"] = rows["_ts"].dt.floor(pd.Timedelta(bucket))
    series = []
    for version, part in sorted(rows.groupby("version"), key=lambda item: int(item[0]) if item[0].isdigit() else 0):
        counts = part.groupby("window")["_entry"].nunique()  # an entry is one request
        series.append(Series(f"v{version}", [(w.to_pydatetime(), float(n)) for w, n in counts.items()]))
    return {"bucket": bucket, "series": series, "files": min(len(keys), max_files), "truncated": truncated,
            "rows": len(rows), "requests": int(sum(v for s in series for _, v in s.points))}


def bucket_size(first: datetime, last: datetime) -> timedelta:
    """The smallest window that shows ``first``..``last`` in at most MAX_BARS bars."""
    span = last - first
    for bucket in BUCKETS:
        if span / bucket <= MAX_BARS:
            return bucket
    return BUCKETS[-1]
