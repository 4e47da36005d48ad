"""scripts/localstack against real Redis, SeaweedFS and MLflow processes (and a worker and API) on free ports."""

from __future__ import annotations

import io
import os
import shlex
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import urllib3
from minio import Minio
from minio.error import S3Error

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "scripts"))
import localstack  # noqa: E402

pytestmark = pytest.mark.integration

INFRA = ("redis", "s3", "mlflow")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[localstack.Stack]:
    """Redis, S3 and MLflow started once for the module, in a state dir of their own."""
    config = localstack.StackConfig.with_free_ports(tmp_path_factory.mktemp("stack"), components=INFRA,
                                                    worker_groups=("train,evaluate,drift",), api_workers=1)
    stack = localstack.Stack(config)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


def _s3(stack: localstack.Stack, *, secret_key: str | None = None) -> Minio:
    """A minio client built from the stack's client variables, failing fast instead of retrying."""
    env = stack.env()
    http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=2.0, read=10.0), retries=False)
    return Minio(env["MLAAS_S3_ENDPOINT"].removeprefix("http://"), access_key=env["MLAAS_S3_ACCESS_KEY"],
                 secret_key=secret_key or env["MLAAS_S3_SECRET_KEY"], region=env["MLAAS_S3_REGION"],
                 secure=False, http_client=http)


def _put(client: Minio, bucket: str, key: str, data: bytes) -> None:
    client.put_object(bucket, key, io.BytesIO(data), len(data))


def _get(client: Minio, bucket: str, key: str) -> bytes:
    resp = client.get_object(bucket, key)
    try:
        return bytes(resp.read())
    finally:
        resp.close()
        resp.release_conn()


def _alive(pid: int) -> bool:
    """Whether a pid belongs to a running (non-zombie) process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _group_members(pgids: set[int]) -> set[int]:
    """Every running process whose process group is one of ``pgids``."""
    members = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
            except OSError:
                continue
            if int(fields[2]) in pgids:
                members.add(int(entry.name))
    return members


def test_everything_starts_and_the_env_file_lists_the_client_variables(stack: localstack.Stack) -> None:
    assert stack.status() == {"redis": True, "s3": True, "mlflow": True}
    lines = stack.config.path("stack.env").read_text().splitlines()
    parsed = dict(shlex.split(line)[0].split("=", 1) for line in lines)
    assert parsed == stack.env()
    assert parsed["MLAAS_S3_ACCESS_KEY"] == "mlaas-local"


def test_starting_again_leaves_running_processes_alone(stack: localstack.Stack) -> None:
    before = stack.pids()
    reports = stack.start()
    assert {r.name: r.state for r in reports} == {"redis": "running", "s3": "running", "mlflow": "running"}
    assert stack.pids() == before


def test_redis_answers_ping_and_keeps_data(stack: localstack.Stack) -> None:
    import redis

    client = redis.Redis.from_url(stack.env()["MLAAS_REDIS_URL"], socket_timeout=3)
    assert client.ping()
    key = f"localstack-test:{uuid.uuid4().hex}"
    client.set(key, "v", ex=60)
    assert client.get(key) == b"v"
    assert client.config_get("appendonly") == {"appendonly": "yes"}


def test_s3_round_trips_objects_and_rejects_a_wrong_secret(stack: localstack.Stack) -> None:
    client = _s3(stack)
    assert {b.name for b in client.list_buckets()} >= {"datasets", "drift", "mlflow"}
    key = f"localstack-test/{uuid.uuid4().hex}.bin"
    _put(client, "datasets", key, b"\x00payload\xff")
    assert _get(client, "datasets", key) == b"\x00payload\xff"

    with pytest.raises(S3Error) as info:
        _put(_s3(stack, secret_key="not-the-secret"), "datasets", f"{key}.denied", b"x")
    assert info.value.code == "SignatureDoesNotMatch"
    with pytest.raises(S3Error):
        _get(client, "datasets", f"{key}.denied")


def test_mlflow_logs_a_run_whose_artifact_lands_in_s3(
    stack: localstack.Stack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", stack.env()["MLAAS_MLFLOW_TRACKING_URI"])
    client = MlflowClient(tracking_uri=stack.env()["MLAAS_MLFLOW_TRACKING_URI"])
    experiment_id = client.create_experiment(f"localstack-{uuid.uuid4().hex}")
    run_id = client.create_run(experiment_id).info.run_id
    client.log_param(run_id, "alpha", "0.5")
    client.log_metric(run_id, "rmse", 0.25)
    artifact = tmp_path / "notes.txt"
    artifact.write_text("artifact body")
    client.log_artifact(run_id, str(artifact))
    client.set_terminated(run_id)

    run = client.get_run(run_id)
    assert run.data.params == {"alpha": "0.5"}
    assert run.data.metrics == {"rmse": 0.25}
    assert [f.path for f in client.list_artifacts(run_id)] == ["notes.txt"]
    s3 = _s3(stack)
    keys = [o.object_name for o in s3.list_objects("mlflow", prefix=f"{experiment_id}/", recursive=True)]
    assert keys == [f"{experiment_id}/{run_id}/artifacts/notes.txt"]
    assert _get(s3, "mlflow", keys[0]) == b"artifact body"


def test_s3_restart_keeps_objects(stack: localstack.Stack) -> None:
    client = _s3(stack)
    key = f"localstack-test/{uuid.uuid4().hex}.txt"
    _put(client, "drift", key, b"written before the restart")

    stack.stop_component("s3")
    assert stack.status() == {"redis": True, "s3": False, "mlflow": True}
    with pytest.raises((urllib3.exceptions.HTTPError, OSError)):
        _put(client, "drift", f"{key}.while-down", b"x")

    stack.start_component("s3")
    assert stack.status()["s3"]
    assert _get(client, "drift", key) == b"written before the restart"
    _put(client, "drift", f"{key}.after", b"y")
    assert _get(client, "drift", f"{key}.after") == b"y"


def _eventually(check: Callable[[], Any], what: str, timeout: float = 120) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after a generous deadline."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except (requests.RequestException, OSError):
            value = None
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not after {timeout} s"
        time.sleep(0.2)


def _worker_pongs(stack: localstack.Stack) -> bool:
    """Whether the stack's Celery worker answers a broadcast ping."""
    from celery import Celery

    app = Celery(broker=stack.env()["MLAAS_REDIS_URL"])
    try:
        replies = app.control.ping(timeout=2.0)
    finally:
        app.close()
    return any(name.startswith("train-evaluate-drift@") for reply in replies for name in reply)


