"""Hostile and malformed input on the real stack: foreign URIs, SSRF webhooks, bad configs, payload bombs,
models from outside the registry, and secrets that must never leak."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import localstack
import mlflow
import pandas as pd
import pytest
import requests
from mlflow.tracking import MlflowClient

from mlaas.uris import S3Uri, parse_uri
from tests.integration.conftest import ADMIN_KEY, LIMITED_KEY, PREDICT_KEY, ROOT
from tests.integration.models import CATEGORICAL, NUMERIC, register, titanic_pipeline

pytestmark = pytest.mark.integration
TRAIN = pd.read_csv("examples/data/titanic/titanic.csv")
FEATURES = NUMERIC + CATEGORICAL
BOMB_MEMORY_BOUND_MB = 300  # what one request of at most MLAAS_MAX_BODY_BYTES (16 MB) may cost a worker
ROW = {"Pclass": 3, "Sex": "male", "Age": 22, "SibSp": 1, "Parch": 0, "Fare": 7.25, "Embarked": "S"}


@pytest.fixture(scope="module")
def model(settings):
    name = f"hostile-{os.getpid()}"
    register(settings, name, titanic_pipeline(), TRAIN[FEATURES], TRAIN["Survived"])
    return name


def problem(response: requests.Response, status: int, fragment: str = "") -> dict:
    """Assert a JSON problem answer with this status whose message holds ``fragment``."""
    assert response.status_code == status, response.text[:500]
    assert response.headers["Content-Type"].startswith("application/problem+json"), response.headers
    body = response.json()
    assert fragment in body["message"], body
    return body


# ---- URIs: only s3:// in the configured buckets, checked before any data is read ------------------

FOREIGN_URIS = [
    ("file:///etc/passwd", "s3://"),
    ("http://169.254.169.254/latest/meta-data/x.csv", "s3://"),
    ("https://example.com/train.csv", "s3://"),
    ("/etc/passwd.csv", "s3://"),
    ("s3://datasets/../mlflow/planted/train.csv", "'..'"),
    ("s3://datasets/a/./b.csv", "'.'"),
    ("s3://mlflow/planted/train.csv", "not one mlaas may use"),
    ("s3://someone-elses-bucket/planted/train.csv", "not one mlaas may use"),
    ("s3://datasets/" + "k" * 1030 + ".csv", "1024"),
    ("s3://datasets/" + "k" * 1200 + ".csv", "1100"),
    ("s3://datasets/a\\b.csv", "backslash"),
]


@pytest.fixture(scope="module")
def planted(ctx, titanic) -> None:
    """A valid data set and data config in buckets mlaas may not use: a server that read them would succeed."""
    ctx.storage.ensure_buckets(("someone-elses-bucket",))
    train = ctx.storage.get_bytes(parse_uri(titanic["train"]))
    config = ctx.storage.get_bytes(parse_uri(titanic["data_config"]))
    for bucket in ("mlflow", "someone-elses-bucket"):
        ctx.storage.put_bytes(S3Uri(bucket, "planted/train.csv"), train)
        ctx.storage.put_bytes(S3Uri(bucket, "planted/train.yaml"), config)
        assert ctx.storage.exists(S3Uri(bucket, "planted/train.csv"))


@pytest.mark.parametrize("uri, fragment", FOREIGN_URIS, ids=[u[:40] for u, _ in FOREIGN_URIS])
def test_foreign_dataset_and_config_uris_are_refused_before_any_io(api, model, titanic, planted, uri, fragment):
    before = api.get("/jobs", params={"limit": 1}).json()["total"]
    for body in (
        {"model": model, "dataset": uri, "data_config": titanic["data_config"]},
        {"model": model, "dataset": titanic["train"], "data_config": uri.replace(".csv", ".yaml")},
        {"model": model, "dataset": titanic["train"], "data_config": titanic["data_config"], "test_dataset": uri},
    ):
        problem(api.post("/train", json=body), 400, fragment)
    problem(api.post("/evaluate", json={"model": model, "dataset": uri, "data_config": titanic["data_config"]}),
            400, fragment)
    problem(api.post("/data-drift", json={"reference": uri, "current": titanic["test"],
                                          "data_config": titanic["data_config"]}), 400)
    assert api.get("/jobs", params={"limit": 1}).json()["total"] == before  # nothing was queued


def test_dataset_keys_and_prefixes_cannot_climb_out(api):
    for key in ("a/%2E%2E/%2E%2E/x.csv", "a//b.csv", "k" * 1030 + ".csv"):
        response = api.request("PUT", f"/datasets/{key}", data=b"a,b\n1,2\n", headers={"Content-Type": "text/csv"})
        assert response.status_code in (400, 404), (key, response.text)
        assert response.headers["Content-Type"].startswith("application/problem+json")
    problem(api.get("/datasets", params={"prefix": "../"}), 400, "'..'")


def test_a_data_config_that_is_not_yaml_or_names_missing_columns_is_invalid_input(api, ctx, settings, model,
                                                                                titanic, unique):
    problem(api.request("PUT", f"/datasets/{unique}/bad.yaml", data=b"target_column: [unclosed\n",
                        headers={"Content-Type": "application/yaml"}), 400, "not valid YAML")
    problem(api.request("PUT", f"/datasets/{unique}/bad.json", data=b'{"target_column": ',
                        headers={"Content-Type": "application/json"}), 400, "not valid JSON")
    configs = {
        "broken.yaml": (b"target_column: [unclosed\n", "not valid YAML"),
        "broken.json": (b'{"target_column": "Survived",', "not valid JSON"),
        "list.yaml": (b"- a\n- b\n", "mapping"),
        "ghosts.yaml": (b"target_column: Survived\nnumerical_features: [Age, Ghost]\ncategorical_features: [Sex]\n",
                        "missing column(s) Ghost"),
        "no-target.yaml": (b"target_column: Nobody\nnumerical_features: [Age]\n", "missing column(s) Nobody"),
    }
    for name, (content, fragment) in configs.items():
        uri = S3Uri(settings.datasets_bucket, f"{unique}/{name}")
        ctx.storage.put_bytes(uri, content)
        response = api.post("/train", json={"model": model, "dataset": titanic["train"], "data_config": str(uri)})
        assert response.status_code == 202, response.text
        job = api.wait_job(response.json()["job_id"])
        assert job["state"] == "failed" and job["error"]["code"] == "invalid_input", (name, job)
        assert fragment in job["error"]["message"], (name, job["error"])


# ---- webhooks: the allowlist, and no loopback, private or metadata address around it --------------

SSRF_URLS = [
    ("http://169.254.169.254/latest/meta-data/", "ALLOWLIST"),
    ("http://[fd00:ec2::254]/latest/", "ALLOWLIST"),
    ("http://metadata.google.internal/computeMetadata/v1/", "ALLOWLIST"),
    ("http://10.0.0.7:8080/hook", "ALLOWLIST"),
    ("http://192.168.1.1/hook", "ALLOWLIST"),
    ("http://172.16.0.1/hook", "ALLOWLIST"),
    ("http://localhost/hook", "ALLOWLIST"),
    ("http://127.0.0.2/hook", "ALLOWLIST"),
    ("http://[::1]/hook", "ALLOWLIST"),
    ("http://0.0.0.0/hook", "ALLOWLIST"),
    ("http://2130706433/hook", "ALLOWLIST"),  # 127.0.0.1 as one decimal number
    ("http://127.0.0.1@evil.example/hook", "credentials"),
    ("file:///etc/passwd", "http"),
    ("gopher://127.0.0.1:6379/_FLUSHALL", "http"),
    ("ftp://127.0.0.1/x", "http"),
]


@pytest.mark.parametrize("url, fragment", SSRF_URLS, ids=[u for u, _ in SSRF_URLS])
def test_webhook_urls_outside_the_allowlist_are_refused(api, model, url, fragment):
    body = {"model": model, "on_drift": {"webhook": {"url": url, "secret": "s" * 32}}}
    problem(api.post("/monitors", json=body), 400, fragment)


# ---- payload bombs -------------------------------------------------------------------------------


@contextlib.contextmanager
def rss_growth(pids: list[int]) -> Iterator[dict[str, float]]:
    """Sample the workers' RSS every few milliseconds during the block; yields {'mb': highest growth}."""
    before = {pid: localstack.rss_mb(pid) for pid in pids}
    out = {"mb": 0.0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for pid in pids:
                out["mb"] = max(out["mb"], localstack.rss_mb(pid) - before[pid])
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield out
    finally:
        done.set()
        sampler.join()


BOMBS = {
    "deep_array": b'{"model": "M", "data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "deep_object": b'{"model": "M", "data": [' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_000 + b"]}",
    "million_rows": b'{"model": "M", "data": [' + b",".join([b"{}"] * 1_000_000) + b"]}",
    "million_columns": b'{"model": "M", "data": [{' + b",".join(b'"c%d": 1' % i for i in range(1_000_000)) + b"}]}",
    "huge_string": b'{"model": "M", "data": [' + json.dumps({**ROW, "Sex": "x" * 15_000_000}).encode() + b"]}",
    "over_the_limit": b'{"model": "M", "data": [{"Sex": "' + b"x" * 17_000_000 + b'"}]}',
    "nan": b'{"model": "M", "data": [{"Age": NaN, "Fare": 1}]}',
    "infinity": b'{"model": "M", "data": [{"Age": -Infinity, "Fare": 1}]}',
    "truncated": b'{"model": "M", "data": [{"Age": 1',
    "not_utf8": b'{"model": "M", "data": [{"Sex": "\xff\xfe"}]}',
}


@pytest.mark.parametrize("name", list(BOMBS))
def test_payload_bombs_are_4xx_within_bounded_memory(api, stack, model, name):
    body = BOMBS[name].replace(b'"M"', json.dumps(model).encode(), 1)
    with rss_growth(localstack.children(stack.pids()["api"])) as growth:
        started = time.monotonic()
        response = api.post("/inference", data=body, headers={"Content-Type": "application/json"}, timeout=120)
        seconds = time.monotonic() - started
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    assert response.headers["Content-Type"].startswith("application/problem+json")
    print(f"\nFIGURE bomb.{name}: {len(body)} bytes -> {response.status_code} in {seconds:.2f} s, "
          f"RSS growth {growth['mb']:.0f} MB")
    assert growth["mb"] < BOMB_MEMORY_BOUND_MB, f"{name} grew a worker by {growth['mb']:.0f} MB"
    assert api.post("/inference", json={"model": model, "data": [ROW]}).status_code == 200  # still serving


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                                          "application/xml", ""])
def test_wrong_content_types_are_4xx(api, model, content_type):
    body = json.dumps({"model": model, "data": [ROW]})
    for path in ("/inference", "/train", "/monitors"):
        response = api.post(path, data=body, headers={"Content-Type": content_type} if content_type else {})
        assert response.status_code in (400, 415), (path, content_type, response.text)
        assert response.headers["Content-Type"].startswith("application/problem+json")


def test_header_and_request_line_abuse_gets_json_errors(api):
    response = requests.get(api.base_url + "/jobs/" + "j" * 9000, headers=dict(api.session.headers), timeout=30)
    problem(response, 400, "Request Line")
    response = api.get("/jobs/" + "j" * 100)
    problem(response, 400)


# ---- models: only from the configured registry ---------------------------------------------------

@pytest.fixture(scope="module")
def outside_references(settings, model, tmp_path_factory) -> list[str]:
    """Every other way to name the registered model's files, each of which loads: a registry name or nothing."""
    client = MlflowClient(settings.mlflow_tracking_uri)
    version = client.get_model_version(model, "1")
    artifacts = client.get_logged_model(version.source.removeprefix("models:/")).artifact_location
    path = artifacts.split(":", 1)[1].lstrip("/")  # mlflow-artifacts:/<path> or s3://<bucket>/<path>
    if artifacts.startswith("s3://"):
        path = path.partition("/")[2]
    local = mlflow.artifacts.download_artifacts(f"models:/{model}/1", dst_path=str(tmp_path_factory.mktemp("m")),
                                                tracking_uri=settings.mlflow_tracking_uri)
    references = [
        f"models:/{model}/1", f"models:/{model}/latest", version.source, f"runs:/{version.run_id}/model",
        f"s3://mlflow/{path}", f"mlflow-artifacts:/{path}", f"file://{local}", local,
        f"{settings.mlflow_tracking_uri}/api/2.0/mlflow-artifacts/artifacts/{path}",
    ]
    for reference in references[:4]:  # each of them names a model MLflow loads
        assert mlflow.models.get_model_info(reference).flavors, reference
    assert (Path(local) / "MLmodel").is_file()
    assert requests.get(references[-1] + "/MLmodel", timeout=30).status_code == 200
    return references


def test_models_load_only_from_the_registry(api, model, outside_references):
    def refused(response: requests.Response, field: str) -> None:
        assert problem(response, 400)["message"].startswith(f"{field}:"), (reference, response.text)

    for reference in outside_references:
        refused(api.post("/inference", json={"model": reference, "data": [ROW]}), "model")
        refused(api.post("/inference", params={"model": reference}, json={"data": [ROW]}), "model")
        refused(api.post("/inference", json={"model": model, "version": reference, "data": [ROW]}), "version")
        refused(api.post("/train", json={"model": reference}), "model")
        refused(api.post("/evaluate", json={"model": reference}), "model")
    assert api.post("/inference", json={"model": model, "data": [ROW]}).status_code == 200  # the name itself serves


# ---- secrets -------------------------------------------------------------------------------------


def test_no_secret_reaches_responses_job_results_logs_or_mlflow_after_a_demo_run(api, stack, settings):
    secrets = {"S3 secret key": settings.s3_secret_key.reveal(), "S3 access key": settings.s3_access_key,
               "admin API key": ADMIN_KEY,
               "predict API key": PREDICT_KEY, "limited API key": LIMITED_KEY}
    for name in ("MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "AWS_SECRET_ACCESS_KEY"):
        if os.environ.get(name):
            secrets[name] = os.environ[name]
    env = {**os.environ, "MLAAS_STACK_DIR": str(stack.config.state_dir), "MLAAS_API_KEY": ADMIN_KEY,
           **stack.env(), "PYTHONPATH": str(ROOT)}
    demo = subprocess.run([sys.executable, str(ROOT / "examples" / "demo.py")], env=env, capture_output=True,
                          text=True, timeout=900, cwd=ROOT)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "Demo finished." in demo.stdout

    texts = {"demo output (API answers)": demo.stdout + demo.stderr}
    jobs = api.get("/jobs", params={"limit": 500}).json()
    texts["GET /jobs (params, results, errors)"] = json.dumps(jobs)
    texts["GET /models"] = api.get("/models").text
    texts["GET /monitors"] = api.get("/monitors").text
    texts["GET /metrics"] = api.get("/metrics").text
    texts["GET /ready"] = api.get("/ready").text
    client = MlflowClient(settings.mlflow_tracking_uri)
    runs = []
    for experiment in client.search_experiments():
        runs += client.search_runs([experiment.experiment_id], max_results=5000)
    texts["MLflow params and tags"] = json.dumps([(r.data.params, r.data.tags) for r in runs])
    texts["MLflow model versions"] = json.dumps([(v.tags, v.source, v.description)
                                                 for v in client.search_model_versions(max_results=10_000)])
    for path in sorted(stack.config.path("logs").rglob("*")):
        if path.is_file():
            texts[f"log {path.relative_to(stack.config.state_dir)}"] = path.read_text(errors="replace")
    assert len(runs) >= 3 and any(r.info.run_name.startswith("train_") for r in runs)
    leaks = [f"{secret} in {where}" for where, text in texts.items() for secret, value in secrets.items()
             if value and value in text]
    assert not leaks, leaks
