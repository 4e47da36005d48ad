"""Scheduled monitors against the real stack: CRUD, firing on beat's schedule, webhook and retraining."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from mlaas.adapters.capture_buffer import CaptureBuffer
from mlaas.monitoring import monitors
from mlaas.monitoring.specs import MonitorSchedule, MonitorSpec
from tests.integration.captured import drain
from tests.integration.conftest import WEBHOOK_PORT
from tests.integration.models import CATEGORICAL, NUMERIC, register, titanic_pipeline
from tests.receiver import Receiver
from tests.waiting import wait_for

pytestmark = pytest.mark.integration
SECRET = "monitor-webhook-secret-of-32-bytes!"
TRAIN = pd.read_csv("examples/data/titanic/titanic.csv")
TEST = pd.read_csv("examples/data/titanic/titanic_test.csv")
FEATURES = NUMERIC + CATEGORICAL


@pytest.fixture
def receiver():
    r = Receiver(WEBHOOK_PORT)
    yield r
    r.close()


def rows(frame):
    return [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
            for r in frame[FEATURES].to_dict(orient="records")]


def test_monitor_crud_and_validation(api, settings, titanic, unique):
    register(settings, unique, titanic_pipeline(), TRAIN[FEATURES], TRAIN["Survived"])
    body = {"id": f"crud-{unique}", "model": unique, "schedule": {"cron": "*/30 * * * *"}, "min_rows": 50,
            "on_drift": {"webhook": {"url": f"http://127.0.0.1:{WEBHOOK_PORT}/x", "secret": SECRET}}}
    created = api.post("/monitors", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["on_drift"]["webhook"]["secret"] == "***"
    assert api.post("/monitors", json=body).status_code == 409
    assert api.get(f"/monitors/crud-{unique}").json()["schedule"] == {"cron": "*/30 * * * *"}
    changed = api.request("PATCH", f"/monitors/crud-{unique}", json={"min_rows": 75, "enabled": False})
    assert changed.status_code == 200 and changed.json()["min_rows"] == 75 and changed.json()["enabled"] is False
    assert any(m["id"] == f"crud-{unique}" for m in api.get("/monitors").json()["monitors"])
    assert SECRET not in api.get("/monitors").text

    for bad, status, fragment in [
        ({"model": "nobody-at-all"}, 404, "nobody-at-all"),
        ({"model": unique, "schedule": {"cron": "every day"}}, 400, "five fields"),
        ({"model": unique, "on_drift": {"webhook": {"url": "http://10.1.2.3/x", "secret": SECRET}}}, 400, "ALLOWLIST"),
        ({"model": unique, "on_drift": {"webhook": {"url": "http://169.254.169.254/latest", "secret": SECRET}}},
         400, "ALLOWLIST"),
        ({"model": unique, "on_drift": {"webhook": {"url": f"http://127.0.0.1:{WEBHOOK_PORT}/x"}}}, 400,
         "on_drift.webhook.secret"),
        ({"model": unique, "on_drift": {"retrain": {"dataset": "s3://elsewhere/x.csv",
                                                    "data_config": titanic["data_config"]}}}, 400, "elsewhere"),
    ]:
        response = api.post("/monitors", json=bad)
        assert response.status_code == status, (bad, response.text)
        assert fragment in response.json()["message"]
    assert api.delete(f"/monitors/crud-{unique}").status_code == 204
    assert api.get(f"/monitors/crud-{unique}").status_code == 404


def test_one_due_time_is_queued_once(ctx, settings, unique):
    register(settings, unique, titanic_pipeline(), TRAIN[FEATURES], TRAIN["Survived"])
    monitors.create(MonitorSpec(id=f"once-{unique}", model=unique, schedule=MonitorSchedule(every_seconds=3600),
                                enabled=True), ctx=ctx)
    now = datetime.now(UTC)
    first = [q for q in monitors.sweep(ctx=ctx, now=now) if q["monitor"] == f"once-{unique}"]
    second = [q for q in monitors.sweep(ctx=ctx, now=now) if q["monitor"] == f"once-{unique}"]
    assert len(first) == 1 and second == []
    ctx.monitors.delete(f"once-{unique}")


def recorded_result(api, monitor_id: str, event: dict) -> dict:
    """The monitor's last result once it is the check that sent ``event`` (stored just after the webhook)."""
    def stored() -> dict | None:
        last = api.get(f"/monitors/{monitor_id}").json().get("last_result") or {}
        return last if last.get("run_id") == event["run_id"] else None

    return wait_for(stored, 60, f"the result of check {event['run_id']} stored on {monitor_id}")