def test_a_killed_worker_or_api_is_started_again_by_the_stack(stack: localstack.Stack) -> None:
    mark = f"MLAAS_TEST_MARK={uuid.uuid4().hex}".encode()  # a per-start setting the restarts must keep
    with localstack.environment(dict([mark.decode().split("=", 1)])):
        stack.start(["workers", "api"])
    health = f"{stack.config.url('api')}/health"
    try:
        assert requests.get(health, timeout=10).status_code == 200
        assert _eventually(lambda: _worker_pongs(stack), "the worker answering a ping")
        before = stack.pids()
        watchdog = int(stack.config.path("run", "watchdog.pid").read_text())
        assert localstack.pid_alive(watchdog)

        os.kill(before["api"], signal.SIGKILL)  # the master only: its workers are left holding the port
        os.killpg(before["worker-train-evaluate-drift"], signal.SIGKILL)  # the worker and its pool child

        def restarted(name: str) -> int | None:
            pid = stack.pids().get(name)
            return pid if pid and pid != before[name] else None

        api = _eventually(lambda: restarted("api"), "a new API master")
        assert _eventually(lambda: requests.get(health, timeout=10).status_code == 200, "the API answering")
        assert localstack.children(api)  # the new master's workers serve, not the dead one's
        assert not localstack.pid_alive(before["api"])
        worker = _eventually(lambda: restarted("worker-train-evaluate-drift"), "a new worker")
        assert _eventually(lambda: _worker_pongs(stack), "the restarted worker answering a ping")
        for pid in (api, worker):
            assert mark in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        log = stack.config.path("logs", "watchdog.log").read_text()
        assert "api had died; restarted" in log and "worker-train-evaluate-drift had died; restarted" in log
    finally:
        reports = stack.stop(["workers", "api"])
    assert {r.name for r in reports if r.state == "stopped"} == {"api", "worker-train-evaluate-drift"}
    # stopped by the stack: the watchdog has gone with them, so nothing brings them back
    assert not localstack.pid_alive(watchdog)
    assert not stack.config.path("run", "watchdog.pid").exists()
    assert set(stack.pids()) == set(INFRA)


def test_stop_leaves_no_process_behind(stack: localstack.Stack) -> None:
    run_dir = stack.config.path("run")
    pids = {path.stem: int(path.read_text()) for path in run_dir.glob("*.pid")}
    assert set(pids) == set(INFRA)
    members = _group_members(set(pids.values()))
    assert members > set(pids.values())  # MLflow's uvicorn child at least

    reports = stack.stop()
    assert {r.name for r in reports if r.state == "stopped"} == set(INFRA)
    assert [pid for pid in members if _alive(pid)] == []
    assert list(run_dir.glob("*.pid")) == []
    assert list(run_dir.glob("*.sock")) == []
    assert stack.status() == {"redis": False, "s3": False, "mlflow": False}
