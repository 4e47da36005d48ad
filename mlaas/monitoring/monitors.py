"""Scheduled drift monitors of served traffic: CRUD, beat's sweep, one check per due time, actions on drift.

Every production model gets a default monitor (``default-<model>``): it checks the captured rows not yet
checked, on the default schedule, and whenever the flush sees enough rows waiting. Users add monitors or
change the default one under ``/monitors``. A check that fails records its error and what it ran against
(the version and its baseline); it is not queued again until one of those changes or a user asks for a run.
"""

from __future__ import annotations

import logging
import re
import uuid
from datetime import datetime, timedelta
from typing import Any

from mlaas.adapters.capture_buffer import CaptureBuffer
from mlaas.adapters.monitorstore import next_cron_time, utcnow
from mlaas.adapters.webhooks import check_secret, check_url, deliver
from mlaas.auth import Caller
from mlaas.context import Context
from mlaas.datasets.uploads import readable_uri
from mlaas.errors import Conflict, InvalidInput, MlaasError, NotFound, Unavailable
from mlaas.monitoring import traffic
from mlaas.monitoring.specs import (
    MONITOR_ID_PATTERN,
    CheckError,
    Dependencies,
    MonitorChanges,
    MonitorRecord,
    MonitorSpec,
    OnDrift,
    RetrainAction,
    Schedule,
    StoredOnDrift,
)
from mlaas.quality import condition
from mlaas.queues import MONITOR_CHECK
from mlaas.training import retrain as retraining
from mlaas.training.specs import TrainSpec

log = logging.getLogger(__name__)
CHECK_LOCK_SECONDS = 900
ROWS_WAITING = "rows-waiting"  # the claim of a check queued because enough captured rows wait
DEFAULTS_REFRESH_SECONDS = 300
MAX_MISSED_CRON_TIMES = 10_000
STATE_FIELDS = ("owner", "last_run_at", "last_due", "last_result", "last_skip", "last_error", "last_retrain_at",
                "watermark")
QUALITY_FIELDS = ("metric", "source", "value", "reference", "floor", "max_drop", "n", "reasons")
_ID_RE = re.compile(MONITOR_ID_PATTERN)


def default_id(model: str) -> str:
    """The id of a model's default monitor."""
    return "default-" + re.sub(r"[^A-Za-z0-9_.\-]", "_", model)


def list_monitors(*, ctx: Context, caller: Caller | None = None) -> list[MonitorRecord]:
    """Every monitor, by id; with a caller, only those it owns (an admin: all)."""
    found = [MonitorRecord.model_validate(raw) for raw in ctx.monitors.all()]
    return found if caller is None else [m for m in found if caller.owns(m.owner)]


def get(monitor_id: str, *, ctx: Context, caller: Caller | None = None) -> MonitorRecord:
    """One monitor (404 when it does not exist, or another key owns it)."""
    monitor = MonitorRecord.model_validate(ctx.monitors.get(monitor_id))
    if caller is not None and not caller.owns(monitor.owner):
        raise NotFound(f"monitor {monitor_id!r} does not exist")  # the same answer: ids of others stay unknown
    return monitor


def create(spec: MonitorSpec, *, ctx: Context, owner: str | None = None) -> MonitorRecord:
    """Validate and store a new monitor owned by ``owner`` (404 for an unknown model or version)."""
    monitor = _settled(spec, spec.id or uuid.uuid4().hex[:12], ctx=ctx).model_copy(update={"owner": owner})
    if not ctx.monitors.add(monitor.stored()):
        raise Conflict(f"monitor {monitor.id!r} exists")
    return monitor


def update(monitor_id: str, changes: MonitorChanges, *, ctx: Context, caller: Caller | None = None) -> MonitorRecord:
    """Change the fields given of a monitor (its owner and state fields are kept)."""
    current = get(monitor_id, ctx=ctx, caller=caller)
    spec = _spec_of(current).model_copy(update={name: getattr(changes, name) for name in changes.model_fields_set})
    merged = _settled(spec, monitor_id, ctx=ctx, current=current)
    ctx.monitors.put(merged.stored())
    return merged


