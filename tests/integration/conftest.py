"""Session fixtures: the real local stack (Redis, SeaweedFS S3, MLflow, a Celery worker, gunicorn) on free ports."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import localstack  # noqa: E402

from mlaas.auth import generate_key  # noqa: E402
from mlaas.context import Context  # noqa: E402
from mlaas.settings import Settings  # noqa: E402
from mlaas.uris import S3Uri  # noqa: E402

DATA = ROOT / "examples" / "data" / "titanic"
ADMIN_KEY, ADMIN_ENTRY = generate_key("test-admin")
PREDICT_KEY, PREDICT_ENTRY = generate_key("test-scorer", ("predict",))
LIMITED_KEY, LIMITED_ENTRY = generate_key("test-limited", ("predict",))
JOBS_KEY, JOBS_ENTRY = generate_key("test-jobs", ("predict", "jobs"))  # two keys that own things apart
OTHER_JOBS_KEY, OTHER_JOBS_ENTRY = generate_key("test-jobs-other", ("predict", "jobs"))
PROMOTE_KEY, PROMOTE_ENTRY = generate_key("test-promoter", ("jobs", "promote"))
WEBHOOK_PORT = localstack.free_ports(1)[0]  # the one port test webhook receivers listen on (allowlisted)
# Settings the worker and API of the test stack run with (the shipped visibility timeout: jobs of lost workers
# come back through their leases). Drift checks of captured traffic start only when a test asks (a high
# minimum), flushes run every 2 s.
TEST_SERVICE_ENV = {
    "MLAAS_RESOLVE_TTL_SECONDS": "1",
    "MLAAS_LOG_LEVEL": "INFO",
    "MLAAS_DRIFT_MIN_ROWS": "1000000",
    "MLAAS_CAPTURE_FLUSH_SECONDS": "2",
    "MLAAS_MAX_DATASET_BYTES": str(4 * 1024 * 1024),
    "MLAAS_MONITOR_SWEEP_SECONDS": "2",
    "MLAAS_FEEDBACK_JOIN_SECONDS": "2",
    "MLAAS_WEBHOOK_ALLOWLIST": f"127.0.0.1:{WEBHOOK_PORT}",
    "MLAAS_API_KEYS": ",".join([ADMIN_ENTRY, PREDICT_ENTRY, LIMITED_ENTRY + ":5", JOBS_ENTRY, OTHER_JOBS_ENTRY,
                                PROMOTE_ENTRY]),
    "MLAAS_WORKER_METRICS_PORT": str(localstack.free_ports(1)[0]),
}


class Api:
    """A small HTTP client for the API under test."""

    def __init__(self, base_url: str, key: str | None = ADMIN_KEY) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        if key:
            self.session.headers["Authorization"] = f"Bearer {key}"

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 60)
        return self.session.request(method, self.base_url + path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)

    def wait_job(self, job_id: str, timeout: float = 240, states: tuple[str, ...] = ("succeeded", "failed", "cancelled")
                 ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.get(f"/jobs/{job_id}").json()
            if job["state"] in states:
                return job
            time.sleep(0.3)
        raise AssertionError(f"job {job_id} still {job['state']} after {timeout} s: {job}")


def run_stack(env: dict[str, str] | None = None, **overrides: Any) -> Iterator[localstack.Stack]:
    """A whole stack on free ports, one worker serving every queue, with the test settings (plus ``env``)."""
    state = ROOT / ".test-stack" / uuid.uuid4().hex[:8]
    config = localstack.StackConfig.with_free_ports(state, **{"worker_groups": ("train,evaluate,drift,housekeeping",),
                                                              "api_workers": 2, **overrides})
    running = localstack.Stack(config)
    with localstack.environment({**TEST_SERVICE_ENV, **(env or {})}):
        try:
            running.start()
            yield running
        finally:
            running.stop()


@pytest.fixture(scope="session")
def stack() -> Iterator[localstack.Stack]:
    yield from run_stack()


@pytest.fixture(scope="session")
def stack_env(stack: localstack.Stack) -> dict[str, str]:
    return stack.env()


@pytest.fixture(scope="session")
def settings(stack_env: dict[str, str]) -> Settings:
    return Settings.from_env({**stack_env, **TEST_SERVICE_ENV})


@pytest.fixture(scope="session")
def ctx(settings: Settings) -> Context:
    return Context(settings)


@pytest.fixture(scope="session")
def api(stack: localstack.Stack) -> Api:
    return Api(stack.config.url("api"))


@pytest.fixture
def unique(request: pytest.FixtureRequest) -> str:
    """A short name unique to this test: for model names and key prefixes."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:40].strip("-")
    return f"{base}-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="session")
def titanic(ctx: Context) -> dict[str, str]:
    """The titanic data set, its test split and data config, uploaded once."""
    uris = {}
    for local, name in (("titanic.csv", "train.csv"), ("titanic_test.csv", "test.csv"),
                        ("data_config.yaml", "data_config.yaml")):
        uri = S3Uri(ctx.settings.datasets_bucket, f"fixtures/titanic/{name}")
        ctx.storage.put_bytes(uri, (DATA / local).read_bytes())
        uris[name.split(".")[0]] = str(uri)
    return uris


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the fault tests first: they start a stack of their own, and on 2 cores it should not compete
    with the shared session stack (which starts with the first test that needs it)."""
    items.sort(key=lambda item: 0 if item.nodeid.startswith("tests/integration/test_faults.py") else 1)
