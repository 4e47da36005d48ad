#!/usr/bin/env python3
"""Load test of POST /inference: wrk from a second process on loopback against gunicorn, while a training runs.

Starts a stack of its own on free ports (gunicorn with the project's default of 2 workers, one Celery
worker), registers the titanic model, warms it in both API workers, submits a retraining, then runs
``wrk`` (Debian package ``wrk``; bench/load_inference.lua) for DURATION seconds at CONCURRENCY connections.

It passes when every answer was 2xx, no API worker's RSS grew by more than RSS_BOUND_MB between the end
of the warm-up and the end of the run, and the training finished ``succeeded``. The rate limit is on
(checked in Redis on every request) but set to 10 million requests per minute per key, far above what
the run can send. Usage: python bench/load_inference.py [--duration 60] [--concurrency 16]
Results: printed, and written to bench/results/load_inference.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

import localstack  # noqa: E402

from mlaas.auth import generate_key  # noqa: E402

DATA = ROOT / "examples" / "data" / "titanic"
RESULTS = ROOT / "bench" / "results"
RATE_LIMIT_PER_MINUTE = 10_000_000
RSS_BOUND_MB = 50.0
WARMUP_SECONDS = 10.0
ROWS_PER_REQUEST = 5


class Sampler(threading.Thread):
    """RSS of each API worker once a second."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.samples: list[tuple[float, dict[int, float]]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        while not self.stop.is_set():
            self.samples.append((time.monotonic() - started, {p: localstack.rss_mb(p) for p in self.pids}))
            self.stop.wait(1.0)

    def at(self, second: float) -> dict[int, float]:
        return min(self.samples, key=lambda s: abs(s[0] - second))[1]


