"""POST /data-drift, its HTML report, and datasets through the API, against the real stack."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from mlaas.adapters.capture_buffer import CaptureBuffer
from mlaas.uris import S3Uri
from tests.integration.captured import drain
from tests.integration.models import CATEGORICAL, NUMERIC, register, titanic_pipeline

pytestmark = pytest.mark.integration
TRAIN = pd.read_csv("examples/data/titanic/titanic.csv")
TEST = pd.read_csv("examples/data/titanic/titanic_test.csv")


def upload(api, key, frame, **params):
    return api.request("PUT", f"/datasets/{key}", data=frame.to_csv(index=False).encode(),
                       headers={"Content-Type": "text/csv"}, params=params)


def drift_job(api, **body):
    response = api.post("/data-drift", json=body)
    assert response.status_code == 202, response.text
    return api.wait_job(response.json()["job_id"])


def test_drift_between_two_uploaded_data_sets(api, settings, titanic, unique):
    calm = upload(api, f"{unique}/calm.csv", TEST)
    assert calm.status_code == 201, calm.text
    # four of the seven feature columns moved far (the default drift_share is 0.5); the other three untouched
    shifted = upload(api, f"{unique}/shifted.csv", TEST.assign(Age=TEST["Age"] + 30, Fare=TEST["Fare"] * 5 + 100,
                                                                 Sex="female", Embarked="Q"))
    job = drift_job(api, reference=titanic["train"], current=calm.json()["uri"], data_config=titanic["data_config"])
    assert job["state"] == "succeeded", job
    assert job["result"]["verdict"] == "no drift" and job["result"]["rows_current"] == len(TEST)
    job = drift_job(api, reference=titanic["train"], current=shifted.json()["uri"],
                    data_config=titanic["data_config"], correction="bh", domain_classifier=True)
    assert job["state"] == "succeeded", job
    result = job["result"]
    assert result["verdict"] == "drift", result
    assert sorted(result["drifted_columns"]) == ["Age", "Embarked", "Fare", "Sex"]
    assert result["domain_classifier"]["drifted"] is True
    by_column = {c["column"]: c for c in result["columns"]}
    assert by_column["Age"]["method"] == "ks" and by_column["Age"]["p_value"] < 0.05

    report = api.get(result["report_url"])
    assert report.status_code == 200 and report.headers["Content-Type"].startswith("text/html")
    assert "Age" in report.text and "<script" not in report.text.lower()
    client = MlflowClient(settings.mlflow_tracking_uri)
    run = client.get_run(result["run_id"])
    assert run.info.run_name.startswith("drift_") and run.data.tags["drift.verdict"] == "drift"
    assert {"drift_report.json", "drift_report.html"} <= {a.path for a in client.list_artifacts(result["run_id"])}
    assert client.get_experiment(run.info.experiment_id).name == "mlaas/data-drift"


def test_columns_given_inline_and_method_overrides(api, ctx, settings, unique):
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"x": rng.normal(size=2000), "c": rng.choice(["a", "b"], size=2000)})
    cur = pd.DataFrame({"x": rng.normal(0.5, 1, size=2000), "c": rng.choice(["a", "b"], size=2000)})
    ref_uri = upload(api, f"{unique}/ref.csv", ref).json()["uri"]
    cur_uri = upload(api, f"{unique}/cur.csv", cur).json()["uri"]
    job = drift_job(api, reference=ref_uri, current=cur_uri, columns={"numerical": ["x"], "categorical": ["c"]},
                    overrides={"x": {"method": "psi", "threshold": 0.05}}, drift_share=0.5)
    assert job["state"] == "succeeded", job
    by_column = {c["column"]: c for c in job["result"]["columns"]}
    assert by_column["x"]["method"] == "psi" and by_column["x"]["threshold"] == 0.05 and by_column["x"]["drifted"]
    assert by_column["c"]["method"] == "jensenshannon" and not by_column["c"]["drifted"]
    assert job["result"]["verdict"] == "drift"


def test_baseline_against_captured_traffic(api, ctx, settings, titanic, unique):
    register(settings, unique, titanic_pipeline(), TRAIN[NUMERIC + CATEGORICAL], TRAIN["Survived"])
    trained = api.wait_job(api.post("/train", json={"model": unique, "dataset": titanic["train"],
                                                    "data_config": titanic["data_config"]}).json()["job_id"])
    version = trained["result"]["version"]
    rows = TEST.head(120).assign(Age=lambda f: f["Age"] + 35)
    payload = [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
               for r in rows[NUMERIC + CATEGORICAL].to_dict(orient="records")]
    assert api.post("/inference", json={"model": unique, "version": version, "data": payload}).status_code == 200
    buffer = CaptureBuffer(settings)
    key = buffer.stream_key(unique, version)
    drain(ctx, buffer, key, 120)
    job = drift_job(api, reference={"model": unique, "version": version},
                    current={"model": unique, "version": version, "since": "2000-01-01T00:00:00Z"})
    assert job["state"] == "succeeded", job
    assert job["result"]["rows_current"] == 120 and "Age" in job["result"]["drifted_columns"]
    run = MlflowClient(settings.mlflow_tracking_uri).get_run(job["result"]["run_id"])
    assert MlflowClient(settings.mlflow_tracking_uri).get_experiment(run.info.experiment_id).name == f"mlaas/{unique}"


def test_drift_request_errors(api, titanic, unique):
    response = api.post("/data-drift", json={"reference": titanic["train"], "current": titanic["test"]})
    assert response.status_code == 400 and "data_config or columns" in response.json()["message"]
    response = api.post("/data-drift", json={"reference": "file:///etc/passwd", "current": titanic["test"],
                                             "columns": {"numerical": ["Age"]}})
    assert response.status_code == 400 and response.json()["message"].startswith("reference:")
    response = api.post("/data-drift", json={"reference": {"model": "nobody-here"}, "current": titanic["test"]})
    assert response.status_code == 404
    job = drift_job(api, reference=titanic["train"], current=titanic["test"],
                    columns={"numerical": ["Age", "NoSuchColumn"]})
    assert job["state"] == "failed" and job["error"]["code"] == "invalid_input"
    assert "NoSuchColumn" in job["error"]["message"]
    assert api.get(f"/jobs/{job['job_id']}/report").status_code == 404


def test_datasets_api(api, ctx, settings, titanic, unique):
    first = upload(api, f"{unique}/train.csv", TRAIN)
    assert first.status_code == 201, first.text
    assert first.json()["uri"] == f"s3://{settings.datasets_bucket}/{unique}/train.csv"
    stored = ctx.storage.get_bytes(S3Uri(settings.datasets_bucket, f"{unique}/train.csv"))
    assert len(stored) == first.json()["size"]
    assert upload(api, f"{unique}/train.csv", TRAIN).status_code == 409
    assert upload(api, f"{unique}/train.csv", TRAIN.head(10), overwrite="true").status_code == 201
    wrong_type = api.request("PUT", f"/datasets/{unique}/x.csv", data=b"a,b\n1,2\n",
                             headers={"Content-Type": "image/png"})
    assert wrong_type.status_code == 415
    bad_parquet = api.request("PUT", f"/datasets/{unique}/x.parquet", data=b"nope",
                              headers={"Content-Type": "application/vnd.apache.parquet"})
    assert bad_parquet.status_code == 400
    buffer = io.BytesIO()
    TEST.to_parquet(buffer)
    good_parquet = api.request("PUT", f"/datasets/{unique}/test.parquet", data=buffer.getvalue(),
                               headers={"Content-Type": "application/vnd.apache.parquet"})
    assert good_parquet.status_code == 201
    config = api.request("PUT", f"/datasets/{unique}/config.yaml", headers={"Content-Type": "application/yaml"},
                         data=b"target_column: Survived\nnumerical_features: [Age, Fare]\n")
    assert config.status_code == 201
    assert api.request("PUT", f"/datasets/{unique}/bad.json", data=b"{nope",
                       headers={"Content-Type": "application/json"}).status_code == 400
    escape = api.request("PUT", f"/datasets/{unique}/%2E%2E/escape.csv", data=b"a\n1\n",
                         headers={"Content-Type": "text/csv"})
    assert escape.status_code == 400 and "'..'" in escape.json()["message"]
    too_big = api.request("PUT", f"/datasets/{unique}/big.csv", data=b"a\n" + b"1\n" * (3 * 1024 * 1024),
                          headers={"Content-Type": "text/csv"})
    assert too_big.status_code == 413
    listed = api.get("/datasets", params={"prefix": f"{unique}/"}).json()["datasets"]
    assert {d["uri"].rsplit("/", 1)[1] for d in listed} == {"train.csv", "test.parquet", "config.yaml"}

    # a file that a model version records is never overwritten
    register(settings, unique, titanic_pipeline(), TRAIN[NUMERIC + CATEGORICAL], TRAIN["Survived"])
    trained = api.wait_job(api.post("/train", json={"model": unique, "dataset": first.json()["uri"],
                                                    "data_config": titanic["data_config"]}).json()["job_id"])
    assert trained["state"] == "succeeded", trained
    refused = upload(api, f"{unique}/train.csv", TRAIN, overwrite="true")
    assert refused.status_code == 409 and "used by a model version" in refused.json()["message"]
