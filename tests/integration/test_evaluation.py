"""POST /evaluate and the models API against the real stack."""

from __future__ import annotations

import os
import re
import time

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from sklearn import metrics as skm
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression, Ridge

from mlaas.datasets.frames import write_config
from mlaas.uris import S3Uri
from tests.integration.models import CATEGORICAL, NUMERIC, register, titanic_pipeline

pytestmark = pytest.mark.integration
TRAIN = pd.read_csv("examples/data/titanic/titanic.csv")
TEST = pd.read_csv("examples/data/titanic/titanic_test.csv")
FEATURES = NUMERIC + CATEGORICAL


def pyfunc_predict(settings, name, version, X):
    os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "true"
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    return mlflow.pyfunc.load_model(f"models:/{name}/{version}").predict(X)


def sklearn_proba(settings, name, version, X):
    os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "true"
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    return mlflow.sklearn.load_model(f"models:/{name}/{version}").predict_proba(X)


@pytest.fixture
def titanic_model(settings, unique):
    register(settings, unique, titanic_pipeline(), TRAIN[FEATURES], TRAIN["Survived"])
    return unique


def evaluate(api, **body):
    response = api.post("/evaluate", json=body)
    assert response.status_code == 202, response.text
    return api.wait_job(response.json()["job_id"])


