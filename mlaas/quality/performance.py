"""Live quality of a model version: realized metrics of joined outcomes, estimated ones of all served rows.

The metrics are evaluation's (``training.scoring.compute``), over the whole range and per window of
prediction time. ``performance`` reads only; the join task logs each window that changed to MLflow as a
run ``perf_{timestamp}`` on the version (``log_windows``), beside the ``infer_`` drift runs.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from mlaas.adapters.registry import ModelVersion
from mlaas.context import Context
from mlaas.errors import InvalidInput
from mlaas.quality import calibration, estimate, store
from mlaas.quality import join as joining
from mlaas.training import scoring

label = estimate.label

PROBA = "_proba_"
MAX_LOGGED_WINDOWS = 50  # perf_ runs one join logs at most (the newest windows first)


def classes_of(frame: pd.DataFrame) -> list[str]:
    return [c[len(PROBA):] for c in frame.columns if c.startswith(PROBA) and frame[c].notna().any()]


def task_of(version: ModelVersion, rows: pd.DataFrame) -> str:
    """The version's task tag, else classification when probabilities were served or the outcomes are labels."""
    if version.tags.get("task") in ("classification", "regression"):
        return version.tags["task"]
    if classes_of(rows):
        return "classification"
    actual = pd.to_numeric(rows.get("actual", pd.Series(dtype=object)), errors="coerce")
    if len(actual) and actual.notna().all() and (actual.nunique() > 20 or not np.all(actual == actual.round())):
        return "regression"
    return "classification"


def realized(rows: pd.DataFrame, task: str) -> dict[str, Any]:
    """Metrics of joined rows, computed as evaluation computes them."""
    if rows.empty:
        return {"n": 0, "metrics": {}}
    if task == "regression":
        scores = scoring.compute(task, pd.to_numeric(rows["actual"]), pd.to_numeric(rows["_prediction"]))
    else:
        classes = classes_of(rows)
        proba = rows[[PROBA + c for c in classes]].to_numpy(dtype=float) if classes else None
        scores = scoring.compute(task, rows["actual"].map(label).to_numpy(), rows["_prediction"].map(label).to_numpy(),
                                 proba, [label(c) for c in classes] or None)
    return {"n": len(rows), "metrics": dict(scores), "undefined_metrics": scores.undefined}


def estimated(rows: pd.DataFrame, calibrated: dict[str, Any] | None) -> dict[str, Any] | None:
    """CBPE figures of served rows (labelled or not); None without probabilities."""
    classes = classes_of(rows)
    if not classes or rows.empty:
        return None
    proba = rows[[PROBA + c for c in classes]].to_numpy(dtype=float)
    names = [label(c) for c in classes]
    proba = estimate.calibrate(proba, names, calibrated)
    figures = estimate.expected(proba, names, rows["_prediction"].map(label).tolist())
    return {"n": len(rows), "metrics": figures, "calibrated": bool(calibrated and calibrated.get("calibrated"))}


def _time(text: str | None, field: str) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.upper())  # RFC 3339 allows a lower-case t and z
    except ValueError:
        raise InvalidInput(f"{field}: {text!r} is not an ISO 8601 time") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def performance(model: str, version_ref: Any = None, *, ctx: Context, since: str | None = None,
                until: str | None = None, window: int | None = None) -> dict[str, Any]:
    """Realized and estimated quality of a version over a range and per window (plain dicts, for API and console)."""
    version = ctx.registry.resolve(model, version_ref)
    start, end = _time(since, "since"), _time(until, "until")
    if start and end and start > end:
        raise InvalidInput("since: must not be after until")
    width = window or ctx.settings.performance_window_seconds
    report = joining.last_report(version.name, ctx=ctx)  # first: the rows read are that join's
    rows = store.joined(ctx, model, version.version, report, start, end)
    task = task_of(version, rows)
    served = pd.DataFrame()
    calibrated = None
    if task == "classification":
        served = store.served(ctx, model, version.version, start, end)
        calibrated = calibration.stored(ctx, model, version.version)
    spans = windows([f["_ts"] for f in (rows, served) if not f.empty], width, ctx.settings.max_performance_windows)
    out: dict[str, Any] = {"model": version.name, "version": version.version, "task": task, "window_seconds": width,
                           "since": since, "until": until, "overall": _figures(rows, served, task, calibrated),
                           "windows": []}
    check = _estimate_check(rows, out["overall"], calibrated)
    if check:
        out["estimate_check"] = check
    for lo, hi in spans:
        part = _window(rows, lo, hi)
        figures = _figures(part, _window(served, lo, hi), task, calibrated)
        out["windows"].append({"start": lo.isoformat(), "end": hi.isoformat(), **figures})
    out["feedback"] = joining.public(report)
    return out


