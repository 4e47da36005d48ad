"""Models come from notebooks, not from us: each odd kind gets a clear, documented outcome."""

from __future__ import annotations

import operator
import os
import tempfile

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from mlaas.datasets.frames import write_config
from mlaas.uris import S3Uri
from tests.integration.models import register

pytestmark = pytest.mark.integration


@pytest.fixture
def data(ctx, settings, unique):
    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"a": rng.random(400), "b": rng.random(400)})
    frame["label"] = (frame["a"] + frame["b"] > 1).astype(int)
    dataset = S3Uri(settings.datasets_bucket, f"{unique}/d.csv")
    ctx.storage.put_bytes(dataset, frame.to_csv(index=False).encode())
    config = S3Uri(settings.datasets_bucket, f"{unique}/c.yaml")
    write_config(ctx.storage, config, {"target_column": "label", "numerical_features": ["a", "b"]})
    return frame, str(dataset), str(config)


def train(api, name, data):
    _, dataset, config = data
    response = api.post("/train", json={"model": name, "version": "latest", "dataset": dataset, "data_config": config})
    assert response.status_code == 202, response.text
    return api.wait_job(response.json()["job_id"])


def test_cloudpickle_model_is_refused_by_default(api, settings, unique, data):
    frame = data[0]
    register(settings, unique, LogisticRegression(), frame[["a", "b"]], frame["label"],
             serialization_format="cloudpickle")
    job = train(api, unique, data)
    assert job["state"] == "failed" and job["error"]["code"] == "invalid_input"
    assert "cloudpickle" in job["error"]["message"] and "MLAAS_ALLOW_PICKLE_MODELS" in job["error"]["message"]


def test_untrusted_skops_type_is_named(api, settings, unique, data):
    frame = data[0]
    model = make_pipeline(FunctionTransformer(operator.neg), LogisticRegression())
    register(settings, unique, model, frame[["a", "b"]], frame["label"], trusted=["_operator.neg", "numpy.dtype"])
    job = train(api, unique, data)
    assert job["state"] == "failed" and job["error"]["code"] == "invalid_input"
    assert "_operator.neg" in job["error"]["message"] and "MLAAS_SKOPS_TRUSTED_TYPES" in job["error"]["message"]


class Doubler(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input["a"] * 2


def test_pyfunc_only_model_cannot_be_retrained(api, settings, unique, data):
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_experiment(f"notebooks/{unique}")
    with mlflow.start_run():
        mlflow.pyfunc.log_model(name="model", python_model=Doubler(), registered_model_name=unique,
                                pip_requirements=["pandas"])
    job = train(api, unique, data)
    assert job["state"] == "failed" and job["error"]["code"] == "invalid_input"
    assert "pyfunc" in job["error"]["message"]


def test_model_from_another_scikit_learn_version_is_refused(api, settings, unique, data):
    frame = data[0]
    model = LogisticRegression().fit(frame[["a", "b"]], frame["label"])
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_experiment(f"notebooks/{unique}")
    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run() as run:
        path = os.path.join(tmp, "model")
        mlflow.sklearn.save_model(model, path, pip_requirements=["scikit-learn==1.5.2"])
        meta_path = os.path.join(path, "MLmodel")
        with open(meta_path) as fh:
            meta = yaml.safe_load(fh)
        meta["flavors"]["sklearn"]["sklearn_version"] = "1.5.2"
        with open(meta_path, "w") as fh:
            yaml.safe_dump(meta, fh)
        mlflow.log_artifacts(path, "model")
        mlflow.register_model(f"runs:/{run.info.run_id}/model", unique)
    job = train(api, unique, data)
    assert job["state"] == "failed" and job["error"]["code"] == "invalid_input"
    message = job["error"]["message"]
    assert "1.5.2" in message and "MLAAS_ALLOW_SKLEARN_VERSION_MISMATCH" in message


def test_model_without_signature_retrains(api, settings, unique, data):
    frame = data[0]
    register(settings, unique, LogisticRegression(), frame[["a", "b"]], frame["label"], signature=False)
    job = train(api, unique, data)
    assert job["state"] == "succeeded", job
    version = MlflowClient(settings.mlflow_tracking_uri).get_model_version(unique, str(job["result"]["version"]))
    assert version.tags["stage"] == "staging"
