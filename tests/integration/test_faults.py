"""Fault tests: kill, stop and restart the real servers of a stack of their own, and check what users see.

The module starts its own stack (the shipped broker visibility timeout, short job leases, beat sweeping and
reaping every second or two, housekeeping on a worker of its own), so the session's stack never loses a
server. Each test gives back every server it stopped. Figures printed with ``-s`` (recovery times, 503
latencies) are the ones quoted in docs/RELIABILITY.md.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import localstack
import mlflow
import pandas as pd
import pytest
import requests
from mlflow.tracking import MlflowClient
from prometheus_client.parser import text_string_to_metric_families

from mlaas import jobs
from mlaas.adapters.capture_buffer import CaptureBuffer
from mlaas.context import Context
from mlaas.datasets.frames import write_config, write_frame
from mlaas.monitoring import capture, monitors
from mlaas.monitoring.specs import MonitorSchedule, MonitorSpec
from mlaas.settings import Settings
from mlaas.training import retrain
from mlaas.training.specs import TrainSpec
from mlaas.uris import S3Uri
from tests.integration.conftest import DATA, ROOT, TEST_SERVICE_ENV, Api
from tests.integration.models import CATEGORICAL, NUMERIC, register, slow_pipeline, titanic_pipeline
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TRAIN = pd.read_csv(DATA / "titanic.csv")
TEST = pd.read_csv(DATA / "titanic_test.csv")
FEATURES = NUMERIC + CATEGORICAL
LEASE_SECONDS = 10  # shipped: 30 s, renewed every 5 s, reaped every 10 s
REDIS_OUTAGE_SECONDS = 6
FAULT_ENV = {
    **TEST_SERVICE_ENV,
    "MLAAS_JOB_LEASE_SECONDS": str(LEASE_SECONDS),
    "MLAAS_JOB_HEARTBEAT_SECONDS": "1",
    "MLAAS_JOB_REAPER_SECONDS": "2",
    "MLAAS_MONITOR_SWEEP_SECONDS": "1",
    "MLAAS_WORKER_METRICS_PORT": str(localstack.free_ports(1)[0]),
}
# Product targets, not measurements (the measured figures are printed and quoted in docs/RELIABILITY.md):
# with a dependency away, a request that needs it answers 503 well before a client's 30 s timeout instead
# of hanging, and inference on a cached model keeps answering in seconds, not after the outage.
FAIL_FAST_SECONDS = 20
SERVES_DURING_OUTAGE_SECONDS = 10


@contextlib.contextmanager
def service_env(extra: dict[str, str] | None = None) -> Iterator[None]:
    """The fault stack's service settings (and ``extra``) in os.environ, for the processes started meanwhile."""
    with localstack.environment({**FAULT_ENV, **(extra or {})}):
        yield


class Faults:
    """The fault stack with clients, and ways to take its servers away and give them back."""

    def __init__(self, stack: localstack.Stack) -> None:
        self.stack = stack
        self.api = Api(stack.config.url("api"))
        self.settings = Settings.from_env({**stack.env(), **FAULT_ENV})
        self.ctx = Context(self.settings)
        self.figures: dict[str, float] = {}

    def start(self, component: str, timeout: float = 90, env: dict[str, str] | None = None) -> None:
        """Start a component again; retry while the ports it left behind are still held (TIME_WAIT)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with service_env(env):
                    self.stack.start_component(component)
                return
            except localstack.StackError as exc:
                if "not available" not in str(exc) and "in use" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(2)

    @contextlib.contextmanager
    def down(self, component: str) -> Iterator[None]:
        """Stop a component for the block; start it again (and wait for readiness) whatever happens."""
        self.stack.stop_component(component)
        try:
            yield
        finally:
            self.start(component)
            self.wait_ready()

    def wait_ready(self, timeout: float = 90) -> float:
        started = time.monotonic()
        wait_for(lambda: self.api.get("/ready", timeout=10).status_code == 200, timeout, "/ready after recovery")
        return time.monotonic() - started

    def worker_pid(self) -> int:
        """The pid of the worker that runs jobs (housekeeping has a worker of its own)."""
        return next(pid for name, pid in self.stack.pids().items() if name.startswith("worker-train"))

    def job_process(self, job_id: str) -> int:
        """The pid of the pool process that holds a running job's lease."""
        holder = self.ctx.jobs.holder(job_id)
        assert holder, f"job {job_id} is held by no process"
        return int(holder.rpartition(":")[2])

    def worker_log(self) -> str:
        """The logs of every worker (jobs and housekeeping), one after the other."""
        return "".join(u.log.read_text(errors="replace") for u in self.stack.units(["workers"]) if u.log.exists())

    def upload_titanic(self) -> dict[str, str]:
        uris = {}
        for local, name in (("titanic.csv", "train.csv"), ("titanic_test.csv", "test.csv"),
                            ("data_config.yaml", "data_config.yaml")):
            uri = S3Uri(self.settings.datasets_bucket, f"fixtures/titanic/{name}")
            self.ctx.storage.put_bytes(uri, (DATA / local).read_bytes())
            uris[name.split(".")[0]] = str(uri)
        return uris

    def note(self, name: str, value: float) -> None:
        self.figures[name] = round(value, 3)
        print(f"\nFIGURE {name} = {value:.3f}")


