"""Retraining through the HTTP API against the real stack (issue: POST /train)."""

from __future__ import annotations

import io
import re

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LinearRegression

from mlaas import jobs
from mlaas.datasets.frames import write_config
from mlaas.training import retrain
from mlaas.training.specs import TrainSpec
from mlaas.uris import S3Uri, parse_uri
from tests.integration.models import CATEGORICAL, NUMERIC, register, titanic_pipeline

pytestmark = pytest.mark.integration
TITANIC = pd.read_csv("examples/data/titanic/titanic.csv")


@pytest.fixture
def titanic_model(settings, unique):
    register(settings, unique, titanic_pipeline(), TITANIC[NUMERIC + CATEGORICAL], TITANIC["Survived"])
    return unique


def versions(settings, name):
    return sorted(int(v.version) for v in MlflowClient(settings.mlflow_tracking_uri).search_model_versions(
        f"name = '{name}'"))


def put_csv(ctx, key, frame):
    uri = S3Uri(ctx.settings.datasets_bucket, key)
    ctx.storage.put_bytes(uri, frame.to_csv(index=False).encode())
    return str(uri)


def test_train_end_to_end(api, ctx, settings, titanic_model, titanic):
    body = {"model": titanic_model, "dataset": titanic["train"], "data_config": titanic["data_config"],
            "random_state": 7}
    response = api.post("/train", json=body)
    assert response.status_code == 202, response.text
    job = api.wait_job(response.json()["job_id"])
    assert job["state"] == "succeeded", job
    result = job["result"]
    assert result["version"] == 2 and result["source_version"] == 1 and result["test_set"] == "holdout"
    assert re.fullmatch(r"train_\d{8}T\d{6}\.\d{6}Z_[0-9a-f]{4}", result["run_name"])

    client = MlflowClient(settings.mlflow_tracking_uri)
    run = client.get_run(result["run_id"])
    assert run.info.run_name == result["run_name"] and run.info.status == "FINISHED"
    for metric in ("accuracy", "precision_macro", "recall_macro", "f1_macro", "roc_auc"):
        assert 0.5 < run.data.metrics[metric] <= 1.0, (metric, run.data.metrics)
    assert run.data.params["dataset"] == titanic["train"]
    assert len(run.data.params["dataset_sha256"]) == 64
    assert run.data.params["source_version"] == "1"

    version = client.get_model_version(titanic_model, "2")
    tags = version.tags
    assert tags["stage"] == "staging" and tags["source_version"] == "1" and tags["job_id"] == job["job_id"]
    assert tags["dataset"] == titanic["train"] and tags["data_config"] == titanic["data_config"]
    assert tags["drift-data"] == result["drift_data"] and tags["test_dataset"] == result["test_dataset"]
    assert client.get_model_version(titanic_model, "1").tags["stage"] == "prod"  # not promoted

    baseline = pd.read_parquet(io.BytesIO(ctx.storage.get_bytes(parse_uri(result["drift_data"]))))
    assert abs(len(baseline) - 0.1 * len(TITANIC)) <= 1
    assert set(NUMERIC + CATEGORICAL + ["Survived", "PassengerId"]) == set(baseline.columns)
    holdout = pd.read_parquet(io.BytesIO(ctx.storage.get_bytes(parse_uri(result["test_dataset"]))))
    assert abs(len(holdout) - 0.2 * len(TITANIC)) <= 1
    assert not set(baseline["PassengerId"]) & set(holdout["PassengerId"])
    config_key = parse_uri(result["drift_data"]).key.rsplit("/", 1)[0] + "/data_config.yaml"
    assert ctx.storage.exists(S3Uri(settings.drift_bucket, config_key))


def test_retrain_from_recorded_tags_with_a_test_set_and_promotion(api, settings, titanic_model, titanic):
    first = api.wait_job(api.post("/train", json={
        "model": titanic_model, "dataset": titanic["train"], "data_config": titanic["data_config"]}).json()["job_id"])
    assert first["state"] == "succeeded"
    # version 2 records its data: a request without dataset/data_config uses them
    job = api.wait_job(api.post("/train", json={
        "model": titanic_model, "version": "latest", "test_dataset": titanic["test"], "promote": True,
    }).json()["job_id"])
    assert job["state"] == "succeeded", job
    result = job["result"]
    assert result["source_version"] == 2 and result["test_set"] == "test_dataset"
    assert result["test_dataset"] == titanic["test"]
    decision = result["promotion"]
    assert decision["requested"] and decision["metric"] == "f1_macro" and decision["incumbent_version"] == 1
    client = MlflowClient(settings.mlflow_tracking_uri)
    model = client.get_registered_model(titanic_model)
    if decision["promoted"]:
        assert decision["candidate"] >= decision["incumbent"]
        assert model.aliases.get("prod") == "3"
        assert client.get_model_version(titanic_model, "3").tags["stage"] == "prod"
        assert client.get_model_version(titanic_model, "1").tags["stage"] == "archived"
    else:
        assert decision["candidate"] < decision["incumbent"]
        assert "prod" not in model.aliases


def test_no_data_recorded_and_none_given_is_400(api, titanic_model):
    response = api.post("/train", json={"model": titanic_model})
    assert response.status_code == 400
    assert "dataset and data_config missing" in response.json()["message"]