def test_monitor_fires_on_schedule_calls_the_webhook_and_retrains_once(api, ctx, settings, titanic, unique, receiver):
    register(settings, unique, titanic_pipeline(), TRAIN[FEATURES], TRAIN["Survived"])
    trained = api.wait_job(api.post("/train", json={"model": unique, "dataset": titanic["train"],
                                                    "data_config": titanic["data_config"],
                                                    "drift_fraction": 0.3}).json()["job_id"])
    version = trained["result"]["version"]
    assert api.post(f"/models/{unique}/promote", json={"version": version}).status_code == 200
    monitor = {
        "id": f"sched-{unique}", "model": unique, "schedule": {"every_seconds": 10}, "min_rows": 150,
        "on_drift": {"webhook": {"url": receiver.url, "secret": SECRET},
                     "retrain": {"dataset": titanic["train"], "data_config": titanic["data_config"],
                                 "cooldown_seconds": 3600}},
    }
    assert api.post("/monitors", json=monitor).status_code == 201
    shifted = TEST.iloc[:200].assign(Age=lambda f: f["Age"] + 40, Sex="female", Pclass=1, Embarked="Q")
    for start in range(0, 200, 50):
        response = api.post("/inference", json={"model": unique, "data": rows(shifted.iloc[start:start + 50])})
        assert response.status_code == 200 and response.json()["version"] == version

    wait_for(lambda: receiver.received, 120, "the drift webhook")
    headers, body = receiver.received[0]
    timestamp = headers["X-Mlaas-Timestamp"]
    expected = "sha256=" + hmac.new(SECRET.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert headers["X-Mlaas-Signature"] == expected
    assert abs(time.time() - int(timestamp)) < 600
    event = json.loads(body)
    assert event["monitor"] == f"sched-{unique}" and event["version"] == version and "Age" in event["drifted_columns"]

    retrain = recorded_result(api, f"sched-{unique}", event)["actions"]["retrain"]
    assert retrain["started"] is True
    job = api.wait_job(retrain["job_id"])
    assert job["state"] == "succeeded", job
    new_version = job["result"]["version"]
    assert new_version == version + 1 and job["result"]["source_version"] == version
    runs = MlflowClient(settings.mlflow_tracking_uri).search_runs(
        [MlflowClient(settings.mlflow_tracking_uri).get_experiment_by_name(f"mlaas/{unique}").experiment_id],
        f"tags.`mlaas.monitor` = 'sched-{unique}'")
    assert runs and all(r.info.run_name.startswith("infer_") for r in runs)

    # more drifting rows: the next check drifts again, but the cooldown holds retraining back
    for start in range(0, 200, 50):
        api.post("/inference", json={"model": unique, "version": version, "data": rows(shifted.iloc[start:start + 50])})
    wait_for(lambda: len(receiver.received) >= 2, 120, "a second drift webhook")
    again = recorded_result(api, f"sched-{unique}", json.loads(receiver.received[1][1]))["actions"]["retrain"]
    assert again["started"] is False and "cooldown" in again["reason"]
    versions = MlflowClient(settings.mlflow_tracking_uri).search_model_versions(f"name = '{unique}'")
    assert len(versions) == new_version
    api.delete(f"/monitors/sched-{unique}")


def wait_for_monitor(api, monitor_id, done, what, timeout=120):
    """Poll GET /monitors/<id> until ``done(monitor)``; returns the monitor."""
    deadline = time.monotonic() + timeout
    while True:
        shown = api.get(f"/monitors/{monitor_id}").json()
        if done(shown):
            return shown
        assert time.monotonic() < deadline, (what, shown)
        time.sleep(0.5)


def test_a_failed_check_shows_its_error_and_waits_for_a_baseline_before_running_again(api, ctx, settings, titanic,
                                                                                      unique):
    # a production version registered outside mlaas: it has no drift-data baseline, so no check can succeed
    register(settings, unique, titanic_pipeline(), TRAIN[FEATURES], TRAIN["Survived"])
    monitor_id = f"nobase-{unique}"
    created = api.post("/monitors", json={"id": monitor_id, "model": unique, "min_rows": 20, "enabled": False})
    assert created.status_code == 201, created.text
    assert api.post("/inference", json={"model": unique, "data": rows(TEST.head(60))}).status_code == 200
    buffer = CaptureBuffer(settings)
    drain(ctx, buffer, buffer.stream_key(unique, 1), 60)

    assert api.post(f"/monitors/{monitor_id}/run").status_code == 202
    shown = wait_for_monitor(api, monitor_id, lambda m: m.get("last_error"), "the failed check is recorded")
    error = shown["last_error"]
    assert error["code"] == "invalid_input" and "has no drift-data baseline" in error["message"], error
    assert error["at"] and error["depends_on"]["version"] == 1 and error["depends_on"]["baseline"] is None
    assert shown["next_check_at"] is None and "baseline" in error["retry"]
    listed = {m["id"]: m for m in api.get("/monitors").json()["monitors"]}
    assert listed[monitor_id]["last_error"]["message"] == error["message"]

    # enabled and due, with rows waiting: neither the schedule nor the flush queues it while nothing changed
    assert api.request("PATCH", f"/monitors/{monitor_id}", json={"enabled": True}).status_code == 200
    assert monitor_id not in [q["monitor"] for q in monitors.sweep(ctx=ctx)]
    assert monitor_id not in monitors.due_on_flush(unique, 1, 10**6, ctx=ctx)
    assert api.get(f"/monitors/{monitor_id}").json()["last_error"]["at"] == error["at"]  # not run again

    # a baseline appears on the production version: the next sweep runs the check, and it succeeds
    client = MlflowClient(settings.mlflow_tracking_uri)
    client.set_model_version_tag(unique, "1", "drift-data", titanic["train"])
    monitors.sweep(ctx=ctx)
    shown = wait_for_monitor(api, monitor_id, lambda m: m.get("last_result"), "a check after the new baseline")
    assert shown["last_error"] is None and shown["last_result"]["checked"] is True
    assert shown["last_result"]["window"]["rows"] == 60 and shown["next_check_at"] is not None
    api.delete(f"/monitors/{monitor_id}")
