#!/usr/bin/env python3
"""Production's latency with a shadow rollout running, against the same API without one, in one run.

Starts a stack of its own on free ports (gunicorn with 2 workers, one Celery worker for every queue, run as
docker-compose.yml runs the housekeeping worker that scores rollouts: MLAAS_WORKER_NICE=19, each process of the
stack in a session of its own),
registers two titanic versions (v1 production, v2 the candidate), then alternates rounds of ``wrk``
(CONNECTIONS connections, SECONDS each, 5 rows a request) without a rollout and with v2 in shadow.
A round without a rollout starts only once the worker has scored every queued shadow request, so the
peer measures no left-over shadow work; a shadow round includes all of it (the API queueing the rows
and the worker scoring them on the same 2 cores). Target: production p99 with the shadow
<= 1.1x without. Usage: python bench/bench_rollout.py [--seconds 20] [--rounds 3] [--connections 2 8]
Also printed: each process's CPU seconds per 1000 answered requests. Results: printed, and written to
bench/results/bench_rollout.json. Needs wrk (make system-deps).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Any

import common
import requests
from common import ROOT, fmt, median, print_table

TARGET = 1.1
ROWS_PER_REQUEST = 5
# MLAAS_WORKER_NICE and MLAAS_WORKER_SCHED_IDLE as docker-compose.yml sets them for the worker that scores
# rollouts (the API ignores them); --no-sched-idle runs that worker at nice 19 only.
SERVICE_ENV = {"MLAAS_RESOLVE_TTL_SECONDS": "1", "MLAAS_LOG_LEVEL": "WARNING", "MLAAS_WORKER_NICE": "19",
               "MLAAS_WORKER_SCHED_IDLE": "true"}


def register_versions(stack: Any, name: str) -> None:
    import pandas as pd

    from mlaas.settings import Settings
    from tests.integration.models import CATEGORICAL, NUMERIC, register, titanic_pipeline

    settings = Settings.from_env({**stack.env(), **SERVICE_ENV})
    train = pd.read_csv(ROOT / "examples" / "data" / "titanic" / "titanic.csv")
    X, y = train[NUMERIC + CATEGORICAL], train["Survived"]
    register(settings, name, titanic_pipeline(C=0.5), X, y)
    register(settings, name, titanic_pipeline(C=0.01), X, y, stage=None)


def request_body(name: str) -> bytes:
    import pandas as pd

    test = pd.read_csv(ROOT / "examples" / "data" / "titanic" / "titanic_test.csv").head(ROWS_PER_REQUEST)
    rows = [{k: (None if pd.isna(v) else v) for k, v in r.items() if k != "Survived"}
            for r in test.to_dict(orient="records")]
    return json.dumps({"model": name, "data": rows}).encode()


class Client:
    def __init__(self, url: str, key: str, name: str) -> None:
        self.url, self.name = url, name
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {key}"

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.session.request(method, f"{self.url}{path}", timeout=60, **kwargs)
        if response.status_code >= 400:
            raise SystemExit(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response.json()

    def versions_answering(self, body: bytes, n: int = 20) -> set[int]:
        headers = {"Content-Type": "application/json"}
        return {self.call("POST", "/inference", data=body, headers=headers)["version"] for _ in range(n)}

    def drained(self, timeout: float = 300) -> dict[str, Any]:
        """The rollout's status once nothing waits to be scored."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.call("GET", f"/models/{self.name}/rollout")
            if status["queued"] == 0 or time.monotonic() > deadline:
                return dict(status)
            time.sleep(0.5)