def windows(times: list[pd.Series], width: int, limit: int) -> list[tuple[datetime, datetime]]:
    """Windows of ``width`` seconds aligned to the epoch, from the first time to the last (400 past ``limit``)."""
    if not times:
        return []
    first = min(int(t.min().timestamp()) for t in times) // width
    last = max(int(t.max().timestamp()) for t in times) // width
    if last - first + 1 > limit:
        raise InvalidInput(f"window: {width} s makes {last - first + 1} windows here, more than {limit}; "
                           "give a longer window or a shorter range")
    return [(datetime.fromtimestamp(b * width, UTC), datetime.fromtimestamp((b + 1) * width, UTC))
            for b in range(first, last + 1)]


def _window(frame: pd.DataFrame, lo: datetime, hi: datetime) -> pd.DataFrame:
    return frame if frame.empty else frame[(frame["_ts"] >= lo) & (frame["_ts"] < hi)]


def _figures(rows: pd.DataFrame, served: pd.DataFrame, task: str, calibrated: dict[str, Any] | None) -> dict[str, Any]:
    figures = realized(rows, task)
    guess = estimated(served, calibrated) if task == "classification" else None
    if guess:
        figures["estimated"] = guess
    return figures


def _estimate_check(rows: pd.DataFrame, overall: dict[str, Any], calibrated: dict[str, Any] | None) -> dict[str, Any]:
    """The estimate on the labelled rows themselves beside what their outcomes gave, with the sampling error."""
    guess = estimated(rows, calibrated)
    if not guess or not rows.shape[0]:
        return {}
    actual = overall["metrics"]
    difference = {m: actual[m] - v for m, v in guess["metrics"].items() if m in actual}
    return {"n": len(rows), "estimated": guess["metrics"], "realized": {m: actual[m] for m in difference},
            "difference": difference,
            "accuracy_standard_error": estimate.standard_error(guess["metrics"].get("accuracy", 0.0), len(rows))}


def log_windows(model: str, version: int, *, ctx: Context) -> list[str]:
    """Log each window whose figures changed since it was last logged as a run ``perf_{timestamp}``."""
    result = performance(model, version, ctx=ctx)
    logged_uri = store.base(ctx, model).child("perf_logged.json")
    logged = store.read_json(ctx, logged_uri) or {}
    seen = logged.setdefault(str(version), {})
    runs = []
    for win in [w for w in reversed(result["windows"]) if w["n"]][:MAX_LOGGED_WINDOWS]:
        values = {"n": float(win["n"]), **win["metrics"]}
        values.update({f"estimated_{k}": v for k, v in (win.get("estimated") or {}).get("metrics", {}).items()})
        signature = repr(sorted(values.items()))
        if seen.get(win["start"]) == signature:
            continue
        tags = {"mlaas.kind": "perf", "mlaas.model_version": str(version), "mlaas.window_start": win["start"],
                "mlaas.window_end": win["end"]}
        with ctx.registry.run("perf", model, tags=tags) as run:
            run.log_params({"model": model, "version": version, "task": result["task"], "window_start": win["start"],
                            "window_end": win["end"], "window_seconds": result["window_seconds"]})
            run.log_metrics(values)
            runs.append(run.name)
        seen[win["start"]] = signature
    if runs:
        store.write_json(ctx, logged_uri, logged)
    return runs