def delete(monitor_id: str, *, ctx: Context, caller: Caller | None = None) -> None:
    """Remove a monitor (a default monitor comes back while its model has a production version)."""
    get(monitor_id, ctx=ctx, caller=caller)
    ctx.monitors.delete(monitor_id)


def run_now(monitor_id: str, *, ctx: Context, caller: Caller | None = None) -> dict[str, Any]:
    """Queue a check of a monitor outside its schedule (also after a failed check, whatever changed since)."""
    get(monitor_id, ctx=ctx, caller=caller)
    ctx.queue.send(MONITOR_CHECK, [monitor_id, None])
    return {"monitor": monitor_id, "queued": True}


def _spec_of(monitor: MonitorRecord) -> MonitorSpec:
    fields = {name: getattr(monitor, name) for name in MonitorSpec.model_fields if name in MonitorRecord.model_fields}
    return MonitorSpec.model_construct(**fields)


def _settled(spec: MonitorSpec, monitor_id: str, *, ctx: Context,
             current: MonitorRecord | None = None) -> MonitorRecord:
    """A monitor record from a spec: checked (model, schedule, actions) and with every default filled in."""
    if not _ID_RE.match(monitor_id):
        raise InvalidInput("id: letters, digits, '_', '.', '-' only, at most 128 characters")
    ctx.registry.resolve(spec.model, spec.version)
    schedule = (Schedule(every_seconds=spec.schedule.every_seconds, cron=spec.schedule.cron) if spec.schedule
                else Schedule(every_seconds=ctx.settings.monitor_default_seconds))
    if schedule.cron:
        next_cron_time(schedule.cron, utcnow())
    elif not schedule.every_seconds:
        raise InvalidInput("schedule: give every_seconds or cron")
    on_drift = spec.on_drift or OnDrift()
    if spec.quality:
        condition.validate(spec.quality)
    if on_drift.webhook:
        check_url(on_drift.webhook.url, ctx.settings.webhook_allowlist)
        check_secret(on_drift.webhook.secret)
    if on_drift.retrain:
        for field in ("dataset", "data_config"):
            readable_uri(getattr(on_drift.retrain, field), ctx=ctx, field=f"on_drift.retrain.{field}")
    settled = MonitorRecord(
        id=monitor_id, model=spec.model, version=spec.version, schedule=schedule, window_seconds=spec.window_seconds,
        min_rows=spec.min_rows or ctx.settings.drift_min_rows, overrides=spec.overrides or {},
        drift_share=0.5 if spec.drift_share is None else spec.drift_share, correction=spec.correction,
        prediction_drift=bool(spec.prediction_drift), enabled=spec.enabled is not False, quality=spec.quality,
        on_drift=StoredOnDrift.model_validate(on_drift.model_dump()),
        created_at=current.created_at if current else utcnow().isoformat(),
    )
    if current is None:
        return settled
    return settled.model_copy(update={name: getattr(current, name) for name in STATE_FIELDS})


def public(monitor: MonitorRecord, *, now: datetime | None = None) -> dict[str, Any]:
    """A monitor as the API shows it, with when it checks next; webhook secrets are never returned."""
    shown = monitor.model_dump(exclude={"watermark"})
    if monitor.on_drift.webhook and monitor.on_drift.webhook.secret:
        shown["on_drift"]["webhook"]["secret"] = "***"
    blocked = monitor.last_error is not None or not monitor.enabled
    shown["next_check_at"] = None if blocked else next_due(monitor, now or utcnow()).isoformat()
    return shown


