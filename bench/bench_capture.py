"""Capture flush against serving: flush rows/s per worker core against the API's one-row req/s, in one run.

The local stack (Redis, S3, MLflow) and the API as shipped (gunicorn, 2 workers, capture on) serve the
titanic model. 1. The peer: ``wrk`` sends one-row requests (MLflow's ``dataframe_records`` body) at
concurrency 16 for --seconds; its req/s is the rate captures arrive at. 2. The requests that run
buffered (one entry each) are flushed by one flusher process (bench/capture_flusher.py: what a housekeeping
worker runs), then, on a second batch of the same size, by two at once; each reports rows, wall seconds
and its CPU seconds. Target: flush rows per CPU-second of a flusher >= 5x the API's one-row req/s. 3.
Sustained: wrk at the same load for --sustain seconds while one flusher follows the stream; the stream's
depth is sampled every second, and dropped rows are read from Redis and from the API's metrics. Target:
the depth stays bounded (it ends below one flush batch above where it started, and never reaches the
cap) and nothing is dropped.

Run: python bench/bench_capture.py [--seconds 20 --sustain 60]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

import bench_inference
import common
import requests

CONCURRENCY = 16
FLUSHER = common.ROOT / "bench" / "capture_flusher.py"


def fill(server: dict[str, Any], body: Any, seconds: float) -> dict[str, Any]:
    """wrk at CONCURRENCY one-row requests for ``seconds``: the API's throughput, the rate captures arrive at."""
    return bench_inference.measure(server, body, CONCURRENCY, seconds, None)


