"""POST /batch-inference against the real stack: row-by-row equality, a killed worker resumed, bad rows, bad input."""

from __future__ import annotations

import io
import os
import signal

import mlflow
import numpy as np
import pandas as pd
import pytest

from mlaas.uris import S3Uri
from tests.integration.conftest import PREDICT_KEY, Api
from tests.integration.models import CATEGORICAL, NUMERIC, register, titanic_pipeline
from tests.waiting import wait_for

pytestmark = pytest.mark.integration
TRAIN = pd.read_csv("examples/data/titanic/titanic.csv")
FEATURES = NUMERIC + CATEGORICAL


@pytest.fixture(scope="module")
def model(settings, titanic) -> dict[str, object]:
    """One registered titanic model (its data config names PassengerId as the index) and its own estimator."""
    name = f"batch-{os.getpid()}"
    version = register(settings, name, titanic_pipeline(), TRAIN[FEATURES], TRAIN["Survived"],
                       tags={"data_config": titanic["data_config"]})
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    return {"name": name, "version": version, "estimator": mlflow.sklearn.load_model(f"models:/{name}/{version}")}


def put(ctx, key: str, frame: pd.DataFrame) -> str:
    uri = S3Uri(ctx.settings.datasets_bucket, key)
    if key.endswith(".csv"):
        ctx.storage.put_bytes(uri, frame.to_csv(index=False).encode())
    else:
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False, row_group_size=3000)
        ctx.storage.put_bytes(uri, buffer.getvalue())
    return str(uri)


def parts(ctx, output: str, kind: str = "part") -> pd.DataFrame:
    bucket, _, prefix = output.removeprefix("s3://").partition("/")
    objects = sorted((o.uri for o in ctx.storage.list(bucket, prefix) if o.uri.key.rsplit("/", 1)[1].startswith(kind)),
                     key=lambda u: u.key)
    return pd.concat([pd.read_parquet(io.BytesIO(ctx.storage.get_bytes(u))) for u in objects], ignore_index=True)


def submit(api: Api, **body) -> str:
    response = api.post("/batch-inference", json=body)
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def assert_own_predictions(model, out: pd.DataFrame, frame: pd.DataFrame) -> None:
    estimator = model["estimator"]
    assert out["id"].tolist() == frame["PassengerId"].tolist()  # every row once, in order, its id kept
    assert out["prediction"].tolist() == estimator.predict(frame[FEATURES]).tolist()
    np.testing.assert_allclose(out[["proba_0", "proba_1"]].to_numpy(), estimator.predict_proba(frame[FEATURES]),
                               rtol=1e-9, atol=1e-12)


def test_a_batch_job_of_several_chunks_equals_the_models_own_predictions_row_by_row(api, ctx, model, titanic):
    job_id = submit(api, model=model["name"], dataset=titanic["train"], chunk_rows=200)
    job = api.wait_job(job_id)
    assert job["state"] == "succeeded", job
    result = job["result"]
    assert result["output"] == f"s3://{ctx.settings.drift_bucket}/predictions/{job_id}/"
    assert (result["rows"], result["files"], result["version"], result["errors"]) == (891, 5, model["version"], 0)
    assert_own_predictions(model, parts(ctx, result["output"]), TRAIN)
    listed = api.get("/jobs", params={"type": "batch"}).json()["jobs"]
    assert job_id in [j["job_id"] for j in listed]


def test_a_worker_killed_mid_batch_resumes_with_no_duplicate_or_missing_row(api, ctx, model, unique):
    big = pd.concat([TRAIN] * 30, ignore_index=True)
    big["PassengerId"] = range(1, len(big) + 1)
    dataset = put(ctx, f"{unique}/big.parquet", big)
    output = f"s3://{ctx.settings.drift_bucket}/{unique}/out/"
    job_id = submit(api, model=model["name"], version=model["version"], dataset=dataset, output=output,
                    chunk_rows=400)

    def mid_batch() -> bool:
        job = api.get(f"/jobs/{job_id}").json()
        step = (job.get("progress") or {}).get("step", "")
        return job["state"] == "running" and step.startswith("chunk ") and int(step.split()[1]) >= 3

    wait_for(mid_batch, 120, "the batch job past its third chunk")
    os.kill(int(ctx.jobs.holder(job_id).rpartition(":")[2]), signal.SIGKILL)  # what the out-of-memory killer does
    job = api.wait_job(job_id)
    assert job["state"] == "succeeded" and job["attempts"] == 2, job
    result = job["result"]
    assert result["resumed_chunks"] >= 3 and result["rows"] == len(big) and result["files"] == 67, result
    assert_own_predictions(model, parts(ctx, output), big)


def test_bad_rows_fail_the_job_naming_chunk_and_row_or_go_to_errors_parts_with_skip(api, ctx, model, unique):
    bad = TRAIN.copy()
    bad["Age"] = bad["Age"].astype(object)
    bad.loc[[3, 700], "Age"] = "unknown"
    dataset = put(ctx, f"{unique}/bad.csv", bad)
    failed = api.wait_job(submit(api, model=model["name"], dataset=dataset, chunk_rows=300))
    assert failed["state"] == "failed", failed
    assert failed["error"]["code"] == "invalid_input"
    assert "chunk 0, row 3 (id 4), column 'Age': expected a number" in failed["error"]["message"]
    skipped = api.wait_job(submit(api, model=model["name"], dataset=dataset, chunk_rows=300, on_error="skip"))
    assert skipped["state"] == "succeeded", skipped
    result = skipped["result"]
    assert (result["rows"], result["errors"], result["error_files"]) == (889, 2, 2)
    errors = parts(ctx, result["output"], "errors")
    assert errors["row"].tolist() == [3, 700] and errors["id"].tolist() == ["4", "701"]
    assert_own_predictions(model, parts(ctx, result["output"]), TRAIN.drop(index=[3, 700]))


@pytest.mark.parametrize(("change", "status", "words"), [
    ({"output": "s3://elsewhere/out/"}, 400, "output: bucket 'elsewhere' is not one mlaas may use"),
    ({"dataset": "s3://datasets/nothing/here.csv"}, 400, "dataset: s3://datasets/nothing/here.csv does not exist"),
    ({"dataset": "s3://datasets/fixtures/titanic/data_config.yaml"}, 400, "must end with .csv, .parquet or .pq"),
    ({"on_error": "ignore"}, 400, "on_error"),
    ({"chunk_rows": 0}, 400, "chunk_rows"),
    ({"version": 999}, 404, "999"),
    ({"model": "no-such-batch-model"}, 404, "no-such-batch-model"),
])
def test_bad_requests_are_refused_before_any_job_naming_the_field(api, model, titanic, change, status, words):
    response = api.post("/batch-inference", json={"model": model["name"], "dataset": titanic["train"], **change})
    assert response.status_code == status, response.text
    assert words in response.json()["message"]


def test_a_key_without_the_jobs_scope_cannot_start_a_batch(stack, model, titanic):
    response = Api(stack.config.url("api"), PREDICT_KEY).post(
        "/batch-inference", json={"model": model["name"], "dataset": titanic["train"]})
    assert response.status_code == 403 and "'jobs' scope" in response.json()["message"]
