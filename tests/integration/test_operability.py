"""Metrics under a multi-worker gunicorn and from the Celery worker; request ids into jobs and MLflow."""

from __future__ import annotations

import time

import pandas as pd
import pytest
import requests
from mlflow.tracking import MlflowClient
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import TEST_SERVICE_ENV, Api
from tests.integration.models import CATEGORICAL, NUMERIC, register, titanic_pipeline

pytestmark = pytest.mark.integration
TRAIN = pd.read_csv("examples/data/titanic/titanic.csv")


def samples(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def worker_metrics() -> str:
    port = TEST_SERVICE_ENV["MLAAS_WORKER_METRICS_PORT"]
    return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text


def test_metrics_follow_requests_across_gunicorn_workers(api, stack, settings, unique):
    assert Api(stack.config.url("api"), key=None).get("/metrics").status_code == 401
    register(settings, unique, titanic_pipeline(), TRAIN[NUMERIC + CATEGORICAL], TRAIN["Survived"])
    before = api.get("/metrics")
    assert before.status_code == 200 and before.headers["Content-Type"].startswith("text/plain")
    rows = [{"Pclass": 3, "Sex": "male", "Age": 30, "SibSp": 0, "Parch": 0, "Fare": 8.0, "Embarked": "S"}] * 3
    for _ in range(20):  # fresh connections, so both gunicorn workers take some
        assert requests.post(api.base_url + "/inference", json={"model": unique, "data": rows},
                             headers=dict(api.session.headers), timeout=30).status_code == 200
    after = api.get("/metrics").text
    assert samples(after, "mlaas_predictions_total", model=unique, version="1") == 60
    count = samples(after, "mlaas_http_requests_total", endpoint="/inference", method="POST", status="200")
    assert count - samples(before.text, "mlaas_http_requests_total", endpoint="/inference", method="POST",
                           status="200") == 20
    assert samples(after, "mlaas_http_request_duration_seconds_count", endpoint="/inference", status="200") >= 20
    assert samples(after, "mlaas_model_load_seconds_count", model=unique, version="1") >= 1
    assert samples(after, "mlaas_model_cache_total", result="hit") >= 18


def test_job_metrics_and_request_id_reach_the_job_and_its_run(api, settings, titanic, unique):
    register(settings, unique, titanic_pipeline(), TRAIN[NUMERIC + CATEGORICAL], TRAIN["Survived"])
    before = samples(worker_metrics(), "mlaas_jobs_total", type="train", state="succeeded")
    response = api.post("/train", json={"model": unique, "dataset": titanic["train"],
                                        "data_config": titanic["data_config"]},
                        headers={"X-Request-ID": f"trace-{unique}"})
    assert response.headers["X-Request-ID"] == f"trace-{unique}"
    job = api.wait_job(response.json()["job_id"])
    assert job["state"] == "succeeded" and job["request_id"] == f"trace-{unique}"
    run = MlflowClient(settings.mlflow_tracking_uri).get_run(job["result"]["run_id"])
    assert run.data.tags["mlaas.request_id"] == f"trace-{unique}"
    text = worker_metrics()
    assert samples(text, "mlaas_jobs_total", type="train", state="succeeded") == before + 1
    assert samples(text, "mlaas_job_duration_seconds_count", type="train", state="succeeded") >= 1


def test_the_access_log_never_holds_a_query_string(api, stack):
    secret = "querysecret" + "7" * 20
    log = stack.config.path("logs", "api-access.log")
    for path in (f"/health?api_key={secret}", f"/inference?key={secret}&x=1"):
        requests.get(api.base_url + path, timeout=10)
    marker = "/inference"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and log.read_text().count(marker) < 1:
        time.sleep(0.2)  # gunicorn writes its access log as requests end
    text = log.read_text()
    assert "/inference" in text and "/health" in text, "the requests are not in the access log"
    assert secret not in text and "api_key=" not in text