def next_due(monitor: MonitorRecord, now: datetime) -> datetime:
    """When the monitor is next due, from its last due time; due times missed meanwhile count once.

    The first run is due at the monitor's creation: a fixed time, so every sweep before that run
    claims the same due time. After an outage of beat the latest missed due time runs, not each of them.
    """
    if not monitor.last_due:
        return datetime.fromisoformat(monitor.created_at) if monitor.created_at else now
    previous = datetime.fromisoformat(monitor.last_due)
    cron = monitor.schedule.cron
    if cron:
        due = next_cron_time(cron, previous)
        for _ in range(MAX_MISSED_CRON_TIMES):
            following = next_cron_time(cron, due)
            if following > now:
                break
            due = following
        return due
    interval = timedelta(seconds=float(monitor.schedule.every_seconds or 0))
    return previous + interval * max(1, int((now - previous) / interval))


def dependencies(monitor: MonitorRecord, *, ctx: Context) -> Dependencies:
    """What a check of the monitor would run against now: the version it resolves to, that version's baseline."""
    try:
        version = ctx.registry.resolve(monitor.model, monitor.version)
    except NotFound:
        return Dependencies()
    return Dependencies(version=version.version, baseline=version.tags.get("drift-data"),
                        data_config=version.tags.get("data_config"))


def waits_for_change(monitor: MonitorRecord, *, ctx: Context) -> bool:
    """True while the last check failed and nothing it depended on has changed since (retrying cannot help)."""
    return monitor.last_error is not None and dependencies(monitor, ctx=ctx) == monitor.last_error.depends_on


def ensure_defaults(*, ctx: Context) -> None:
    """Give every model with a production version its default monitor (at most every few minutes)."""
    if ctx.monitors.text("monitors:defaults-checked"):
        return
    ctx.monitors.set_text("monitors:defaults-checked", "1", ttl=DEFAULTS_REFRESH_SECONDS)
    existing = {m.id for m in list_monitors(ctx=ctx)}
    for model in ctx.registry.list_models():
        if default_id(model["name"]) in existing:
            continue
        try:
            ctx.registry.production_version(model["name"])
        except NotFound:
            continue
        _add_default(model["name"], ctx=ctx)


def _add_default(model: str, *, ctx: Context) -> None:
    ctx.monitors.add(_settled(MonitorSpec(model=model), default_id(model), ctx=ctx).stored())


def due_on_flush(model: str, version: int, waiting: int, *, ctx: Context) -> list[str]:
    """Monitors of unchecked rows of this model version that have enough rows waiting now (and no check queued)."""
    monitors = list_monitors(ctx=ctx)
    if not any(m.id == default_id(model) for m in monitors):
        try:
            if ctx.registry.production_version(model).version == version:
                _add_default(model, ctx=ctx)
                monitors = list_monitors(ctx=ctx)
        except NotFound:
            pass
    due = []
    for monitor in monitors:
        if (monitor.model != model or not monitor.enabled or monitor.window_seconds or waiting < monitor.min_rows
                or monitor.quality):
            continue
        try:
            if ctx.registry.resolve(model, monitor.version).version != version or waits_for_change(monitor, ctx=ctx):
                continue
            if ctx.monitors.claim(monitor.id, ROWS_WAITING, ttl=CHECK_LOCK_SECONDS):
                due.append(monitor.id)
        except MlaasError as exc:
            log.warning("monitor %s skipped: %s", monitor.id, exc.message)
    return due


def sweep(*, ctx: Context, now: datetime | None = None) -> list[dict[str, Any]]:
    """Queue one check per due monitor; each due time is claimed once, so two beats never double a run."""
    now = now or utcnow()
    try:
        ensure_defaults(ctx=ctx)
    except MlaasError as exc:
        log.warning("default monitors not refreshed: %s", exc.message)
    queued = []
    for monitor in list_monitors(ctx=ctx):
        try:
            if not monitor.enabled:
                continue
            due = next_due(monitor, now)
            if due > now or waits_for_change(monitor, ctx=ctx):
                continue
            due_key = due.isoformat()
            if ctx.monitors.claim(monitor.id, due_key, ttl=7 * 24 * 3600):
                ctx.queue.send(MONITOR_CHECK, [monitor.id, due_key])
                queued.append({"monitor": monitor.id, "due": due_key})
        except MlaasError as exc:  # one failing monitor does not stop the sweep
            log.warning("monitor %s not swept: %s", monitor.id, exc.message)
    return queued