def test_same_job_twice_registers_one_version(ctx, settings, titanic_model, titanic):
    pinned = retrain.prepare(TrainSpec(model=titanic_model, dataset=titanic["train"],
                                       data_config=titanic["data_config"], random_state=3), ctx=ctx)
    job, _ = ctx.jobs.create("train", jobs.params_of(pinned))
    first = retrain.run(pinned, ctx=ctx, job_id=job["job_id"], progress=lambda step, pct: None)
    second = retrain.run(pinned, ctx=ctx, job_id=job["job_id"], progress=lambda step, pct: None)
    assert first["version"] == second["version"] == 2
    assert versions(settings, titanic_model) == [1, 2]
    # a redelivered message for a finished job is skipped by the runner
    ctx.jobs.transition(job["job_id"], "running", allowed_from=("queued",))
    ctx.jobs.transition(job["job_id"], "succeeded", allowed_from=("running",), result=first)
    assert jobs.run(job["job_id"], lambda *a: pytest.fail("must not run again"), ctx=ctx) == "succeeded"
    assert versions(settings, titanic_model) == [1, 2]


@pytest.mark.parametrize(
    "case, fragment",
    [
        ("missing_file", "does not exist"),
        ("empty", "no rows"),
        ("missing_column", "missing column(s) Fare"),
        ("constant_target", "fewer than two classes"),
        ("not_csv", "not a readable"),
        ("bad_config", "target_column"),
    ],
)
def test_bad_data_fails_invalid_input_and_registers_nothing(api, ctx, settings, titanic_model, titanic, unique,
                                                            case, fragment):
    dataset, config = titanic["train"], titanic["data_config"]
    if case == "missing_file":
        dataset = f"s3://datasets/{unique}/absent.csv"
    elif case == "empty":
        dataset = put_csv(ctx, f"{unique}/empty.csv", TITANIC.head(0))
    elif case == "missing_column":
        dataset = put_csv(ctx, f"{unique}/nofare.csv", TITANIC.drop(columns=["Fare"]))
    elif case == "constant_target":
        dataset = put_csv(ctx, f"{unique}/const.csv", TITANIC.assign(Survived=1))
    elif case == "not_csv":
        uri = S3Uri(settings.datasets_bucket, f"{unique}/garbage.parquet")
        ctx.storage.put_bytes(uri, b"\x00\x01 definitely not parquet")
        dataset = str(uri)
    elif case == "bad_config":
        uri = S3Uri(settings.datasets_bucket, f"{unique}/config.yaml")
        write_config(ctx.storage, uri, {"numerical_features": ["Age"]})
        config = str(uri)
    before = MlflowClient(settings.mlflow_tracking_uri).get_model_version(titanic_model, "1").tags
    job = api.wait_job(api.post("/train", json={"model": titanic_model, "dataset": dataset,
                                                "data_config": config}).json()["job_id"])
    assert job["state"] == "failed", job
    assert job["error"]["code"] == "invalid_input"
    assert fragment in job["error"]["message"]
    assert versions(settings, titanic_model) == [1]
    assert MlflowClient(settings.mlflow_tracking_uri).get_model_version(titanic_model, "1").tags == before


def test_regression_with_a_plain_estimator_on_numeric_features(api, ctx, settings, unique):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"row": np.arange(600), "x1": rng.normal(size=600), "x2": rng.normal(size=600)})
    frame["target"] = 3 * frame["x1"] - 2 * frame["x2"] + rng.normal(scale=0.1, size=600)
    dataset = put_csv(ctx, f"{unique}/reg.csv", frame)
    config = S3Uri(settings.datasets_bucket, f"{unique}/reg.json")
    write_config(ctx.storage, config, {"index_columns": ["row"], "target_column": "target",
                                       "numerical_features": ["x1", "x2"], "task": "regression"})
    register(settings, unique, LinearRegression(), frame[["x1", "x2"]], frame["target"], signature=False)
    job = api.wait_job(api.post("/train", json={"model": unique, "dataset": dataset, "data_config": str(config),
                                                "promote": True}).json()["job_id"])
    assert job["state"] == "succeeded", job
    scores = job["result"]["metrics"]
    assert scores["rmse"] < 0.2 and scores["r2"] > 0.99 and "accuracy" not in scores
    assert job["result"]["promotion"]["metric"] == "rmse"


def test_random_forest_needs_its_tree_type_trusted(api, ctx, settings, unique):
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"x": rng.normal(size=300)})
    frame["y"] = frame["x"] * 2
    dataset = put_csv(ctx, f"{unique}/rf.csv", frame)
    config = S3Uri(settings.datasets_bucket, f"{unique}/rf.yaml")
    write_config(ctx.storage, config, {"target_column": "y", "numerical_features": ["x"], "task": "regression"})
    register(settings, unique, RandomForestRegressor(n_estimators=5, random_state=0), frame[["x"]], frame["y"],
             trusted=["sklearn.tree._tree.Tree"])
    job = api.wait_job(api.post("/train", json={"model": unique, "dataset": dataset,
                                                "data_config": str(config)}).json()["job_id"])
    assert job["state"] == "succeeded", job