def test_evaluation_metrics_equal_sklearn_on_pyfunc_predictions(api, settings, titanic_model, titanic):
    job = evaluate(api, model=titanic_model, dataset=titanic["test"], data_config=titanic["data_config"])
    assert job["state"] == "succeeded", job
    result = job["result"]
    y = TEST["Survived"]
    y_pred = pyfunc_predict(settings, titanic_model, 1, TEST[FEATURES])
    proba = sklearn_proba(settings, titanic_model, 1, TEST[FEATURES])
    expected = {
        "accuracy": skm.accuracy_score(y, y_pred),
        "precision_macro": skm.precision_score(y, y_pred, average="macro"),
        "recall_macro": skm.recall_score(y, y_pred, average="macro"),
        "f1_macro": skm.f1_score(y, y_pred, average="macro"),
        "f1_weighted": skm.f1_score(y, y_pred, average="weighted"),
        "roc_auc": skm.roc_auc_score(y, proba[:, 1]),
        "log_loss": skm.log_loss(y, proba),
    }
    for name, value in expected.items():
        assert result["metrics"][name] == pytest.approx(value, rel=1e-9), name
    assert result["rows"] == len(TEST) and len(result["dataset_sha256"]) == 64
    assert result["confusion_matrix"]["matrix"] == skm.confusion_matrix(y, y_pred, labels=[0, 1]).tolist()

    client = MlflowClient(settings.mlflow_tracking_uri)
    assert re.fullmatch(r"eval_\d{8}T\d{6}\.\d{6}Z_[0-9a-f]{4}", result["run_name"])
    artifacts = {a.path for a in client.list_artifacts(result["run_id"])}
    assert {"confusion_matrix.png", "roc_curve.png", "predictions.parquet", "confusion_matrix.json"} <= artifacts
    png = client.download_artifacts(result["run_id"], "roc_curve.png")
    with open(png, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    predictions = pd.read_parquet(client.download_artifacts(result["run_id"], "predictions.parquet"))
    assert len(predictions) == len(TEST) and (predictions["predicted"].to_numpy() == y_pred).all()
    tags = client.get_model_version(titanic_model, "1").tags
    assert tags["eval.run_id"] == result["run_id"] and tags["eval.dataset"] == titanic["test"]
    assert float(tags["eval.value"]) == pytest.approx(result["metrics"]["f1_macro"])


def test_test_set_comes_from_the_version_or_the_request(api, titanic_model, titanic):
    response = api.post("/evaluate", json={"model": titanic_model})
    assert response.status_code == 400 and "dataset" in response.json()["message"]
    trained = api.wait_job(api.post("/train", json={
        "model": titanic_model, "dataset": titanic["train"], "data_config": titanic["data_config"],
        "test_dataset": titanic["test"]}).json()["job_id"])
    job = evaluate(api, model=titanic_model, version=trained["result"]["version"])
    assert job["state"] == "succeeded", job
    assert job["result"]["dataset"] == titanic["test"]
    assert api.post("/evaluate", json={"model": titanic_model, "version": 9}).status_code == 404
    assert api.post("/evaluate", json={"model": "nope-nope", "dataset": titanic["test"]}).status_code == 404


def test_champion_challenger_and_promote_rollback_reach_inference(api, settings, titanic_model, titanic):
    trained = api.wait_job(api.post("/train", json={
        "model": titanic_model, "dataset": titanic["train"], "data_config": titanic["data_config"],
        "random_state": 1}).json()["job_id"])
    challenger = trained["result"]["version"]
    job = evaluate(api, model=titanic_model, version=challenger, dataset=titanic["test"],
                   data_config=titanic["data_config"], compare_with="prod")
    assert job["state"] == "succeeded", job
    comparison = job["result"]["comparison"]
    assert comparison["challenger_version"] == 1 and comparison["metric"] == "f1_macro"
    mine, theirs = job["result"]["metrics"]["f1_macro"], comparison["challenger_metrics"]["f1_macro"]
    assert comparison["better"] == (mine >= theirs)
    assert job["result"]["promotion"] == {"requested": False, "promoted": False}

    row = {"Pclass": 3, "Sex": "male", "Age": 30, "SibSp": 0, "Parch": 0, "Fare": 8.0, "Embarked": "S"}
    assert api.post("/inference", json={"model": titanic_model, "data": [row]}).json()["version"] == 1

    promoted = api.post(f"/models/{titanic_model}/promote", json={"version": challenger})
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["from"] == 1 and promoted.json()["to"] == challenger
    wait_for_version(api, titanic_model, row, challenger)
    client = MlflowClient(settings.mlflow_tracking_uri)
    assert client.get_registered_model(titanic_model).aliases["prod"] == str(challenger)
    assert client.get_model_version(titanic_model, str(challenger)).tags["stage"] == "prod"
    assert client.get_model_version(titanic_model, "1").tags["stage"] == "archived"

    rolled = api.post(f"/models/{titanic_model}/rollback")
    assert rolled.status_code == 200, rolled.text
    assert rolled.json()["to"] == 1
    wait_for_version(api, titanic_model, row, 1)
    history = api.get(f"/models/{titanic_model}").json()["promotions"]
    assert [(h["from"], h["to"]) for h in history] == [(1, challenger), (challenger, 1)]
    assert all(h["by"] and h["at"] for h in history)


def wait_for_version(api, model, row, version):
    deadline = time.monotonic() + 15
    while True:
        answered = api.post("/inference", json={"model": model, "data": [row]}).json()["version"]
        if answered == version:
            return
        assert time.monotonic() < deadline, f"inference still answers v{answered}, not v{version}"
        time.sleep(0.3)


def test_gated_promotion_needs_evaluations_on_the_same_rows(api, settings, titanic_model, titanic):
    # v1 (prod) is the fitted pipeline; v2 always answers the majority class: worse on f1_macro, whatever the rows
    majority = register(settings, titanic_model, DummyClassifier(strategy="most_frequent"), TRAIN[FEATURES],
                        TRAIN["Survived"], stage=None)
    client = MlflowClient(settings.mlflow_tracking_uri)
    refused = api.post(f"/models/{titanic_model}/promote", json={"version": majority, "require_better": True})
    assert refused.status_code == 409 and "evaluated on the same test set" in refused.json()["message"]
    job = evaluate(api, model=titanic_model, version=majority, dataset=titanic["test"],
                   data_config=titanic["data_config"], compare_with="prod")
    assert job["state"] == "succeeded", job
    assert job["result"]["comparison"]["better"] is False, job["result"]

    gated = api.post(f"/models/{titanic_model}/promote", json={"version": majority, "require_better": True})
    assert gated.status_code == 409, gated.text
    assert "worse than production v1" in gated.json()["message"]
    assert "prod" not in client.get_registered_model(titanic_model).aliases  # nothing moved
    assert "stage" not in client.get_model_version(titanic_model, str(majority)).tags
    assert api.get(f"/models/{titanic_model}").json()["production_version"] == 1
    assert api.get(f"/models/{titanic_model}").json()["promotions"] == []

    # the other way round: with the majority model in production, the pipeline passes the gate
    assert api.post(f"/models/{titanic_model}/promote", json={"version": majority}).status_code == 200
    gated = api.post(f"/models/{titanic_model}/promote", json={"version": 1, "require_better": True})
    assert gated.status_code == 200, gated.text
    assert gated.json()["from"] == majority and gated.json()["to"] == 1
    assert client.get_registered_model(titanic_model).aliases["prod"] == "1"
    assert client.get_model_version(titanic_model, "1").tags["stage"] == "prod"
    assert client.get_model_version(titanic_model, str(majority)).tags["stage"] == "archived"
    history = api.get(f"/models/{titanic_model}").json()["promotions"]
    assert [(h["from"], h["to"]) for h in history] == [(1, majority), (majority, 1)]
    assert history[0]["reason"] == "promoted by request"
    assert f"at least as good as production v{majority}" in history[1]["reason"]
    assert api.post(f"/models/{titanic_model}/promote", json={"version": 99}).status_code == 404


def test_models_api(api, titanic_model, titanic):
    listed = {m["name"]: m for m in api.get("/models").json()["models"]}
    assert listed[titanic_model]["production_version"] == 1 and listed[titanic_model]["latest_version"] == 1
    detail = api.get(f"/models/{titanic_model}").json()
    version = detail["versions"][0]
    assert version["version"] == 1 and version["stage"] == "prod"
    assert [c["name"] for c in version["input_schema"]] == FEATURES
    one = api.get(f"/models/{titanic_model}/versions/1").json()
    assert one["servable"] == {"ok": True, "columns": FEATURES, "classes": [0, 1]}
    assert api.get("/models/no-such-model").status_code == 404
    assert api.get(f"/models/{titanic_model}/versions/77").status_code == 404
    assert api.post(f"/models/{titanic_model}/rollback").status_code == 409


def put(ctx, key, frame, config):
    data = S3Uri(ctx.settings.datasets_bucket, f"{key}/data.csv")
    ctx.storage.put_bytes(data, frame.to_csv(index=False).encode())
    cfg = S3Uri(ctx.settings.datasets_bucket, f"{key}/config.yaml")
    write_config(ctx.storage, cfg, config)
    return str(data), str(cfg)


def test_multiclass_and_regression(api, ctx, settings, unique):
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"a": rng.normal(size=900), "b": rng.normal(size=900)})
    frame["kind"] = np.select([frame["a"] > 0.5, frame["a"] < -0.5], ["high", "low"], "mid")
    frame["value"] = 2 * frame["a"] + frame["b"] + rng.normal(scale=0.2, size=900)
    data, config = put(ctx, f"{unique}/multi", frame, {"target_column": "kind", "numerical_features": ["a", "b"]})
    register(settings, f"{unique}-c", LogisticRegression(max_iter=500), frame[["a", "b"]], frame["kind"])
    job = evaluate(api, model=f"{unique}-c", dataset=data, data_config=config)
    assert job["state"] == "succeeded", job
    assert set(job["result"]["confusion_matrix"]["labels"]) == {"high", "low", "mid"}
    assert 0.5 < job["result"]["metrics"]["roc_auc"] <= 1

    data, config = put(ctx, f"{unique}/reg", frame, {"target_column": "value", "numerical_features": ["a", "b"],
                                                     "task": "regression"})
    register(settings, f"{unique}-r", Ridge(), frame[["a", "b"]], frame["value"])
    job = evaluate(api, model=f"{unique}-r", dataset=data, data_config=config)
    assert job["state"] == "succeeded", job
    y_pred = pyfunc_predict(settings, f"{unique}-r", 1, frame[["a", "b"]])
    assert job["result"]["metrics"]["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(frame["value"], y_pred)))
    assert job["result"]["metrics"]["r2"] == pytest.approx(skm.r2_score(frame["value"], y_pred))
    client = MlflowClient(settings.mlflow_tracking_uri)
    assert "residuals.png" in {a.path for a in client.list_artifacts(job["result"]["run_id"])}
    preds = pd.read_parquet(client.download_artifacts(job["result"]["run_id"], "predictions.parquet"))
    assert len(preds) == 900
