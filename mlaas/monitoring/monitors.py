"""Scheduled drift monitors of served traffic: CRUD, beat's sweep, one check per due time, actions on drift.

Every production model gets a default monitor (``default-<model>``): it checks the captured rows not yet
checked, on the default schedule, and whenever the flush sees enough rows waiting. Users add monitors or
change the default one under ``/monitors``.
"""

from __future__ import annotations

import logging
import re
import uuid
from datetime import datetime, timedelta
from typing import Any

from mlaas import jobs
from mlaas.adapters.capture_buffer import CaptureBuffer
from mlaas.adapters.monitorstore import MonitorStore, next_cron_time, utcnow
from mlaas.adapters.webhooks import check_secret, check_url, deliver
from mlaas.context import Context
from mlaas.errors import Conflict, InvalidInput, MlaasError, NotFound
from mlaas.monitoring import traffic
from mlaas.queues import MONITOR_CHECK
from mlaas.training import retrain as retraining
from mlaas.uris import parse_uri

log = logging.getLogger(__name__)
CHECK_LOCK_SECONDS = 900
ROWS_WAITING = "rows-waiting"  # the claim of a check queued because enough captured rows wait
DEFAULTS_REFRESH_SECONDS = 300
MAX_MISSED_CRON_TIMES = 10_000
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


def default_id(model: str) -> str:
    return "default-" + re.sub(r"[^A-Za-z0-9_.\-]", "_", model)


def create(ctx: Context, store: MonitorStore, spec: dict[str, Any], *, monitor_id: str | None = None) -> dict[str, Any]:
    """Validate and store a new monitor (404 for an unknown model or version)."""
    monitor = _validated(ctx, {**spec, "id": monitor_id or spec.get("id") or uuid.uuid4().hex[:12]})
    if not store.add(monitor):
        raise Conflict(f"monitor {monitor['id']!r} exists")
    return monitor