@pytest.fixture(scope="module")
def faults() -> Iterator[Faults]:
    state = ROOT / ".test-stack" / f"faults-{uuid.uuid4().hex[:8]}"
    config = localstack.StackConfig.with_free_ports(state, worker_groups=("train,evaluate,drift", "housekeeping"),
                                                    api_workers=2)
    stack = localstack.Stack(config)
    # the fault stack's clients set process-wide MLflow and temp-dir state: give the session's back afterwards
    tracking_uri, tmp = mlflow.get_tracking_uri(), (os.environ.get("TMPDIR"), tempfile.tempdir)
    try:
        with service_env():
            stack.start()
        yield Faults(stack)
    finally:
        stack.stop()
        mlflow.set_tracking_uri(tracking_uri)
        if tmp[0] is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = tmp[0]
        tempfile.tempdir = tmp[1]


@pytest.fixture(scope="module")
def data(faults: Faults) -> dict[str, str]:
    return faults.upload_titanic()


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def register_slow(settings: Settings, name: str, fit_seconds: float) -> None:
    """A production model whose retraining spends about ``fit_seconds`` in its fit step (SGD, no early stop)."""
    X, y = TRAIN[FEATURES], TRAIN["Survived"]
    register(settings, name, slow_pipeline(X, y, fit_seconds), X, y, fitted=True)


def rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: (None if isinstance(v, float) and pd.isna(v) else v) for k, v in r.items()}
            for r in frame[FEATURES].to_dict(orient="records")]


def model_loads(api: Api, model: str, version: int) -> float:
    """How many API worker processes have loaded a model version (from the merged Prometheus metrics)."""
    text = api.get("/metrics").text
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == "mlaas_model_load_seconds_count"
               and sample.labels.get("model") == model and sample.labels.get("version") == str(version))


def warm(faults: Faults, model: str, version: int | None = None) -> None:
    """Serve a model concurrently until every gunicorn worker has loaded it (by name: and resolved the name)."""
    body = {"model": model, "data": rows(TEST.head(2)), **({"version": version} if version else {})}

    def one(_: int) -> int:
        return requests.post(faults.api.base_url + "/inference", json=body, headers=dict(faults.api.session.headers),
                             timeout=60).status_code

    deadline = time.monotonic() + 120
    with ThreadPoolExecutor(max_workers=4) as pool:
        while model_loads(faults.api, model, version or 1) < faults.stack.config.api_workers:
            assert time.monotonic() < deadline, f"{model} not loaded by every API worker"
            assert set(pool.map(one, range(8))) == {200}


def wait_step(api: Api, job_id: str, step: str, timeout: float = 120) -> dict[str, Any]:
    def at_step() -> dict[str, Any] | None:
        job = api.get(f"/jobs/{job_id}").json()
        assert job["state"] not in ("succeeded", "failed", "cancelled"), job
        return job if job["progress"]["step"] == step else None

    return wait_for(at_step, timeout, f"job {job_id} reaching step {step}", interval=0.05)  # type: ignore[no-any-return]


def train_body(model: str, data: dict[str, str]) -> dict[str, Any]:
    return {"model": model, "dataset": data["train"], "data_config": data["data_config"], "random_state": 3}


