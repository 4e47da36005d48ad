"""Ground truth by row id against the real stack: feedback joined to served predictions, live quality, its
MLflow runs, a bulk feedback job, and a quality monitor that calls its webhook and retrains."""

from __future__ import annotations

import hashlib
import hmac
import json

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from sklearn import metrics as skm

from mlaas.adapters.capture_buffer import CaptureBuffer
from tests.integration.captured import drain
from tests.integration.conftest import JOBS_KEY, PREDICT_KEY, WEBHOOK_PORT, Api
from tests.integration.models import CATEGORICAL, NUMERIC, register, titanic_pipeline
from tests.receiver import Receiver
from tests.waiting import wait_for

pytestmark = pytest.mark.integration
SECRET = "quality-webhook-secret-of-32-bytes!"
TRAIN = pd.read_csv("examples/data/titanic/titanic.csv")
TEST = pd.read_csv("examples/data/titanic/titanic_test.csv")
FEATURES = NUMERIC + CATEGORICAL


def records(frame: pd.DataFrame, prefix: str) -> list[dict]:
    rows = [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
            for r in frame[FEATURES].to_dict(orient="records")]
    return [{"id": f"{prefix}{i}", **row} for i, row in zip(frame.index, rows, strict=True)]


def serve(api, ctx, settings, model: str, frame: pd.DataFrame, prefix: str = "r-") -> dict[str, dict]:
    """Score rows with ids through /inference, wait until their capture is in storage; the answers by id."""
    answers = {}
    for start in range(0, len(frame), 60):
        response = api.post("/inference", json={"model": model, "data": records(frame.iloc[start:start + 60], prefix)})
        assert response.status_code == 200, response.text
        answers.update({p["id"]: p for p in response.json()["predictions"]})
    buffer = CaptureBuffer(settings)
    drain(ctx, buffer, buffer.stream_key(model, 1), len(frame))
    return answers


def performance_once(api, model: str, done, what: str, **params) -> dict:
    return wait_for(lambda: (lambda body: body if done(body) else None)(
        api.get(f"/models/{model}/performance", params=params).json()), 90, what)