def upload_and_register(stack: localstack.Stack, env: dict[str, str], key: str) -> dict[str, str]:
    """Upload titanic through the API and register the notebook model, as a user does."""
    api, headers = stack.config.url("api"), {"Authorization": f"Bearer {key}"}
    uris = {}
    for local, name, kind in (("titanic.csv", "train.csv", "text/csv"), ("titanic_test.csv", "test.csv", "text/csv"),
                              ("data_config.yaml", "data_config.yaml", "application/yaml")):
        response = requests.put(f"{api}/datasets/load/{name}", data=(DATA / local).read_bytes(),
                                headers={**headers, "Content-Type": kind}, params={"overwrite": "true"}, timeout=60)
        response.raise_for_status()
        uris[name] = response.json()["uri"]
    subprocess.run([sys.executable, str(ROOT / "examples" / "train_notebook_model.py"), uris["train.csv"],
                    uris["data_config.yaml"]], env=env, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return uris


def request_body() -> bytes:
    import pandas as pd

    test = pd.read_csv(DATA / "titanic_test.csv").head(ROWS_PER_REQUEST).drop(columns=["Survived"])
    rows = [{k: (None if pd.isna(v) else v) for k, v in r.items()} for r in test.to_dict(orient="records")]
    return json.dumps({"model": "titanic", "data": rows}).encode()


def run(duration: int, concurrency: int, threads: int) -> dict[str, Any]:
    wrk = shutil.which("wrk")
    if not wrk:
        sys.exit("wrk not found: sudo apt-get install -y wrk (or make system-deps)")
    key, entry = generate_key("load")
    service_env = {"MLAAS_API_KEYS": f"{entry}:{RATE_LIMIT_PER_MINUTE}",
                   "MLAAS_RATE_LIMIT_PER_MINUTE": str(RATE_LIMIT_PER_MINUTE), "MLAAS_LOG_LEVEL": "WARNING"}
    with localstack.environment(service_env):
        return measure(wrk, key, duration, concurrency, threads)


def measure(wrk: str, key: str, duration: int, concurrency: int, threads: int) -> dict[str, Any]:
    """Start a stack, warm it, run wrk while a training runs, and report throughput, latency and memory."""
    state = Path(tempfile.mkdtemp(prefix="mlaas-load-"))
    stack = localstack.Stack(localstack.StackConfig.with_free_ports(state, worker_groups=("train,evaluate,drift",)))
    try:
        stack.start()
        env = {**os.environ, **stack.env(), "MLAAS_API_KEY": key}
        uris = upload_and_register(stack, env, key)
        api, headers = stack.config.url("api"), {"Authorization": f"Bearer {key}"}
        body = request_body()
        for _ in range(40):  # fresh connections: both workers load the model and resolve 'prod'
            requests.post(f"{api}/inference", data=body, timeout=60,
                          headers={**headers, "Content-Type": "application/json"}).raise_for_status()
        train = requests.post(f"{api}/train", headers=headers, timeout=60, json={
            "model": "titanic", "dataset": uris["train.csv"], "data_config": uris["data_config.yaml"],
            "test_dataset": uris["test.csv"], "random_state": 1})
        train.raise_for_status()
        job_id = train.json()["job_id"]

        workers = localstack.children(stack.pids()["api"])
        sampler = Sampler(workers)
        body_file = state / "body.json"
        body_file.write_bytes(body)
        sampler.start()
        started, load_started_at = time.monotonic(), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        out = subprocess.run(
            [wrk, "-t", str(threads), "-c", str(concurrency), "-d", f"{duration}s", "--timeout", "10s", "--latency",
             "-s", str(ROOT / "bench" / "load_inference.lua"), f"{api}/inference"],
            env={**os.environ, "LOAD_BODY": str(body_file), "LOAD_AUTH": f"Bearer {key}"},
            capture_output=True, text=True, check=True)
        elapsed = time.monotonic() - started
        sampler.stop.set()
        sampler.join()
        line = next(x for x in out.stdout.splitlines() if x.startswith("LOAD_JSON "))
        load = json.loads(line.removeprefix("LOAD_JSON "))

        deadline = time.monotonic() + 600
        while (job := requests.get(f"{api}/jobs/{job_id}", headers=headers, timeout=30).json())["state"] in (
                "queued", "running") and time.monotonic() < deadline:
            time.sleep(1)
        after_warmup, end = sampler.at(WARMUP_SECONDS), sampler.samples[-1][1]
        growth = {str(p): round(end[p] - after_warmup[p], 1) for p in workers}
        non_2xx = sum(n for status, n in load["statuses"].items() if not status.startswith("2"))
        errors = load["connect_errors"] + load["read_errors"] + load["write_errors"] + load["timeouts"]
        return {
            "duration_s": round(elapsed, 1), "concurrency": concurrency, "wrk_threads": threads,
            "api_workers": len(workers), "rows_per_request": ROWS_PER_REQUEST,
            "rate_limit_per_minute": RATE_LIMIT_PER_MINUTE,
            "requests": load["requests"], "requests_per_s": round(load["requests"] / (load["duration_us"] / 1e6), 1),
            "statuses": load["statuses"], "non_2xx": non_2xx, "socket_errors": errors,
            "latency_ms": {"p50": load["p50_ms"], "p90": load["p90_ms"], "p99": load["p99_ms"], "max": load["max_ms"]},
            "rss_mb_after_warmup": {str(p): round(after_warmup[p], 1) for p in workers},
            "rss_mb_end": {str(p): round(end[p], 1) for p in workers}, "rss_growth_mb": growth,
            "rss_bound_mb": RSS_BOUND_MB,
            "load_started_at": load_started_at,
            "training": {"state": job["state"], "started_at": job.get("started_at"),
                         "finished_at": job.get("finished_at"), "version": (job.get("result") or {}).get("version")},
        }
    finally:
        stack.stop()
        shutil.rmtree(state, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=60)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    result = run(args.duration, args.concurrency, args.threads)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "load_inference.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    failures = []
    if result["non_2xx"] or result["socket_errors"]:
        failures.append(f"{result['non_2xx']} non-2xx answers and {result['socket_errors']} socket errors")
    if max(result["rss_growth_mb"].values()) > RSS_BOUND_MB:
        failures.append(f"an API worker grew by more than {RSS_BOUND_MB} MB after the warm-up")
    if result["training"]["state"] != "succeeded":
        failures.append(f"the training running meanwhile ended {result['training']['state']}")
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