def timed(call: Callable[[], requests.Response]) -> tuple[requests.Response, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


# ---- 1. a worker killed in the middle of a training ----------------------------------------------


def attempts_and_reasons(job: dict[str, Any]) -> list[tuple[str, int | None, str | None]]:
    return [(h["state"], h.get("attempt"), h.get("reason")) for h in job["history"]]


def test_a_worker_killed_mid_fit_runs_the_job_again_within_a_minute_which_registers_one_version(faults, data):
    name = unique_name("killed")
    register_slow(faults.settings, name, fit_seconds=6)
    job_id = faults.api.post("/train", json=train_body(name, data)).json()["job_id"]
    wait_step(faults.api, job_id, "fit")
    pid = faults.worker_pid()
    os.killpg(pid, signal.SIGKILL)  # the worker and its pool child, no chance to ack, reject or release
    killed = time.monotonic()
    wait_for(lambda: not localstack.pid_alive(pid), 10, "the killed worker gone")
    faults.start("workers")
    available = time.monotonic()

    def running_again() -> bool:
        job = faults.api.get(f"/jobs/{job_id}").json()
        return job["state"] in ("running", "succeeded") and int(job["attempts"]) >= 2

    wait_for(running_again, 60, "the killed job running again within 60 s of a worker being available")
    faults.note("worker_kill.running_again_after_kill_s", time.monotonic() - killed)
    faults.note("worker_kill.running_again_after_worker_up_s", time.monotonic() - available)
    job = faults.api.wait_job(job_id, timeout=180)
    faults.note("worker_kill.succeeded_after_s", time.monotonic() - killed)
    assert job["state"] == "succeeded", job
    assert job["attempts"] == 2
    assert attempts_and_reasons(job) == [("queued", None, None), ("running", 1, None), ("queued", 1, "worker_lost"),
                                         ("running", 2, None), ("succeeded", 2, None)]

    client = MlflowClient(faults.settings.mlflow_tracking_uri)
    tagged = client.search_model_versions(f"name = '{name}' and tags.job_id = '{job_id}'")
    assert [int(v.version) for v in tagged] == [2]
    assert len(client.search_model_versions(f"name = '{name}'")) == 2
    experiment = client.get_experiment_by_name(f"mlaas/{name}")
    runs = client.search_runs([experiment.experiment_id], f"tags.`mlaas.job_id` = '{job_id}'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"

    # the baseline lives in a folder named after the job: the second attempt rewrote it, nothing is orphaned
    stored = [o.uri.key for o in faults.ctx.storage.list(faults.settings.drift_bucket, f"{name}/")]
    assert {key.split("/")[1] for key in stored} == {job_id}
    baseline = f"s3://{faults.settings.drift_bucket}/{name}/{job_id}/baseline.parquet"
    assert tagged[0].tags["drift-data"] == baseline == job["result"]["drift_data"]
    assert f"{name}/{job_id}/baseline.parquet" in stored


def versions_of(faults: Faults, name: str) -> list[Any]:
    return list(MlflowClient(faults.settings.mlflow_tracking_uri).search_model_versions(f"name = '{name}'"))


def test_a_stale_worker_resumed_after_its_lease_was_taken_over_records_and_registers_nothing(faults, data):
    name = unique_name("stale")
    register_slow(faults.settings, name, fit_seconds=4)
    job_id = faults.api.post("/train", json=train_body(name, data)).json()["job_id"]
    wait_step(faults.api, job_id, "fit")
    child = faults.job_process(job_id)
    os.kill(child, signal.SIGSTOP)  # frozen mid-fit with its heartbeat: a long GC pause, a VM stalled
    stopped = time.monotonic()
    try:
        def taken_over() -> bool:
            return ("queued", 1, "worker_lost") in attempts_and_reasons(faults.api.get(f"/jobs/{job_id}").json())

        wait_for(taken_over, LEASE_SECONDS + 30, "the stopped attempt's lease taken over")
        faults.note("stale.requeued_after_stop_s", time.monotonic() - stopped)
    finally:
        os.kill(child, signal.SIGCONT)
    wait_for(lambda: f"job {job_id}: attempt 1 was taken over" in faults.worker_log(), 60,
             "the resumed attempt stopping at its next write")
    job = faults.api.wait_job(job_id, timeout=180)
    assert job["state"] == "succeeded" and job["attempts"] == 2, job
    assert [e for e in attempts_and_reasons(job) if e[1] == 1] == [("running", 1, None), ("queued", 1, "worker_lost")]
    assert sorted(int(v.version) for v in versions_of(faults, name)) == [1, 2]
    experiment = MlflowClient(faults.settings.mlflow_tracking_uri).get_experiment_by_name(f"mlaas/{name}")
    runs = MlflowClient(faults.settings.mlflow_tracking_uri).search_runs(
        [experiment.experiment_id], f"tags.`mlaas.job_id` = '{job_id}'")
    assert len(runs) == 1


def test_a_job_that_kills_its_worker_three_times_fails_worker_lost_and_the_next_job_runs(faults, data):
    poison, quick = unique_name("poison"), unique_name("after-poison")
    register_slow(faults.settings, poison, fit_seconds=4)
    register(faults.settings, quick, titanic_pipeline(), TRAIN[FEATURES], TRAIN["Survived"])
    job_id = faults.api.post("/train", json=train_body(poison, data)).json()["job_id"]
    wait_step(faults.api, job_id, "fit")
    after = faults.api.post("/train", json=train_body(quick, data)).json()["job_id"]  # waits behind it
    started = time.monotonic()
    for attempt in (1, 2, 3):
        def at_fit(n: int = attempt) -> bool:
            job = faults.api.get(f"/jobs/{job_id}").json()
            return job["state"] == "running" and job["attempts"] == n and job["progress"]["step"] == "fit"

        wait_for(at_fit, 60, f"attempt {attempt} of the poison job fitting")
        os.kill(faults.job_process(job_id), signal.SIGKILL)  # what the out-of-memory killer does
    job = faults.api.wait_job(job_id, timeout=60)
    faults.note("poison.failed_after_s", time.monotonic() - started)
    assert job["state"] == "failed" and job["error"]["code"] == "worker_lost", job
    assert job["attempts"] == 3 and "fit" in job["error"]["message"]
    assert [e for e in attempts_and_reasons(job) if e[2]] == [
        ("queued", 1, "worker_lost"), ("queued", 2, "worker_lost"), ("failed", 3, "worker_lost")]
    assert faults.api.wait_job(after, timeout=120)["state"] == "succeeded"
    assert len(versions_of(faults, poison)) == 1


def test_sigterm_to_a_worker_mid_job_queues_the_job_again_at_once(faults, data):
    name = unique_name("sigterm")
    register_slow(faults.settings, name, fit_seconds=6)
    job_id = faults.api.post("/train", json=train_body(name, data)).json()["job_id"]
    wait_step(faults.api, job_id, "fit")
    pid = faults.worker_pid()
    os.kill(pid, signal.SIGTERM)  # a deploy, docker stop: the worker's main process is told to stop
    stopped = time.monotonic()

    def given_back() -> bool:
        return ("queued", 1, "worker_stopped") in attempts_and_reasons(faults.api.get(f"/jobs/{job_id}").json())

    wait_for(given_back, 10, "the job queued again on SIGTERM")
    faults.note("sigterm.requeued_after_s", time.monotonic() - stopped)
    wait_for(lambda: not localstack.pid_alive(pid), 30, "the stopped worker gone")
    faults.note("sigterm.worker_gone_after_s", time.monotonic() - stopped)
    faults.start("workers")
    job = faults.api.wait_job(job_id, timeout=180)
    faults.note("sigterm.succeeded_after_s", time.monotonic() - stopped)
    assert job["state"] == "succeeded" and job["attempts"] == 2, job
    assert attempts_and_reasons(job)[1:] == [("running", 1, None), ("queued", 1, "worker_stopped"),
                                             ("running", 2, None), ("succeeded", 2, None)]
    assert sorted(int(v.version) for v in versions_of(faults, name)) == [1, 2]


# ---- 2. Redis restarted while jobs wait in its queue ----------------------------------------------


def waiting_for_redis(faults: Faults, job_id: str) -> bool:
    """Whether the worker log shows the job waiting for Redis (jobstore.patiently) rather than failing."""
    return any(f'"job_id": "{job_id}"' in line and "trying again in" in line
               for line in faults.worker_log().splitlines())


def test_redis_restart_keeps_accepted_jobs_and_everything_recovers_without_restarts(faults, data):
    slow, quick = unique_name("redis-slow"), unique_name("redis-quick")
    register_slow(faults.settings, slow, fit_seconds=5)  # its fit ends while Redis is down
    register(faults.settings, quick, titanic_pipeline(), TRAIN[FEATURES], TRAIN["Survived"])
    warm(faults, quick)
    processes = dict(faults.stack.pids())

    running = faults.api.post("/train", json=train_body(slow, data)).json()["job_id"]
    wait_step(faults.api, running, "fit")
    queued = []
    for _ in range(2):
        response = faults.api.post("/train", json=train_body(quick, data))
        assert response.status_code == 202, response.text
        queued.append(response.json()["job_id"])
    assert all(faults.api.get(f"/jobs/{j}").json()["state"] == "queued" for j in queued)

    faults.stack.stop_component("redis")  # SIGTERM: Redis writes its AOF out before it exits
    stopped = time.monotonic()
    try:
        response, seconds = timed(lambda: faults.api.post("/train", json=train_body(quick, data), timeout=30))
        faults.note("redis_down.post_train_503_s", seconds)
        assert response.status_code == 503, response.text
        assert response.json()["code"] == "unavailable" and "redis" in response.json()["message"]
        assert seconds < FAIL_FAST_SECONDS

        latencies = []
        for _ in range(6):
            response, seconds = timed(lambda: requests.post(
                faults.api.base_url + "/inference", json={"model": quick, "data": rows(TEST.head(3))},
                headers=dict(faults.api.session.headers), timeout=30))
            assert response.status_code == 200, response.text
            latencies.append(seconds)
        faults.note("redis_down.inference_max_s", max(latencies))
        assert max(latencies) < SERVES_DURING_OUTAGE_SECONDS

        response, seconds = timed(lambda: faults.api.get("/ready", timeout=30))
        faults.note("redis_down.ready_s", seconds)
        assert response.status_code == 503 and "redis" in response.json()["message"]
        # Redis stays away until the running job, its fit done, waits for Redis to record its progress
        faults.note("redis_down.job_waiting_after_s", wait_for(
            lambda: waiting_for_redis(faults, running) and time.monotonic() - stopped, 60,
            "the running job waiting for Redis"))
        time.sleep(max(0.0, REDIS_OUTAGE_SECONDS - (time.monotonic() - stopped)))  # long enough to reconnect
    finally:
        faults.start("redis")
    faults.note("redis_down.outage_s", time.monotonic() - stopped)
    faults.note("redis_up.ready_after_s", faults.wait_ready())

    # nothing was restarted but Redis itself
    assert {k: v for k, v in faults.stack.pids().items() if k != "redis"} == {
        k: v for k, v in processes.items() if k != "redis"}
    after = faults.api.post("/train", json=train_body(quick, data))
    assert after.status_code == 202, after.text
    restarted = time.monotonic()
    for job_id in [running, *queued, after.json()["job_id"]]:
        job = faults.api.wait_job(job_id, timeout=240)
        assert job["state"] == "succeeded", job
    # the running job carried on where it was: one attempt, one new version of the slow model
    assert faults.api.get(f"/jobs/{running}").json()["attempts"] == 1
    assert len(MlflowClient(faults.settings.mlflow_tracking_uri).search_model_versions(f"name = '{slow}'")) == 2
    faults.note("redis_up.all_jobs_done_after_s", time.monotonic() - restarted)


@contextlib.contextmanager
def worker_settings(faults: Faults, env: dict[str, str]) -> Iterator[None]:
    """Run the block with the worker restarted under extra settings; give the usual worker back after."""
    faults.stack.stop_component("workers")
    faults.start("workers", env=env)
    try:
        yield
    finally:
        faults.stack.stop_component("workers")
        faults.start("workers")


def test_redis_away_longer_than_a_job_waits_leaves_the_job_for_redelivery_and_it_runs_again(faults, data):
    name = unique_name("redis-long")
    register_slow(faults.settings, name, fit_seconds=5)
    with worker_settings(faults, {"MLAAS_JOB_REDIS_WAIT_SECONDS": "1"}):
        job_id = faults.api.post("/train", json=train_body(name, data)).json()["job_id"]
        wait_step(faults.api, job_id, "fit")
        faults.stack.stop_component("redis")
        stopped = time.monotonic()
        try:
            wait_for(lambda: any(f"job {job_id}:" in line and "left for redelivery" in line
                                 for line in faults.worker_log().splitlines()), 60, "the job giving up on Redis")
        finally:
            faults.start("redis")
        faults.note("redis_long.outage_s", time.monotonic() - stopped)
        faults.wait_ready()
        job = faults.api.wait_job(job_id, timeout=LEASE_SECONDS + 120)
        faults.note("redis_long.succeeded_after_s", time.monotonic() - stopped)
    assert job["state"] == "succeeded", job
    assert job["attempts"] == 2  # not lost: requeued once its lease expired, run again from the start
    versions = MlflowClient(faults.settings.mlflow_tracking_uri).search_model_versions(f"name = '{name}'")
    assert sorted(int(v.version) for v in versions) == [1, 2]


def test_a_hung_redis_answers_503_within_seconds_and_inference_keeps_answering(faults, data):
    name = unique_name("redis-hung")
    register(faults.settings, name, titanic_pipeline(), TRAIN[FEATURES], TRAIN["Survived"])
    warm(faults, name)
    pid = faults.stack.pids()["redis"]
    key = {"Idempotency-Key": f"hung-{name}"}
    for _ in range(10):  # every API worker has a live job-store connection: the submission's first try goes there
        faults.api.get("/jobs", params={"limit": 1})
    os.kill(pid, signal.SIGSTOP)  # accepts connections, answers nothing: what a partition looks like
    try:
        response, seconds = timed(lambda: faults.api.post("/train", json=train_body(name, data), headers=key,
                                                          timeout=60))
        faults.note("redis_hung.post_train_503_s", seconds)
        assert response.status_code == 503 and "redis" in response.json()["message"], response.text
        assert seconds < FAIL_FAST_SECONDS
        latencies = []
        for _ in range(6):
            response, seconds = timed(lambda: faults.api.post("/inference", json={"model": name,
                                                                                  "data": rows(TEST.head(3))}))
            assert response.status_code == 200, response.text
            latencies.append(seconds)
        faults.note("redis_hung.inference_max_s", max(latencies))
        response, seconds = timed(lambda: faults.api.get("/ready", timeout=30))
        faults.note("redis_hung.ready_s", seconds)
        assert response.status_code == 503 and "redis" in response.json()["message"]
    finally:
        os.kill(pid, signal.SIGCONT)
    faults.wait_ready()
    # Redis now runs the writes it held; the 503'd submission must not come back as a job that never runs
    queued = faults.api.get("/jobs", params={"state": "queued", "limit": 200}).json()["jobs"]
    assert [j for j in queued if j["params"]["model"] == name] == []
    # the client retries with its Idempotency-Key, as it should after a 503: a new job, and it runs
    retried = faults.api.post("/train", json=train_body(name, data), headers=key)
    assert retried.status_code == 202, retried.text
    assert faults.api.wait_job(retried.json()["job_id"], timeout=120)["state"] == "succeeded"
    after = faults.api.post("/train", json=train_body(name, data))
    assert after.status_code == 202, after.text
    assert faults.api.wait_job(after.json()["job_id"])["state"] == "succeeded"


# ---- 3. MLflow down ------------------------------------------------------------------------------


def test_mlflow_down_cached_models_serve_new_ones_503_and_jobs_fail_unavailable(faults, data):
    cached, fresh = unique_name("mlflow-cached"), unique_name("mlflow-fresh")
    for name in (cached, fresh):
        register(faults.settings, name, titanic_pipeline(), TRAIN[FEATURES], TRAIN["Survived"])
    warm(faults, cached)  # the production version, resolved by name
    warm(faults, cached, version=1)
    pinned = retrain.prepare(TrainSpec(**train_body(cached, data)), ctx=faults.ctx)  # accepted before the outage

    with faults.down("mlflow"):
        latencies = []
        for version in (None, 1) * 4:
            response, seconds = timed(lambda v=version: requests.post(
                faults.api.base_url + "/inference",
                json={"model": cached, "data": rows(TEST.head(3)), **({"version": v} if v else {})},
                headers=dict(faults.api.session.headers), timeout=60))
            assert response.status_code == 200, response.text
            latencies.append(seconds)
        faults.note("mlflow_down.cached_inference_max_s", max(latencies))

        response, seconds = timed(lambda: faults.api.post("/inference", json={"model": fresh,
                                                                              "data": rows(TEST.head(1))}))
        faults.note("mlflow_down.new_model_503_s", seconds)
        assert response.status_code == 503, response.text
        assert response.json()["details"]["dependency"] == "mlflow"
        response = faults.api.post("/train", json=train_body(cached, data))
        assert response.status_code == 503 and "mlflow" in response.json()["message"]

        job, _ = jobs.submit(pinned, ctx=faults.ctx)
        started = time.monotonic()
        failed = faults.api.wait_job(job["job_id"], timeout=180)
        faults.note("mlflow_down.job_failed_after_s", time.monotonic() - started)
    assert failed["state"] == "failed", failed
    assert failed["attempts"] == 4  # the first run and three retries with backoff
    assert failed["error"]["code"] == "unavailable"
    assert failed["error"]["details"] == {"dependency": "mlflow"}
    assert "Traceback" not in failed["error"]["message"]
    assert faults.api.post("/inference", json={"model": fresh, "data": rows(TEST.head(1))}).status_code == 200


# ---- 4. S3 down for a while ----------------------------------------------------------------------


def test_s3_down_jobs_fail_unavailable_and_capture_flushes_every_row_once_after(faults, data):
    name = unique_name("s3-capture")
    register(faults.settings, name, titanic_pipeline(), TRAIN[FEATURES], TRAIN["Survived"])
    warm(faults, name, version=1)
    buffer = CaptureBuffer(faults.settings)
    key = buffer.stream_key(name, 1)
    folder = capture.folder(faults.settings.drift_bucket, name, 1)

    answered, request_ids = 0, set()
    stopped = time.monotonic()
    with faults.down("s3"):
        response = faults.api.get("/ready")
        assert response.status_code == 503 and response.json()["details"]["dependency"] == "s3"
        for start in range(0, 60, 6):
            response = faults.api.post("/inference", json={"model": name, "version": 1,
                                                           "data": rows(TEST.iloc[start:start + 6])})
            assert response.status_code == 200, response.text
            answered += len(response.json()["predictions"])
            request_ids.add(response.headers["X-Request-ID"])
        accepted = faults.api.post("/train", json=train_body(name, data))
        assert accepted.status_code == 202, accepted.text
        failed = faults.api.wait_job(accepted.json()["job_id"], timeout=120)
        assert failed["state"] == "failed" and failed["error"]["code"] == "unavailable", failed
        assert failed["error"]["details"] == {"dependency": "s3"} and "s3" in failed["error"]["message"]
        assert buffer.redis.xlen(key) > 0  # the rows wait in Redis while the store is away
    restored = time.monotonic()
    faults.note("s3_down.outage_s", restored - stopped)

    def all_flushed() -> bool:
        return buffer.redis.xlen(key) == 0 and not buffer.claims(key)

    wait_for(all_flushed, 60, "the buffered rows flushed after S3 came back")
    faults.note("s3_up.capture_flushed_after_s", time.monotonic() - restored)
    after = captured(faults, folder)
    assert len(after[after["_request_id"].isin(request_ids)]) == answered == 60
    assert not after.duplicated(["_entry", "_id"]).any()


def captured(faults: Faults, folder: S3Uri) -> pd.DataFrame:
    frames = [pd.read_parquet(io.BytesIO(faults.ctx.storage.get_bytes(o.uri)))
              for o in faults.ctx.storage.list(folder.bucket, folder.key + "/")]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["_entry", "_id", "_request_id"])


def test_an_api_stopped_gracefully_writes_the_captures_it_still_holds(faults):
    name = unique_name("held")
    register(faults.settings, name, titanic_pipeline(), TRAIN[FEATURES], TRAIN["Survived"])
    buffer = CaptureBuffer(faults.settings)
    key = buffer.stream_key(name, 1)
    faults.stack.stop_component("api")
    try:
        faults.start("api", env={"MLAAS_CAPTURE_BATCH_SECONDS": "600"})  # held far longer than the test
        sent = set()
        for start in range(0, 12, 4):
            response = faults.api.post("/inference", json={"model": name, "version": 1,
                                                           "data": rows(TEST.iloc[start:start + 4])})
            assert response.status_code == 200, response.text
            sent.add(response.headers["X-Request-ID"])
        assert buffer.redis.xlen(key) == 0  # held in the API's processes
        faults.stack.stop_component("api")  # SIGTERM: gunicorn stops its workers gracefully
        folder = capture.folder(faults.settings.drift_bucket, name, 1)

        def written() -> int:  # in the stream, or already flushed by the worker
            frames = [capture.entries_frame(buffer.head(key, 100)), captured(faults, folder)]
            return sum(int(f["_request_id"].isin(sent).sum()) for f in frames if len(f))

        wait_for(lambda: written() == 12, 30, "the held captures written")
    finally:
        faults.stack.stop_component("api")
        faults.start("api")
        faults.wait_ready()


# ---- 5. two beats, and a restarted beat ----------------------------------------------------------


def claimed_dues(faults: Faults, monitor_id: str) -> list[datetime]:
    prefix = f"{faults.settings.redis_prefix}:monitor-claim:{monitor_id}:"
    keys = faults.ctx.monitors.redis.keys(prefix + "*")
    return sorted(datetime.fromisoformat(k[len(prefix):]) for k in keys)


def at_least(count: int, dues: list[datetime]) -> list[datetime] | None:
    return dues if len(dues) >= count else None


def checks_run(faults: Faults, monitor_id: str) -> int:
    return sum(1 for line in faults.worker_log().splitlines()
               if "mlaas.monitor_check[" in line and " succeeded in " in line and f"'{monitor_id}'" in line)


@contextlib.contextmanager
def second_beat(faults: Faults) -> Iterator[subprocess.Popen[bytes]]:
    """A second ``celery beat`` with its own schedule file, as an operator might start by mistake."""
    state = faults.stack.config.path("beat-2")
    state.mkdir(exist_ok=True)
    env = {**os.environ, **faults.stack.env(), **FAULT_ENV, "PYTHONPATH": str(ROOT)}
    with (state / "beat.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker.celery_app:app", "beat", "--schedule",
             str(state / "schedule"), "--pidfile", str(state / "beat.pid"), "--loglevel", "INFO"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        localstack.terminate(proc.pid, 10)
        proc.wait(timeout=10)


def test_two_beats_or_a_restarted_beat_never_run_a_monitor_twice_for_one_due_time(faults):
    name, every = unique_name("beats"), 3
    # a drift baseline, as training through mlaas records one: a check without one fails and, by design, is not
    # retried on schedule until something changes, which would stop the due times this test counts
    baseline = S3Uri(faults.settings.drift_bucket, f"{name}/baseline.parquet")
    write_frame(faults.ctx.storage, baseline, TRAIN[FEATURES + ["Survived"]])
    write_config(faults.ctx.storage, S3Uri(faults.settings.drift_bucket, f"{name}/data_config.yaml"),
                 {"target_column": "Survived", "numerical_features": NUMERIC, "categorical_features": CATEGORICAL})
    register(faults.settings, name, titanic_pipeline(), TRAIN[FEATURES], TRAIN["Survived"],
             tags={"drift-data": str(baseline)})
    monitor_id = f"m-{name}"
    with second_beat(faults):
        # an interval shorter than the API allows (10 s), to keep the test short
        monitors.create(MonitorSpec.model_construct(id=monitor_id, model=name, min_rows=1,
                                                    schedule=MonitorSchedule.model_construct(every_seconds=every)),
                        ctx=faults.ctx)
        dues = wait_for(lambda: at_least(3, claimed_dues(faults, monitor_id)), 60, "three due times claimed")
        gaps = [(b - a).total_seconds() for a, b in zip(dues, dues[1:], strict=False)]
        assert all(gap >= every for gap in gaps), dues  # one claim per due time, never two close together
        wait_for(lambda: checks_run(faults, monitor_id) >= len(claimed_dues(faults, monitor_id)), 30,
                 "the claimed checks run")
        assert checks_run(faults, monitor_id) == len(claimed_dues(faults, monitor_id))

    # beat away for several intervals, then back: the missed due times are one run, not a burst of them
    faults.stack.stop_component("beat")
    wait_for(lambda: len(claimed_dues(faults, monitor_id)) == checks_run(faults, monitor_id), 30, "checks drained")
    claimed_before = len(claimed_dues(faults, monitor_id))
    time.sleep(4 * every)  # the outage itself: due times pass while no beat runs
    faults.start("beat")
    wait_for(lambda: len(claimed_dues(faults, monitor_id)) > claimed_before, 30, "a check after beat's restart")
    time.sleep(every - 1)  # a window in which a burst of catch-up runs would show (an absence has no condition)
    dues = claimed_dues(faults, monitor_id)
    assert len(dues) - claimed_before <= 2, dues  # the missed due times as one run, then perhaps the next on time
    assert all((b - a).total_seconds() >= every for a, b in zip(dues, dues[1:], strict=False)), dues
    wait_for(lambda: checks_run(faults, monitor_id) == len(claimed_dues(faults, monitor_id)), 30,
             "every claimed check ran once")
    faults.ctx.monitors.delete(monitor_id)