def test_feedback_is_joined_by_row_id_and_scored_like_evaluation(api, ctx, settings, unique):
    register(settings, unique, titanic_pipeline(), TRAIN[FEATURES], TRAIN["Survived"])
    served = TEST.iloc[:120]
    answers = serve(api, ctx, settings, unique, served)
    truth = dict(zip((f"r-{i}" for i in served.index), served["Survived"].astype(int), strict=True))
    first = [{"id": f"r-{i}", "actual": truth[f"r-{i}"]} for i in served.index[:100]]
    first += [{"id": f"nobody-{i}", "actual": 1} for i in range(5)]  # never predicted: unmatched
    accepted = Api(api.base_url, JOBS_KEY).post("/feedback", json={"model": unique, "data": first})
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["accepted"] == 105
    corrected = {f"r-{i}": 1 - truth[f"r-{i}"] for i in served.index[:10]}  # the same rows again: duplicates
    again = api.post("/feedback", json={"model": unique,
                                        "data": [{"id": k, "actual": v} for k, v in corrected.items()]})
    assert again.status_code == 202, again.text

    for body, status, fragment in [
        ({"model": unique, "data": [{"id": "a", "actual": 1}, {"id": "a", "actual": 0}]}, 400, "duplicate ids 'a'"),
        ({"model": unique, "data": [{"actual": 1}]}, 400, "id"),
        ({"model": unique, "data": [{"id": "a", "actual": 1}], "dataset": "s3://datasets/x.csv"}, 400, "not both"),
        ({"model": "nobody-at-all", "data": [{"id": "a", "actual": 1}]}, 404, "nobody-at-all"),
        ({"model": unique, "data": [{"id": f"x{i}", "actual": 0} for i in range(settings.max_feedback_rows + 1)]},
         413, "MLAAS_MAX_FEEDBACK_ROWS"),
    ]:
        response = api.post("/feedback", json=body)
        assert response.status_code == status, (body if status != 413 else status, response.text)
        assert fragment in response.json()["message"], response.text
    assert Api(api.base_url, PREDICT_KEY).post("/feedback", json={"model": unique, "data": first}).status_code == 403

    shown = performance_once(api, unique, lambda b: b["feedback"].get("outcomes") == 115,
                             "both feedback batches joined", window=60)
    assert shown["feedback"]["matched"] == 100 and shown["feedback"]["unmatched"] == 5
    assert sorted(shown["feedback"]["unmatched_ids"]) == [f"nobody-{i}" for i in range(5)]
    assert shown["feedback"]["duplicates"] == 10 and set(shown["feedback"]["duplicate_ids"]) == set(corrected)
    actual = np.array([corrected.get(k, truth[k]) for k in (f"r-{i}" for i in served.index[:100])])
    ids = [f"r-{i}" for i in served.index[:100]]
    predicted = np.array([answers[k]["prediction"] for k in ids])
    p1 = np.array([answers[k]["probabilities"]["1"] for k in ids])
    metrics = shown["overall"]["metrics"]
    assert shown["version"] == 1 and shown["task"] == "classification" and shown["overall"]["n"] == 100
    assert metrics["accuracy"] == pytest.approx(skm.accuracy_score(actual, predicted))
    assert metrics["f1_macro"] == pytest.approx(skm.f1_score(actual, predicted, average="macro"))
    assert metrics["roc_auc"] == pytest.approx(skm.roc_auc_score(actual, p1))
    assert metrics["log_loss"] == pytest.approx(skm.log_loss(actual, np.column_stack([1 - p1, p1])))
    assert sum(w["n"] for w in shown["windows"]) == 100
    assert shown["overall"]["estimated"]["n"] == 120  # every served row, labelled or not
    assert shown["overall"]["estimated"]["metrics"]["accuracy"] == pytest.approx(
        np.mean(np.maximum(p1, 1 - p1)), abs=0.2)
    assert set(shown["estimate_check"]["difference"]) == {"accuracy", "roc_auc"}
    assert api.get("/models/nobody-at-all/performance").status_code == 404
    assert api.get(f"/models/{unique}/performance", params={"since": "yesterday"}).status_code == 400

    client = MlflowClient(settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(f"mlaas/{unique}")

    def perf_run():
        runs = client.search_runs([experiment.experiment_id], "tags.`mlaas.kind` = 'perf'") if experiment else []
        return [r for r in runs if r.data.metrics.get("n") == 100
                and r.data.metrics.get("accuracy") == pytest.approx(metrics["accuracy"])]

    experiment = wait_for(lambda: client.get_experiment_by_name(f"mlaas/{unique}"), 60, "the model's experiment")
    run = wait_for(perf_run, 90, "a perf_ run of the joined window")[0]
    assert run.info.run_name.startswith("perf_") and run.data.tags["mlaas.model_version"] == "1"

    # a bulk form: a dataset of outcomes in storage, read by a job
    bulk = pd.DataFrame({"passenger": [f"r-{i}" for i in served.index[100:]] + ["nobody-else"],
                         "outcome": [truth[f"r-{i}"] for i in served.index[100:]] + [0]})
    key = f"feedback/{unique}/outcomes.csv"
    put = api.request("PUT", f"/datasets/{key}", data=bulk.to_csv(index=False), headers={"Content-Type": "text/csv"})
    assert put.status_code == 201, put.text
    submitted = api.post("/feedback", json={"model": unique, "dataset": put.json()["uri"], "id_column": "passenger",
                                            "actual_column": "outcome"})
    assert submitted.status_code == 202, submitted.text
    job = api.wait_job(submitted.json()["job_id"])
    assert job["state"] == "succeeded" and job["type"] == "feedback", job
    assert job["result"]["accepted"] == 21
    assert job["result"]["join"]["batch"] == {"batch": job["job_id"], "matched": 20, "unmatched": 1, "duplicates": 0}
    assert api.get(f"/models/{unique}/performance").json()["overall"]["n"] == 120
    wrong = api.post("/feedback", json={"model": unique, "dataset": put.json()["uri"], "id_column": "nope"})
    failed = api.wait_job(wrong.json()["job_id"])
    assert failed["state"] == "failed" and "'nope'" in failed["error"]["message"], failed


def test_a_quality_monitor_calls_its_webhook_and_retrains_within_its_cooldown(api, ctx, settings, titanic, unique):
    register(settings, unique, titanic_pipeline(), TRAIN[FEATURES], TRAIN["Survived"])
    served = TEST.iloc[:60]
    answers = serve(api, ctx, settings, unique, served, prefix="q-")
    wrong = [{"id": k, "actual": 1 - int(a["prediction"])} for k, a in answers.items()]  # every prediction wrong
    assert api.post("/feedback", json={"model": unique, "data": wrong}).status_code == 202
    performance_once(api, unique, lambda b: b["overall"]["n"] == 60, "the outcomes joined")
    receiver = Receiver(WEBHOOK_PORT)
    try:
        monitor_id = f"quality-{unique}"
        estimated = api.post("/monitors", json={"model": unique, "enabled": False, "quality": {
            "metric": "accuracy", "source": "estimated", "floor": 0.5, "max_drop": 0.1}})
        assert estimated.status_code == 201, estimated.text  # an estimated floor is fine; an unknown metric is not:
        api.delete(f"/monitors/{estimated.json()['id']}")
        refused = api.post("/monitors", json={"model": unique, "quality": {"metric": "speed", "floor": 1}})
        assert refused.status_code == 400 and "quality.metric" in refused.json()["message"]
        created = api.post("/monitors", json={
            "id": monitor_id, "model": unique, "version": 1, "schedule": {"every_seconds": 3600},
            "quality": {"metric": "accuracy", "floor": 0.6, "min_rows": 30},
            "on_drift": {"webhook": {"url": receiver.url, "secret": SECRET},
                         "retrain": {"dataset": titanic["train"], "data_config": titanic["data_config"],
                                     "promote": True, "cooldown_seconds": 3600}}})
        assert created.status_code == 201, created.text

        wait_for(lambda: receiver.received, 90, "the quality webhook")  # the first check is due at creation
        headers, body = receiver.received[0]
        expected = "sha256=" + hmac.new(SECRET.encode(), headers["X-Mlaas-Timestamp"].encode() + b"." + body,
                                        hashlib.sha256).hexdigest()
        assert headers["X-Mlaas-Signature"] == expected
        event = json.loads(body)
        assert event["event"] == "quality" and event["metric"] == "accuracy" and event["value"] == 0.0
        assert event["n"] == 60 and event["monitor"] == monitor_id and "below 0.6" in event["reasons"][0]

        def result():
            last = api.get(f"/monitors/{monitor_id}").json().get("last_result") or {}
            return last if last.get("actions") else None

        retrain = wait_for(result, 60, "the check's actions stored")["actions"]["retrain"]
        assert retrain["started"] is True, retrain
        job = api.wait_job(retrain["job_id"])
        assert job["state"] == "succeeded" and job["result"]["source_version"] == 1, job
        assert "promotion" in job["result"]  # through the gate

        assert api.post(f"/monitors/{monitor_id}/run").status_code == 202
        wait_for(lambda: len(receiver.received) >= 2, 90, "a second quality webhook")
        again = wait_for(lambda: (lambda r: r if r and r["actions"]["retrain"].get("started") is False else None)(
            result()), 60, "the second check stored")
        assert "cooldown" in again["actions"]["retrain"]["reason"]
        api.delete(f"/monitors/{monitor_id}")
    finally:
        receiver.close()