def flushers(env: dict[str, str], mode: str, count: int, seconds: float = 0.0) -> list[dict[str, Any]]:
    """Start ``count`` flusher processes, let them go at once when all are warm, and read what each flushed."""
    procs = [subprocess.Popen([sys.executable, str(FLUSHER), mode, str(seconds)], env=env, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE) for _ in range(count)]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        out = [json.loads(proc.communicate(timeout=seconds + 900)[0].strip().splitlines()[-1]) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    return out


def dropped_by_api(url: str, auth: str) -> float:
    """Rows the API did not capture, from its Prometheus metrics."""
    text = requests.get(f"{url}/metrics", headers={"Authorization": auth}, timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("mlaas_capture_dropped_rows_total"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each fill run")
    parser.add_argument("--sustain", type=float, default=60.0, help="length of the sustained run")
    args = parser.parse_args(argv)

    from mlaas.adapters.capture_buffer import CaptureBuffer
    from mlaas.settings import Settings
    from tests.integration.models import CATEGORICAL, NUMERIC, register, titanic_pipeline

    info = common.announce()
    train, test = common.titanic()
    features = NUMERIC + CATEGORICAL
    stack, key = common.start_stack("capture", ("redis", "s3", "mlflow"))
    processes: list[common.Process] = []
    results: dict[str, Any] = {}
    try:
        env = {**os.environ, **stack.env(), "PYTHONPATH": str(common.ROOT)}
        os.environ.update(stack.env())
        settings = Settings.from_env(stack.env())
        name = f"bench-capture-{int(time.time())}"
        version = register(settings, name, titanic_pipeline(), train[features], train["Survived"])
        body = stack.config.path("body-1.json")
        body.write_text(json.dumps({"dataframe_records": bench_inference.records(test[features], 1)}))
        process, url = common.start_api(stack, "capture", {"MLAAS_CAPTURE_ENABLED": "true"})
        processes.append(process)
        auth = f"Bearer {key}"
        server = {"name": "mlaas", "pid": process.pid, "url": f"{url}/inference?model={name}&version={version}",
                  "auth": auth, "close": False, "mlaas": True}
        buffer = CaptureBuffer(settings)
        stream = buffer.stream_key(name, version)
        bench_inference.run_wrk(server["url"], body, connections=4, seconds=2, auth=auth)  # load in both workers
        flushers(env, "drain", 1)  # the warm-up's captures

        runs = []
        for count in (1, 2):
            common.wait_quiet(max_wait=30)
            served = fill(server, body, args.seconds)
            time.sleep(0.5)  # the API writes what it holds every 0.1 s (MLAAS_CAPTURE_BATCH_SECONDS)
            depth = buffer.length(stream)
            load = common.wait_quiet(max_wait=30)
            flushed = flushers(env, "drain", count)
            rows = sum(f["rows"] for f in flushed)
            wall = max(f["seconds"] for f in flushed)
            cpu = sum(f["cpu_seconds"] for f in flushed)
            runs.append({"flushers": count, "api": served, "buffered": depth, "flushed": flushed, "rows": rows,
                         "rows_per_s": rows / wall, "rows_per_cpu_s": rows / cpu, "left": buffer.length(stream),
                         "load": round(load, 2)})
            print(f"  {count} flusher(s): API {served['rps']:,.0f} req/s ({served['errors']} errors), "
                  f"{depth:,} buffered, flushed {rows:,} rows in {wall:.2f} s: {rows / wall:,.0f} rows/s, "
                  f"{rows / cpu:,.0f} rows per CPU-second, load {load:.2f}", flush=True)
        results["runs"] = runs

        common.wait_quiet(max_wait=30)
        dropped_before = buffer.dropped(stream) + dropped_by_api(url, auth)
        start_depth = buffer.length(stream)
        samples: list[tuple[float, int]] = []
        stop = threading.Event()

        def sample() -> None:
            began = time.monotonic()
            while not stop.wait(1.0):
                samples.append((round(time.monotonic() - began, 1), buffer.length(stream)))

        sampler = threading.Thread(target=sample, daemon=True)
        follower: list[dict[str, Any]] = []
        following = threading.Thread(target=lambda: follower.extend(flushers(env, "follow", 1, args.sustain + 5)))
        following.start()
        time.sleep(3)  # the flusher is warm (it waits for its start line only after warming)
        sampler.start()
        served = fill(server, body, args.sustain)
        time.sleep(1)
        stop.set()
        following.join()
        sampler.join()
        dropped = buffer.dropped(stream) + dropped_by_api(url, auth) - dropped_before
        depths = [d for _, d in samples]
        results["sustained"] = {"api": served, "flusher": follower[0], "start_depth": start_depth,
                                "max_depth": max(depths), "end_depth": depths[-1], "samples": samples,
                                "dropped_rows": dropped, "cap": settings.capture_max_entries}
        print(f"  sustained {args.sustain:.0f} s: API {served['rps']:,.0f} req/s ({served['errors']} errors), "
              f"depth max {max(depths):,} end {depths[-1]:,}, dropped {dropped:.0f}", flush=True)
    finally:
        for process in processes:
            process.stop()
        stack.stop()

    tables, checks = report(results, settings.capture_flush_batch)
    common.save("capture", {"machine": info, "concurrency": CONCURRENCY, **results, "targets": checks,
                            "tables": tables})
    return 0 if all(checks.values()) else 1


def report(results: dict[str, Any], batch: int) -> tuple[list[str], dict[str, bool]]:
    rows = [[r["flushers"], common.fmt(r["api"]["rps"], 0), f"{r['buffered']:,}", f"{r['rows']:,}",
             common.fmt(r["rows_per_s"], 0), common.fmt(r["rows_per_cpu_s"], 0),
             common.fmt(r["rows_per_cpu_s"] / r["api"]["rps"], 1) + "x", r["left"], r["load"]]
            for r in results["runs"]]
    tables = [common.print_table(
        f"Capture flush against the API's one-row throughput (wrk, concurrency {CONCURRENCY}, same run)",
        ["flushers", "API req/s (1 row)", "entries buffered", "rows flushed", "flush rows/s (wall)",
         "flush rows per CPU-second", "ratio (per core / API req/s)", "left in the stream", "load"], rows)]
    s = results["sustained"]
    tables.append(common.print_table(
        "Sustained load with one flusher following the stream",
        ["seconds", "API req/s", "API errors", "depth at start", "max depth", "depth at end", "cap",
         "dropped rows", "flusher rows", "flusher CPU s"],
        [[len(s["samples"]), common.fmt(s["api"]["rps"], 0), s["api"]["errors"], f"{s['start_depth']:,}",
          f"{s['max_depth']:,}", f"{s['end_depth']:,}", f"{s['cap']:,}", common.fmt(s["dropped_rows"], 0),
          f"{s['flusher']['rows']:,}", common.fmt(s["flusher"]["cpu_seconds"])]]))
    one = results["runs"][0]
    checks = {
        "flush rows per CPU-second of one flusher >= 5x the API's one-row req/s":
            one["rows_per_cpu_s"] >= 5 * one["api"]["rps"],
        "every buffered entry flushed (nothing left, none twice)": all(r["left"] == 0 and r["rows"] >= r["buffered"]
                                                                       for r in results["runs"]),
        "sustained: the depth stays bounded (ends within one batch of its start, never at the cap)":
            s["end_depth"] <= s["start_depth"] + batch and s["max_depth"] < s["cap"],
        "sustained: zero dropped rows": s["dropped_rows"] == 0,
        "no API errors": all(r["api"]["errors"] == 0 for r in results["runs"]) and s["api"]["errors"] == 0,
    }
    tables.append(common.print_table("Targets", ["target", "result"],
                                     [[k, common.verdict(v)] for k, v in checks.items()]))
    return tables, checks


if __name__ == "__main__":
    started = time.monotonic()
    code = main()
    print(f"\nbench_capture took {time.monotonic() - started:.0f} s")
    sys.exit(code)