def run_wrk(url: str, body_file: str, key: str, connections: int, seconds: int) -> dict[str, Any]:
    wrk = shutil.which("wrk")
    if not wrk:
        raise SystemExit("wrk not found: apt-get install -y wrk (or make system-deps)")
    out = subprocess.run(
        [wrk, "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "--timeout", "10s", "--latency",
         "-s", str(ROOT / "bench" / "load_inference.lua"), f"{url}/inference"],
        env={**os.environ, "LOAD_BODY": body_file, "LOAD_AUTH": f"Bearer {key}"},
        capture_output=True, text=True, check=True)
    line = next(x for x in out.stdout.splitlines() if x.startswith("LOAD_JSON "))
    load = json.loads(line.removeprefix("LOAD_JSON "))
    non_2xx = sum(n for status, n in load["statuses"].items() if not status.startswith("2"))
    return {"requests_per_s": load["requests"] / (load["duration_us"] / 1e6), "p50_ms": load["p50_ms"],
            "p99_ms": load["p99_ms"], "max_ms": load["max_ms"], "requests": load["requests"], "non_2xx": non_2xx}


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds used so far by each process of the stack (with its children: gunicorn's and Celery's workers)."""
    return {name: common.tree_cpu_seconds(pid) for name, pid in pids.items()}


def measure(client: Client, key: str, body_file: str, body: bytes, connections: list[int], seconds: int,
            rounds: int, pids: dict[str, int]) -> dict[str, Any]:
    name = client.name
    # Warm both API workers and the worker's copy of the candidate, then start from no rollout.
    client.call("POST", f"/models/{name}/rollout", json={"version": 2, "mode": "shadow"})
    assert client.versions_answering(body, 60) == {1}
    time.sleep(2)  # the held rows reach Redis within MLAAS_ROLLOUT_BATCH_SECONDS (1 s)
    client.drained()
    client.call("DELETE", f"/models/{name}/rollout")
    results: dict[str, Any] = {}
    for c in connections:
        runs: dict[str, list[dict[str, Any]]] = {"off": [], "shadow": []}
        for _ in range(rounds):
            for mode in ("off", "shadow"):
                if mode == "shadow":
                    client.call("POST", f"/models/{name}/rollout", json={"version": 2, "mode": "shadow"})
                time.sleep(1.5)  # every API worker's cached rollout state has expired (TTL 1 s)
                common.wait_quiet(limit=3.0, max_wait=30)
                before = cpu_seconds(pids)
                run = run_wrk(client.url, body_file, key, c, seconds)
                during = cpu_seconds(pids)
                if mode == "shadow":
                    time.sleep(2)  # the last held rows reach Redis within MLAAS_ROLLOUT_BATCH_SECONDS (1 s)
                    status = client.drained()
                    run["compared"] = status["comparison"]["requests"]
                    run["dropped"] = status["dropped"]
                    run["agreement"] = status["comparison"]["agreement"]
                    client.call("DELETE", f"/models/{name}/rollout")
                after = cpu_seconds(pids)
                # CPU seconds per 1000 answered requests: during the load, and with what was left to score after it
                run["cpu_during"] = {n: 1000 * (during[n] - before[n]) / run["requests"] for n in pids}
                run["cpu_total"] = {n: 1000 * (after[n] - before[n]) / run["requests"] for n in pids}
                runs[mode].append(run)
        results[str(c)] = runs
    return results


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for c, runs in results.items():
        off, shadow = (median([r["p99_ms"] for r in runs[m]]) for m in ("off", "shadow"))
        # Each shadow round against the round without a rollout just before it: what the machine's other load
        # does to both sides of a pair is closer than across the whole run.
        pairs = [s["p99_ms"] / o["p99_ms"] for o, s in zip(runs["off"], runs["shadow"], strict=True)]
        out[c] = {"p99_ms_off": off, "p99_ms_shadow": shadow, "ratio": shadow / off, "pair_ratios": pairs,
                  "p50_ms_off": median([r["p50_ms"] for r in runs["off"]]),
                  "p50_ms_shadow": median([r["p50_ms"] for r in runs["shadow"]]),
                  "rps_off": median([r["requests_per_s"] for r in runs["off"]]),
                  "rps_shadow": median([r["requests_per_s"] for r in runs["shadow"]]),
                  "shadow_requests": sum(r["requests"] for r in runs["shadow"]),
                  "compared": sum(r["compared"] for r in runs["shadow"]),
                  "dropped": sum(r["dropped"] for r in runs["shadow"]),
                  "non_2xx": sum(r["non_2xx"] for m in runs for r in runs[m])}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, nargs="+", default=[2, 8])
    parser.add_argument("--sched-idle", action=argparse.BooleanOptionalAction, default=True,
                        help="the worker under SCHED_IDLE as well as nice 19, as docker-compose.yml runs it")
    args = parser.parse_args()
    os.environ.update(SERVICE_ENV, MLAAS_WORKER_SCHED_IDLE=str(args.sched_idle).lower())
    stack, key = common.start_stack("rollout", ("redis", "s3", "mlflow", "workers", "api"),
                                    worker_groups=("train,evaluate,drift,housekeeping",), api_workers=2)
    try:
        name = "bench-rollout"
        register_versions(stack, name)
        client = Client(stack.config.url("api"), key, name)
        body = request_body(name)
        body_file = stack.config.path("body.json")
        body_file.write_bytes(body)
        pids = stack.pids()
        results = measure(client, key, str(body_file), body, args.connections, args.seconds, args.rounds, pids)
    finally:
        stack.stop()
    summary = summarise(results)
    names = sorted(pids)
    rows = [[c, fmt(s["p99_ms_off"]), fmt(s["p99_ms_shadow"]), fmt(s["ratio"], 3),
             " ".join(fmt(r, 2) for r in s["pair_ratios"]), fmt(s["p50_ms_off"]),
             fmt(s["p50_ms_shadow"]), fmt(s["rps_off"], 0), fmt(s["rps_shadow"], 0),
             f"{s['compared']}/{s['shadow_requests']}", s["dropped"], common.verdict(s["ratio"] <= TARGET)]
            for c, s in summary.items()]
    print_table(f"POST /inference, {ROWS_PER_REQUEST} rows, median of {args.rounds} rounds of {args.seconds} s: "
                "production without a rollout (peer) and with v2 in shadow",
                ["connections", "p99 off ms", "p99 shadow ms", "ratio", "per round pair", "p50 off", "p50 shadow",
                 "req/s off",
                 "req/s shadow", "compared/answered", "dropped", f"p99 ratio <= {TARGET}"], rows)
    cpu_rows = [[c, mode, when, *(fmt(median([r[when][n] for r in results[c][mode]]), 3) for n in names)]
                for c in results for mode in ("off", "shadow") for when in ("cpu_during", "cpu_total")]
    print_table("CPU seconds per 1000 answered requests, by process (median of rounds): during the load, and "
                "total until the shadow's queue was scored", ["connections", "mode", "counted", *names], cpu_rows)
    common.save("bench_rollout", {"machine": common.machine(), "args": vars(args), "runs": results,
                                  "summary": summary})
    failed = any(s["non_2xx"] for s in summary.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
