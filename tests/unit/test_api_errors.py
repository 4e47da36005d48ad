"""The API's one error model, over fake adapters (no servers)."""

import pytest

from mlaas.api.app import create_app
from mlaas.context import Context
from mlaas.errors import NotFound, Unavailable
from mlaas.settings import Settings
from tests.fakes import MemoryBlobStore


class FakeRegistry:
    def __init__(self):
        self.down = False

    def ping(self):
        if self.down:
            raise Unavailable("mlflow")

    def resolve(self, name, ref=None):
        if self.down:
            raise Unavailable("mlflow")
        raise NotFound(f"model {name!r} does not exist")


class FakeJobs:
    def ping(self):
        raise Unavailable("redis")

    def get(self, job_id):
        raise NotFound(f"job {job_id!r} does not exist")


@pytest.fixture
def parts():
    return {"storage": MemoryBlobStore(), "registry": FakeRegistry(), "jobs": FakeJobs()}


@pytest.fixture
def client(parts):
    settings = Settings(max_body_bytes=2048)
    return create_app(settings, Context(settings, parts)).test_client()


def assert_error(response, status, code):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["code"] == code and body["status"] == status and body["message"]
    assert "Traceback" not in response.get_data(as_text=True)
    return body


def test_health_is_open(client):
    assert client.get("/health").get_json() == {"status": "ok"}
    assert client.post("/health").status_code == 200


def test_ready_names_what_is_down(client, parts):
    body = assert_error(client.get("/ready"), 503, "unavailable")
    assert "redis" in body["message"] and "mlflow" not in body["message"]
    parts["registry"].down = True
    parts["storage"].down = True
    body = assert_error(client.get("/ready"), 503, "unavailable")
    assert body["details"]["dependency"] == "mlflow,redis,s3"


def test_flask_errors_use_the_same_body(client):
    assert_error(client.get("/no/such/route"), 404, "not_found")
    response = client.put("/health")
    assert_error(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]
    assert_error(client.post("/train", data="x" * 5000, content_type="application/json"), 413, "too_large")


def test_validation_names_field_and_problem(client):
    body = assert_error(client.post("/train", json={"model": "m", "drift_fraction": 2}), 400, "invalid_input")
    assert body["message"].startswith("drift_fraction:")
    body = assert_error(client.post("/train", json={"model": "m", "surprise": 1}), 400, "invalid_input")
    assert "surprise" in body["message"]
    body = assert_error(client.post("/train", json={"version": 1}), 400, "invalid_input")
    assert "model" in body["message"]
    body = assert_error(client.post("/train", data="{oops", content_type="application/json"), 400, "invalid_input")
    assert "not valid JSON" in body["message"]
    body = assert_error(client.post("/train", json={"model": "m", "dataset": "file:///etc/passwd"}), 400,
                        "invalid_input")
    assert body["message"].startswith("dataset:")


def test_unknown_model_is_404_and_dependency_down_is_503(client, parts):
    body = assert_error(client.post("/train", json={"model": "ghost"}), 404, "not_found")
    assert "ghost" in body["message"]
    parts["registry"].down = True
    body = assert_error(client.post("/train", json={"model": "ghost"}), 503, "unavailable")
    assert body["details"]["dependency"] == "mlflow"


def test_unknown_job_is_404(client):
    assert_error(client.get("/jobs/0123abcd"), 404, "not_found")


def test_request_id_round_trips(client):
    assert client.get("/health", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    generated = client.get("/health", headers={"X-Request-ID": "bad id with spaces"}).headers["X-Request-ID"]
    assert generated and " " not in generated