def update(ctx: Context, store: MonitorStore, monitor_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    """Change fields of a monitor (its state fields are kept)."""
    current = store.get(monitor_id)
    merged = _validated(ctx, {**current, **changes, "id": monitor_id})
    store.put(merged)
    return merged


def _validated(ctx: Context, spec: dict[str, Any]) -> dict[str, Any]:
    if not _ID_RE.match(spec["id"]):
        raise InvalidInput("id: letters, digits, '_', '.', '-' only, at most 128 characters")
    ctx.registry.resolve(spec["model"], spec.get("version"))
    schedule = spec.get("schedule") or {"every_seconds": ctx.settings.monitor_default_seconds}
    if schedule.get("cron"):
        next_cron_time(schedule["cron"], utcnow())
    elif not schedule.get("every_seconds"):
        raise InvalidInput("schedule: give every_seconds or cron")
    webhook = (spec.get("on_drift") or {}).get("webhook")
    if webhook:
        check_url(webhook["url"], ctx.settings.webhook_allowlist)
        check_secret(webhook.get("secret"))
    retrain = (spec.get("on_drift") or {}).get("retrain")
    if retrain:
        for field in ("dataset", "data_config"):
            parse_uri(retrain[field], allowed_buckets=ctx.settings.buckets, field=f"on_drift.retrain.{field}")
    state = {k: spec.get(k) for k in ("last_run_at", "last_due", "last_result", "last_skip", "last_retrain_at",
                                      "watermark")}
    return {
        "id": spec["id"], "model": spec["model"], "version": spec.get("version"), "schedule": schedule,
        "window_seconds": spec.get("window_seconds"),
        "min_rows": int(spec.get("min_rows") or ctx.settings.drift_min_rows),
        "overrides": spec.get("overrides") or {}, "drift_share": spec.get("drift_share", 0.5),
        "correction": spec.get("correction"), "prediction_drift": bool(spec.get("prediction_drift", False)),
        "on_drift": spec.get("on_drift") or {}, "enabled": spec.get("enabled", True),
        "created_at": spec.get("created_at") or utcnow().isoformat(), **state,
    }


def public(monitor: dict[str, Any]) -> dict[str, Any]:
    """A monitor as the API shows it: webhook secrets are never returned."""
    shown = dict(monitor)
    webhook = (shown.get("on_drift") or {}).get("webhook")
    if webhook and webhook.get("secret"):
        shown["on_drift"] = {**shown["on_drift"], "webhook": {**webhook, "secret": "***"}}
    shown.pop("watermark", None)
    return shown


def next_due(monitor: dict[str, Any], now: datetime) -> datetime:
    """When the monitor is next due, from its last due time; due times missed meanwhile count once.

    The first run is due at the monitor's creation: a fixed time, so every sweep before that run
    claims the same due time. After an outage of beat the latest missed due time runs, not each of them.
    """
    last = monitor.get("last_due")
    if not last:
        return datetime.fromisoformat(monitor["created_at"]) if monitor.get("created_at") else now
    previous = datetime.fromisoformat(last)
    schedule = monitor["schedule"]
    if schedule.get("cron"):
        due = next_cron_time(schedule["cron"], previous)
        for _ in range(MAX_MISSED_CRON_TIMES):
            following = next_cron_time(schedule["cron"], due)
            if following > now:
                break
            due = following
        return due
    interval = timedelta(seconds=float(schedule["every_seconds"]))
    return previous + interval * max(1, int((now - previous) / interval))


def ensure_defaults(ctx: Context, store: MonitorStore) -> None:
    """Give every model with a production version its default monitor (at most every few minutes)."""
    if store.text("monitors:defaults-checked"):
        return
    store.set_text("monitors:defaults-checked", "1", ttl=DEFAULTS_REFRESH_SECONDS)
    existing = {m["id"] for m in store.all()}
    for model in ctx.registry.list_models():
        if default_id(model["name"]) in existing:
            continue
        try:
            ctx.registry.production_version(model["name"])
        except NotFound:
            continue
        store.add(_validated(ctx, {"id": default_id(model["name"]), "model": model["name"]}))


def due_on_flush(ctx: Context, store: MonitorStore, model: str, version: int, waiting: int) -> list[str]:
    """Monitors of unchecked rows of this model version that have enough rows waiting now (and no check queued)."""
    monitors = store.all()
    if not any(m["id"] == default_id(model) for m in monitors):
        try:
            if ctx.registry.production_version(model).version == version:
                store.add(_validated(ctx, {"id": default_id(model), "model": model}))
                monitors = store.all()
        except NotFound:
            pass
    due = []
    for monitor in monitors:
        if monitor["model"] != model or not monitor.get("enabled", True) or monitor.get("window_seconds"):
            continue
        if waiting < monitor["min_rows"]:
            continue
        try:
            if ctx.registry.resolve(model, monitor.get("version")).version == version and store.claim(
                    monitor["id"], ROWS_WAITING, ttl=CHECK_LOCK_SECONDS):
                due.append(monitor["id"])
        except MlaasError as exc:
            log.warning("monitor %s skipped: %s", monitor["id"], exc.message)
    return due


def sweep(ctx: Context, store: MonitorStore, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """Queue one check per due monitor; each due time is claimed once, so two beats never double a run."""
    now = now or utcnow()
    try:
        ensure_defaults(ctx, store)
    except MlaasError as exc:
        log.warning("default monitors not refreshed: %s", exc.message)
    queued = []
    for monitor in store.all():
        try:
            if not monitor.get("enabled", True):
                continue
            due = next_due(monitor, now)
            if due > now:
                continue
            due_key = due.isoformat()
            if store.claim(monitor["id"], due_key, ttl=7 * 24 * 3600):
                ctx.queue.send(MONITOR_CHECK, [monitor["id"], due_key])
                queued.append({"monitor": monitor["id"], "due": due_key})
        except MlaasError as exc:  # one failing monitor does not stop the sweep
            log.warning("monitor %s not swept: %s", monitor.get("id"), exc.message)
    return queued


def run_check(ctx: Context, store: MonitorStore, buffer: CaptureBuffer, monitor_id: str,
              due: str | None) -> dict[str, Any]:
    """Run one check of a monitor (never two at once), then its actions on drift."""
    with store.lock(monitor_id, CHECK_LOCK_SECONDS) as acquired:
        if not acquired:
            if due:  # give the due time back: a later sweep queues it again once the running check ends
                store.release(monitor_id, due)
            return {"monitor": monitor_id, "checked": False, "reason": "a check of this monitor is running"}
        store.release(monitor_id, ROWS_WAITING)
        monitor = store.get(monitor_id)
        now = utcnow()
        version = ctx.registry.resolve(monitor["model"], monitor.get("version"))
        predictor = ctx.registry.load_model(version).estimator if monitor.get("prediction_drift") else None
        watermark = (monitor.get("watermark") or {}).get(str(version.version), "")
        outcome = traffic.check(ctx, monitor, version.version, now=now, watermark=watermark,
                                     predictor=predictor)
        if outcome["checked"] and outcome["dataset_drift"]:
            outcome["actions"] = _act(ctx, monitor, version.version, outcome, now, due)
        monitor = store.get(monitor_id)  # re-read: the record may have changed while checking
        if outcome.get("last_file"):
            monitor["watermark"] = {**(monitor.get("watermark") or {}), str(version.version): outcome["last_file"]}
            buffer.take_unchecked(buffer.stream_key(monitor["model"], version.version), outcome["window"]["rows"])
        monitor["last_run_at"] = now.isoformat()
        if outcome["checked"]:
            monitor["last_result"] = outcome
        else:  # a check with too few rows keeps the last real result visible
            monitor["last_skip"] = {"at": now.isoformat(), "reason": outcome.get("reason")}
        if due:
            monitor["last_due"] = due
        if outcome.get("actions", {}).get("retrain", {}).get("job_id"):
            monitor["last_retrain_at"] = now.isoformat()
        store.put(monitor)
        return outcome


def _act(ctx: Context, monitor: dict[str, Any], version: int, outcome: dict[str, Any], now: datetime,
         due: str | None) -> dict[str, Any]:
    actions: dict[str, Any] = {}
    on_drift = monitor.get("on_drift") or {}
    webhook = on_drift.get("webhook")
    if webhook:
        payload = {"event": "drift", "monitor": monitor["id"], "model": monitor["model"], "version": version,
                   "run_id": outcome["run_id"], "share_drifted": outcome["share_drifted"],
                   "drifted_columns": outcome["drifted_columns"], "window": outcome["window"], "at": now.isoformat()}
        try:
            actions["webhook"] = deliver(webhook["url"], payload, secret=webhook.get("secret", ""),
                                         allowlist=ctx.settings.webhook_allowlist,
                                         timeout=ctx.settings.webhook_timeout)
        except MlaasError as exc:
            actions["webhook"] = {"delivered": False, "error": exc.message}
    retrain = on_drift.get("retrain")
    if retrain:
        actions["retrain"] = _retrain(ctx, monitor, retrain, now, due or outcome["run_id"])
    return actions


def _retrain(ctx: Context, monitor: dict[str, Any], retrain: dict[str, Any], now: datetime,
             occasion: str) -> dict[str, Any]:
    cooldown = int(retrain.get("cooldown_seconds") or ctx.settings.retrain_cooldown_seconds)
    last = monitor.get("last_retrain_at")
    if last and datetime.fromisoformat(last) + timedelta(seconds=cooldown) > now:
        return {"started": False, "reason": f"cooldown of {cooldown} s since the last retraining at {last}"}
    prepared = retraining.prepare(ctx, {"model": monitor["model"], "version": None, "dataset": retrain["dataset"],
                                      "data_config": retrain["data_config"],
                                      "promote": bool(retrain.get("promote", False))})
    job, _ = jobs.submit(ctx, "train", prepared.params, request_id=f"monitor:{monitor['id']}",
                         idempotency_key=f"monitor:{monitor['id']}:{occasion}")
    return {"started": True, "job_id": job["job_id"]}
