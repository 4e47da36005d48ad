"""The whole stack on Azure Blob Storage (Azurite, MLAAS_STACK_STORAGE=azure): datasets, MLflow's artifacts
(wasbs://), training, inference capture flushed by beat, a drift job, outcomes joined to served rows and a batch
job, all through az:// URIs.

A second stack costs a start (~30 s), so this file keeps to one training and one drift job."""

from __future__ import annotations

from collections.abc import Iterator

import localstack
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from mlaas.context import Context
from mlaas.settings import Settings
from mlaas.uris import BlobUri, parse_uri
from tests.integration.captured import count_captured
from tests.integration.conftest import DATA, TEST_SERVICE_ENV, Api, run_stack
from tests.integration.models import CATEGORICAL, NUMERIC, register, titanic_pipeline
from tests.waiting import wait_for

pytestmark = pytest.mark.integration
TRAIN = pd.read_csv(DATA / "titanic.csv")
TEST = pd.read_csv(DATA / "titanic_test.csv")


@pytest.fixture(scope="module")
def az_stack() -> Iterator[localstack.Stack]:
    # its own worker metrics port: the session stack may be running beside it
    yield from run_stack({"MLAAS_WORKER_METRICS_PORT": str(localstack.free_ports(1)[0])}, storage="azure",
                         api_workers=1)


@pytest.fixture(scope="module")
def az_ctx(az_stack: localstack.Stack) -> Context:
    return Context(Settings.from_env({**az_stack.env(), **TEST_SERVICE_ENV}))


@pytest.fixture(scope="module")
def az_api(az_stack: localstack.Stack) -> Api:
    return Api(az_stack.config.url("api"))


def test_train_serve_capture_and_drift_on_azure_blob(az_stack, az_ctx, az_api, unique):
    settings = az_ctx.settings
    assert settings.storage_schemes == ("az",)
    assert az_api.get("/ready").json()["checks"] == {"redis": "ok", "mlflow": "ok", "azure": "ok"}
    uploaded = az_api.request("PUT", f"/datasets/{unique}/train.csv", data=(DATA / "titanic.csv").read_bytes(),
                              headers={"Content-Type": "text/csv"})
    assert uploaded.status_code == 201, uploaded.text
    train = uploaded.json()["uri"]
    assert train == f"az://{settings.datasets_bucket}/{unique}/train.csv"
    refused = az_api.request("PUT", f"/datasets/{unique}/train.csv", data=b"a\n1\n",
                             headers={"Content-Type": "text/csv"})
    assert refused.status_code == 409
    config = BlobUri(settings.datasets_bucket, f"{unique}/data_config.yaml", "az")
    az_ctx.storage.put_bytes(config, (DATA / "data_config.yaml").read_bytes())

    # a notebook's model: MLflow stores its artifacts in the wasbs:// container, proxied by the server
    register(settings, unique, titanic_pipeline(), TRAIN[NUMERIC + CATEGORICAL], TRAIN["Survived"])
    mlflow_blobs = list(az_ctx.storage.list("mlflow"))
    assert any(o.uri.key.endswith("model.skops") for o in mlflow_blobs), [o.uri.key for o in mlflow_blobs][:20]
    s3_uri = az_api.post("/train", json={"model": unique, "dataset": train.replace("az://", "s3://"),
                                         "data_config": str(config)})
    assert s3_uri.status_code == 400 and s3_uri.json()["message"].startswith("dataset: only az:// URIs"), s3_uri.text
    response = az_api.post("/train", json={"model": unique, "dataset": train, "data_config": str(config)})
    assert response.status_code == 202, response.text
    trained = az_api.wait_job(response.json()["job_id"])
    assert trained["state"] == "succeeded", trained
    version = trained["result"]["version"]
    baseline = trained["result"]["drift_data"]
    assert baseline.startswith(f"az://{settings.drift_bucket}/")
    assert az_ctx.storage.exists(parse_uri(baseline, schemes=settings.storage_schemes))

    # the API loads the new version from MLflow's Azure artifacts and captures what it serves
    rows = TEST.head(120).assign(Age=lambda f: f["Age"] + 35)
    payload = [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
               for r in rows[NUMERIC + CATEGORICAL].to_dict(orient="records")]
    served = az_api.post("/inference", json={"model": unique, "version": version, "data": payload})
    assert served.status_code == 200 and len(served.json()["predictions"]) == 120
    wait_for(lambda: count_captured(az_ctx, unique, version) >= 120, 90, "captured rows flushed to Azure by beat")
    assert all(o.uri.scheme == "az" for o in az_ctx.storage.list(settings.drift_bucket, "capture/"))

    response = az_api.post("/data-drift", json={"reference": {"model": unique, "version": version},
                                                "current": {"model": unique, "version": version,
                                                            "since": "2000-01-01T00:00:00Z"}})
    assert response.status_code == 202, response.text
    job = az_api.wait_job(response.json()["job_id"])
    assert job["state"] == "succeeded", job
    assert job["result"]["rows_current"] == 120 and "Age" in job["result"]["drifted_columns"]
    report = az_api.get(f"/jobs/{job['job_id']}/report")
    assert report.status_code == 200 and b"Age" in report.content
    assert MlflowClient(settings.mlflow_tracking_uri).get_run(job["result"]["run_id"]).info.status == "FINISHED"


    # outcomes of served rows joined on Azure, and a batch job writing its parts there (mlaas's own scheme)
    labelled = TEST.iloc[:60]
    body = [{"id": f"az-{i}", **{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}}
            for i, r in zip(labelled.index, labelled[NUMERIC + CATEGORICAL].to_dict(orient="records"), strict=True)]
    answered = az_api.post("/inference", json={"model": unique, "version": version, "data": body})
    assert answered.status_code == 200, answered.text
    wait_for(lambda: count_captured(az_ctx, unique, version) >= 180, 90, "the labelled rows captured")
    outcomes = [{"id": f"az-{i}", "actual": int(s)} for i, s in labelled["Survived"].items()]
    accepted = az_api.post("/feedback", json={"model": unique, "data": outcomes})
    assert accepted.status_code == 202, accepted.text
    shown = wait_for(lambda: (lambda b: b if b.get("feedback", {}).get("matched") == 60 else None)(
        az_api.get(f"/models/{unique}/performance", params={"version": version}).json()), 90,
        "the outcomes joined on Azure")
    assert shown["overall"]["n"] == 60 and "accuracy" in shown["overall"]["metrics"]
    assert all(o.uri.scheme == "az" for o in az_ctx.storage.list(settings.drift_bucket, "feedback/"))

    response = az_api.post("/batch-inference", json={"model": unique, "version": version, "dataset": train})
    assert response.status_code == 202, response.text
    batch = az_api.wait_job(response.json()["job_id"])
    assert batch["state"] == "succeeded", batch
    assert batch["result"]["output"].startswith(f"az://{settings.drift_bucket}/predictions/"), batch["result"]
    assert batch["result"]["rows"] == len(TRAIN)
    refused = az_api.post("/batch-inference", json={"model": unique, "dataset": train, "output": "s3://drift/x/"})
    assert refused.status_code == 400 and refused.json()["message"].startswith("output: only az://"), refused.text
