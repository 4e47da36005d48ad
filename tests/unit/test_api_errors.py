"""The API's one error model, over fake adapters (no servers)."""

import json
import time

import pytest

from mlaas.api.app import create_app
from mlaas.auth import generate_key
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

    def get(self, job_id, owner=None):
        raise NotFound(f"job {job_id!r} does not exist")


@pytest.fixture
def parts():
    return {"storage": MemoryBlobStore(), "registry": FakeRegistry(), "jobs": FakeJobs()}


ADMIN_KEY, ADMIN_ENTRY = generate_key("admin")
PREDICT_KEY, PREDICT_ENTRY = generate_key("scorer", ("predict",))


@pytest.fixture
def app(parts):
    settings = Settings(max_body_bytes=2048, api_keys=(ADMIN_ENTRY, PREDICT_ENTRY))
    return create_app(settings, Context(settings, parts))


@pytest.fixture
def client(app):
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {ADMIN_KEY}"
    return client


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
    deadline = time.monotonic() + 30  # /ready answers from a result at most 2 s old
    while (body := client.get("/ready").get_json())["details"]["dependency"] != "mlflow,redis,s3":
        assert time.monotonic() < deadline, body
        time.sleep(0.2)
    assert_error(client.get("/ready"), 503, "unavailable")


def test_ready_answers_many_callers_from_one_recent_check(client, parts):
    calls = []
    parts["registry"].ping = lambda: calls.append(1)
    for _ in range(50):
        client.get("/ready")
    assert len(calls) == 1, "each /ready called the dependencies"


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


def test_what_the_document_allows_is_what_validation_takes(client):
    """Requests schemathesis found the document allowing and validation refusing."""
    # JSON Schema's "integer" takes 3.0: so does a version reference (it reaches the registry as 3).
    assert_error(client.post("/train", json={"model": "ghost", "version": 3.0}), 404, "not_found")
    body = assert_error(client.post("/train", json={"model": "m", "version": 3.5}), 400, "invalid_input")
    assert body["message"].startswith("version:")
    # A dataset URI where a model's data may stand instead is an s3:// URI in the document too.
    schema = client.get("/openapi.json").json["components"]["schemas"]["DriftSpec"]["properties"]["reference"]
    assert '"pattern": "^s3://datasets/' in json.dumps(schema)  # one alternative per allowed bucket
    body = assert_error(client.post("/data-drift", json={"reference": "", "current": ""}), 400, "invalid_input")
    assert body["message"].startswith(("reference", "current"))


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


def test_keys_and_scopes(app):
    anonymous = app.test_client()
    assert anonymous.get("/health").status_code == 200
    assert anonymous.get("/openapi.json").status_code == 200
    assert anonymous.get("/docs/swagger").status_code == 200
    response = anonymous.get("/jobs/abc")
    body = assert_error(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "API key is required" in body["message"]
    assert_error(anonymous.get("/jobs/abc", headers={"Authorization": "Bearer mlaas_wrong"}), 401, "unauthorized")
    assert_error(anonymous.get("/jobs/abc", headers={"X-API-Key": PREDICT_KEY}), 403, "forbidden")
    assert_error(anonymous.get("/jobs/abc", headers={"X-API-Key": ADMIN_KEY}), 404, "not_found")
    body = assert_error(anonymous.post("/inference", json={"model": "ghost", "data": [{"a": 1}]},
                                       headers={"Authorization": f"Bearer {PREDICT_KEY}"}), 404, "not_found")
    assert_error(anonymous.post("/models/m/promote", json={"version": 1},
                                headers={"Authorization": f"Bearer {PREDICT_KEY}"}), 403, "forbidden")


def test_auth_can_be_switched_off(parts):
    settings = Settings(auth_enabled=False)
    client = create_app(settings, Context(settings, parts)).test_client()
    assert_error(client.get("/jobs/abc"), 404, "not_found")


def test_every_route_is_in_the_openapi_document(app):
    spec = app.test_client().get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.1")
    documented = {path for path in spec["paths"]}
    undocumented = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in ("static", "openapi_json", "docs_page") or rule.endpoint.split(".")[0] in (
                "openapi", "swagger", "ui"):  # ui: the console's HTML pages, not API operations
            continue
        path = str(rule).replace("<int:", "{").replace("<path:", "{").replace("<", "{").replace(">", "}")
        if path not in documented:
            undocumented.append(path)
    assert undocumented == []
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert spec["paths"]["/train"]["post"]["security"] == [{"bearer": []}, {"apiKey": []}]
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            assert operation.get("summary") or operation.get("description"), (method, path)
            assert "200" in operation["responses"] or "201" in operation["responses"] or \
                "202" in operation["responses"] or "204" in operation["responses"], (method, path)


@pytest.mark.parametrize(
    "value, may",
    [
        ("m" * 20, False),  # short text, long body
        ("m" * 10_001, True),
        ('"' * 10_001, True),  # escaped quotes inside a long string
        ("é" * 5_001, True),  # 10 002 bytes of UTF-8: looked at, then measured in characters
        ("\\" * 10_001, True),  # escaped backslashes
        ("x\\" * 3_000 + '"' * 1_001 + "\n" * 3_000, True),
    ],
)
def test_the_long_text_prefilter_never_misses_a_long_string(value, may):
    import json

    from mlaas.inference.payload import may_hold_long_text

    raw = json.dumps({"data": [{"a": value, "b": 1.5}] * 600}, ensure_ascii=False).encode()
    assert may_hold_long_text(raw) is may
    assert may_hold_long_text(json.dumps({"data": [{"a": value}]}).encode()) is (len(value) > 5_000)


def test_the_long_text_prefilter_on_random_strings_around_the_limit():
    import json
    import random

    from mlaas.inference.payload import MAX_TEXT_CHARS, may_hold_long_text

    rng = random.Random(7)
    alphabet = ['"', "\\", "a", "é", "\n", "\u2028", "/", " "]
    for _ in range(200):
        lengths = [rng.choice([5, 9_990, 10_000, 10_001, 10_050]) for _ in range(3)]
        values = ["".join(rng.choice(alphabet) for _ in range(n)) for n in lengths]
        for ensure_ascii in (True, False):
            raw = json.dumps({"data": [{"a": v, "b": i} for i, v in enumerate(values)]},
                             ensure_ascii=ensure_ascii).encode()
            if max(lengths) > MAX_TEXT_CHARS:
                assert may_hold_long_text(raw), lengths


def test_the_long_text_prefilter_walks_bodies_sent_in_utf16_or_utf32():
    import json

    from mlaas.inference.payload import may_hold_long_text

    text = json.dumps({"data": [{"a": '"' * 10_001}]})
    for encoding in ("utf-16", "utf-16-le", "utf-32"):
        assert may_hold_long_text(text.encode(encoding))
    assert may_hold_long_text(b"\xef\xbb\xbf" + text.encode())  # UTF-8 with a byte order mark