def run_check(monitor_id: str, due: str | None, *, ctx: Context, buffer: CaptureBuffer) -> dict[str, Any]:
    """Run one check of a monitor (never two at once), then its actions on drift; a failure is recorded on it."""
    with ctx.monitors.lock(monitor_id, CHECK_LOCK_SECONDS) as acquired:
        if not acquired:
            if due:  # give the due time back: a later sweep queues it again once the running check ends
                ctx.monitors.release(monitor_id, due)
            return {"monitor": monitor_id, "checked": False, "reason": "a check of this monitor is running"}
        ctx.monitors.release(monitor_id, ROWS_WAITING)
        now = utcnow()
        try:
            version, outcome = _check(get(monitor_id, ctx=ctx), due, now, ctx=ctx, buffer=buffer)
        except Unavailable:
            raise
        except MlaasError as exc:
            return _failed(monitor_id, due, now, exc, ctx=ctx)
        monitor = get(monitor_id, ctx=ctx)  # re-read: the record may have changed while checking
        if outcome.get("last_file"):
            buffer.take_unchecked(buffer.stream_key(monitor.model, version), outcome["window"]["rows"])
        ctx.monitors.put(_after(monitor, version, outcome, now, due).stored())
        return outcome


def _check(monitor: MonitorRecord, due: str | None, now: datetime, *, ctx: Context,
           buffer: CaptureBuffer) -> tuple[int, dict[str, Any]]:
    version = ctx.registry.resolve(monitor.model, monitor.version)
    if monitor.quality:  # a quality monitor: its condition instead of a drift check, the same actions
        outcome = {"model": monitor.model, "version": version.version, "monitor": monitor.id,
                   **condition.check(monitor.quality, monitor.model, version.version, ctx=ctx, now=now,
                                     window_seconds=monitor.window_seconds)}
        if outcome["checked"] and outcome["breached"]:
            outcome["actions"] = _act(monitor, version.version, outcome, now, due, ctx=ctx)
        return version.version, outcome
    unsettled = buffer.unsettled_from(buffer.stream_key(monitor.model, version.version))
    predictor = ctx.registry.load_model(version).estimator if monitor.prediction_drift else None
    outcome = traffic.check(monitor, version.version, ctx=ctx, now=now,
                            watermark=monitor.watermark.get(str(version.version), ""), predictor=predictor,
                            unsettled_from=unsettled)
    if outcome["checked"] and outcome["dataset_drift"]:
        outcome["actions"] = _act(monitor, version.version, outcome, now, due, ctx=ctx)
    return version.version, outcome


def _after(monitor: MonitorRecord, version: int, outcome: dict[str, Any], now: datetime,
           due: str | None) -> MonitorRecord:
    """The monitor after a check that ran (or was skipped for too few rows, keeping the last real result)."""
    changes: dict[str, Any] = {"last_run_at": now.isoformat(), "last_error": None}
    if outcome.get("last_file"):
        changes["watermark"] = {**monitor.watermark, str(version): outcome["last_file"]}
    if outcome["checked"]:
        changes["last_result"] = outcome
    else:
        changes["last_skip"] = {"at": now.isoformat(), "reason": outcome.get("reason")}
    if due:
        changes["last_due"] = due
    if outcome.get("actions", {}).get("retrain", {}).get("job_id"):
        changes["last_retrain_at"] = now.isoformat()
    return monitor.model_copy(update=changes)


def _failed(monitor_id: str, due: str | None, now: datetime, exc: MlaasError, *, ctx: Context) -> dict[str, Any]:
    """Record a failed check on the monitor, with what it depended on, so it waits for a change."""
    monitor = get(monitor_id, ctx=ctx)
    depends_on = dependencies(monitor, ctx=ctx)
    error = CheckError(code=exc.code, message=exc.message, at=now.isoformat(), depends_on=depends_on,
                       retry=_retry_note(monitor, depends_on))
    changes: dict[str, Any] = {"last_run_at": now.isoformat(), "last_error": error}
    if due:
        changes["last_due"] = due
    ctx.monitors.put(monitor.model_copy(update=changes).stored())
    log.warning("monitor %s check failed: %s (retried %s)", monitor_id, exc.message, error.retry)
    return {"monitor": monitor_id, "checked": False, "error": exc.to_dict()}


def _retry_note(monitor: MonitorRecord, depends_on: Dependencies) -> str:
    if depends_on.version is None:
        change = f"{monitor.model} resolves to a version again"
    elif monitor.version is None:
        change = (f"{monitor.model} gets a new production version, or v{depends_on.version} a new drift-data "
                  "baseline or data config")
    else:
        change = f"{monitor.model} v{depends_on.version} gets a new drift-data baseline or data config"
    return f"when {change}, or on POST /monitors/{monitor.id}/run"


def _act(monitor: MonitorRecord, version: int, outcome: dict[str, Any], now: datetime, due: str | None, *,
         ctx: Context) -> dict[str, Any]:
    actions: dict[str, Any] = {}
    webhook = monitor.on_drift.webhook
    if webhook:
        payload = {"event": "drift", "monitor": monitor.id, "model": monitor.model, "version": version,
                   "run_id": outcome["run_id"], "share_drifted": outcome.get("share_drifted"),
                   "drifted_columns": outcome.get("drifted_columns"), "window": outcome["window"],
                   "at": now.isoformat()}
        if outcome.get("kind") == "quality":
            payload = {**{k: v for k, v in payload.items() if k not in ("share_drifted", "drifted_columns")},
                       "event": "quality", **{k: outcome[k] for k in QUALITY_FIELDS}}
        try:
            actions["webhook"] = deliver(webhook.url, payload, secret=webhook.secret,
                                         allowlist=ctx.settings.webhook_allowlist,
                                         timeout=ctx.settings.webhook_timeout)
        except MlaasError as exc:
            actions["webhook"] = {"delivered": False, "error": exc.message}
    if monitor.on_drift.retrain:
        occasion = due or outcome["run_id"] or f"quality:{now.isoformat()}"
        actions["retrain"] = _retrain(monitor, monitor.on_drift.retrain, now, occasion, ctx=ctx)
    return actions


def _retrain(monitor: MonitorRecord, retrain: RetrainAction, now: datetime, occasion: str, *,
             ctx: Context) -> dict[str, Any]:
    cooldown = int(retrain.cooldown_seconds or ctx.settings.retrain_cooldown_seconds)
    last = monitor.last_retrain_at
    if last and datetime.fromisoformat(last) + timedelta(seconds=cooldown) > now:
        return {"started": False, "reason": f"cooldown of {cooldown} s since the last retraining at {last}"}
    spec = TrainSpec(model=monitor.model, dataset=retrain.dataset, data_config=retrain.data_config,
                     promote=retrain.promote, drift_fraction=ctx.settings.drift_fraction,
                     test_fraction=ctx.settings.test_fraction)
    try:
        job = retraining.submit(spec, ctx=ctx, request_id=f"monitor:{monitor.id}",
                                idempotency_key=f"monitor:{monitor.id}:{occasion}")
    except Unavailable:
        raise
    except MlaasError as exc:  # the check itself succeeded: a retraining that cannot start is its outcome
        return {"started": False, "reason": exc.message}
    return {"started": True, "job_id": job["job_id"]}
