"""POST /inference against `mlflow models serve`: same registered model, worker count, payloads and load generator.

Both servers run 2 workers on 127.0.0.1 and get the same body (MLflow's ``dataframe_records``) from
``wrk`` with bench/wrk_post.lua, at concurrency 1 and 8, for 1, 100 and 1,000 rows. Each round runs
every variant once, the order reversed every other round (A B, B A, ...), so each ratio is taken
pair by pair within one round. The peer runs as shipped (keep-alive) and with ``Connection: close``.
mlaas also runs with inference capture off and with its fast path off (plain scikit-learn), to show
what each costs. Server CPU per request is the CPU time of the server's process tree over the run.

Run: python bench/bench_inference.py [--seconds 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import common
import numpy as np
import pandas as pd

ROWS = (1, 100, 1000)
CONCURRENCY = (1, 8)
LUA = common.ROOT / "bench" / "wrk_post.lua"
# The extra mlaas variants run where the targets are measured (concurrency 8, 1 and 100 rows).
EXTRA_AT = {(1, 8), (100, 8)}


def records(frame: pd.DataFrame, n: int) -> list[dict[str, Any]]:
    """``n`` rows of the titanic test set (repeated as needed), missing values as null."""
    rows = frame.to_dict(orient="records")
    out = [rows[i % len(rows)] for i in range(n)]
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in out]


def run_wrk(url: str, body: Path, *, connections: int, seconds: float, auth: str = "", close: bool = False
            ) -> dict[str, Any]:
    env = {**os.environ, "WRK_BODY": str(body), "WRK_AUTH": auth, "WRK_CLOSE": "1" if close else "0"}
    argv = ["wrk", "-t", str(min(2, connections)), "-c", str(connections), "-d", f"{max(1, round(seconds))}s",
            "--timeout", "10s", "-s", str(LUA), url]
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("WRK_JSON "))
    result: dict[str, Any] = json.loads(line.removeprefix("WRK_JSON "))
    errors = sum(result[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts"))
    result["errors"] = errors
    return result


def measure(server: dict[str, Any], body: Path, connections: int, seconds: float, redis_pid: int | None
            ) -> dict[str, Any]:
    """One wrk run; req/s, latency, and CPU per request of the server (and of Redis for mlaas)."""
    cpu0 = common.tree_cpu_seconds(server["pid"])
    redis0 = common.tree_cpu_seconds(redis_pid) if redis_pid else 0.0
    load = common.load_average()
    result = run_wrk(server["url"], body, connections=connections, seconds=seconds, auth=server["auth"],
                     close=server["close"])
    cpu = common.tree_cpu_seconds(server["pid"]) - cpu0
    redis_cpu = (common.tree_cpu_seconds(redis_pid) - redis0) if redis_pid else 0.0
    n = max(result["requests"], 1)
    return {"rps": result["requests"] / (result["duration_us"] / 1e6), "p50_ms": result["p50_us"] / 1e3,
            "p99_ms": result["p99_us"] / 1e3, "cpu_ms_per_request": cpu * 1e3 / n,
            "redis_cpu_ms_per_request": redis_cpu * 1e3 / n if server["mlaas"] else None,
            "requests": result["requests"], "errors": result["errors"], "load": round(load, 2)}


def in_process_floor(model: Any, predictor: Any, frames: dict[int, pd.DataFrame],
                     bodies: dict[int, list[dict[str, Any]]]) -> dict[int, dict[str, float]]:
    """The model's own predict on ready frames, the naive call on a fresh frame, and the compiled predictor."""
    from mlaas.inference import compiled

    out = {}
    for n, frame in frames.items():
        calls = 200 if n < 1000 else 40
        model.predict(frame)
        started = time.perf_counter()
        for _ in range(calls):
            model.predict(frame)
        predict_s = (time.perf_counter() - started) / calls
        cpu_started = time.process_time()
        for _ in range(calls):
            model.predict(pd.DataFrame.from_records(bodies[n]))
        naive_cpu_s = (time.process_time() - cpu_started) / calls
        columns = compiled.columns_of(frame, predictor.inputs)
        started = time.perf_counter()
        for _ in range(calls):
            predictor.predict(columns)
        compiled_s = (time.perf_counter() - started) / calls
        out[n] = {"predict_ms": predict_s * 1e3, "naive_cpu_ms": naive_cpu_s * 1e3, "compiled_ms": compiled_s * 1e3,
                  "floor_rps": (os.cpu_count() or 1) / predict_s}
    return out


def capture_cost(settings: Any, model: Any, features: list[str], bodies: dict[int, list[dict[str, Any]]]
                 ) -> dict[int, float]:
    """CPU microseconds per request of the capture code alone, in-process, against the stack's Redis: building
    the entry on the request path plus its share of the batched write (under a key prefix of its own)."""
    import dataclasses

    from mlaas.adapters.capture_buffer import CaptureBuffer
    from mlaas.inference import payload, predict
    from mlaas.monitoring import capture

    buffer = CaptureBuffer(dataclasses.replace(settings, redis_prefix="bench-capture", capture_batch_seconds=3600))
    out = {}
    for n, rows in bodies.items():
        raw = json.dumps({"dataframe_records": rows}).encode()
        parsed = payload.parse_rows(json.loads(raw), max_rows=10_000)
        frame = parsed.frame[features]
        proba = model.predict_proba(frame)
        classes = [str(c) for c in model.classes_]
        result = predict.Prediction(parsed.ids, model.predict(frame).tolist(),
                                      [dict(zip(classes, p, strict=True)) for p in proba.tolist()], [],
                                      frame, proba)
        calls, best = 2000 if n < 1000 else 200, float("inf")
        for _ in range(3):  # the least disturbed of three batches
            started = time.process_time()
            for _ in range(calls):
                capture.record(buffer, "bench", n, result, "0" * 32)
            buffer.write_pending()
            best = min(best, (time.process_time() - started) / calls)
        out[n] = best * 1e6
    buffer.redis.delete(*buffer.redis.keys("bench-capture:*"))
    return out


def check_answers(servers: list[dict[str, Any]], body: dict[str, Any], model: Any, frame: pd.DataFrame
                  ) -> dict[str, bool]:
    """Every server's labels equal the registered model's own; mlaas's probabilities within 1e-6 relative."""
    import requests

    expected = model.predict(frame).tolist()
    proba = model.predict_proba(frame)
    out = {}
    for server in servers:
        headers = {"Authorization": server["auth"]} if server["auth"] else {}
        answer = requests.post(server["url"], json=body, headers=headers, timeout=60)
        answer.raise_for_status()
        data = answer.json()
        same = data["predictions"] == expected
        if server["mlaas"]:
            got = np.array([[p[str(c)] for c in model.classes_] for p in data["probabilities"]])
            same = same and bool(np.allclose(got, proba, rtol=1e-6, atol=0))
        out[server["name"]] = same
    return out


def start_mlflow_serve(stack: Any, model_uri: str, workers: int) -> tuple[common.Process, str]:
    import localstack

    port = localstack.free_ports(1)[0]
    tmp = stack.config.path("mlflow-serve-tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])  # it runs `uvicorn`
    env = {**os.environ, "MLFLOW_TRACKING_URI": stack.config.url("mlflow"), "TMPDIR": str(tmp), "PATH": path}
    argv = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local",
            "--workers", str(workers), "-h", "127.0.0.1", "-p", str(port)]
    process = common.Process("mlflow-serve", argv, env=env, log=stack.config.path("logs", "mlflow-serve.log"))
    url = f"http://127.0.0.1:{port}"
    process.wait_http(f"{url}/ping", timeout=180)
    return process, url


def summarise(runs: list[dict[str, Any]], floors: dict[int, dict[str, float]]) -> dict[str, Any]:
    """Medians per (rows, concurrency, variant) and per-round ratios against the peer."""
    summary: dict[str, Any] = {}
    keys = sorted({(r["rows"], r["concurrency"]) for r in runs})
    for rows, conc in keys:
        here = [r for r in runs if r["rows"] == rows and r["concurrency"] == conc]
        variants = sorted({r["variant"] for r in here}, key=lambda v: list(VARIANTS).index(v))
        entry: dict[str, Any] = {"variants": {}}
        for variant in variants:
            mine = [r for r in here if r["variant"] == variant]
            entry["variants"][variant] = {
                metric: common.median([r[metric] for r in mine if r[metric] is not None])
                for metric in ("rps", "p50_ms", "p99_ms", "cpu_ms_per_request", "redis_cpu_ms_per_request")
            }
            entry["variants"][variant]["rows_per_s"] = entry["variants"][variant]["rps"] * rows
            entry["variants"][variant]["errors"] = sum(r["errors"] for r in mine)
        by_round: dict[int, dict[str, dict[str, Any]]] = {}
        for r in here:
            by_round.setdefault(r["round"], {})[r["variant"]] = r
        for peer in ("mlflow", "mlflow-close"):
            pairs = [(v["mlaas"], v[peer]) for v in by_round.values() if "mlaas" in v and peer in v]
            entry[f"vs_{peer}"] = {
                "rps_ratio_per_round": [a["rps"] / b["rps"] for a, b in pairs],
                "p99_ratio_per_round": [a["p99_ms"] / b["p99_ms"] for a, b in pairs],
            }
        for variant, label in (("mlaas", "capture_cpu_share_per_round"),
                               ("mlaas-sync", "sync_capture_cpu_share_per_round")):
            pairs = [(v[variant], v["mlaas-nocapture"]) for v in by_round.values()
                     if variant in v and "mlaas-nocapture" in v]
            if pairs:
                entry[label] = [(a["cpu_ms_per_request"] - b["cpu_ms_per_request"]) / a["cpu_ms_per_request"]
                                for a, b in pairs]
        floor = floors[rows]
        entry["floor"] = dict(floor, service_share_of_floor=entry["variants"]["mlaas"]["rps"] / floor["floor_rps"])
        summary[f"{rows}x{conc}"] = entry
    return summary


VARIANTS = {
    "mlaas": "mlaas /inference (capture on, written every 0.1 s; fast path on)",
    "mlflow": "mlflow models serve, as shipped (keep-alive)",
    "mlflow-close": "mlflow models serve, Connection: close",
    "mlaas-nocapture": "mlaas, MLAAS_CAPTURE_ENABLED=false",
    "mlaas-sync": "mlaas, capture written on each request (MLAAS_CAPTURE_BATCH_SECONDS=0)",
    "mlaas-sklearn": "mlaas, MLAAS_FAST_PATH=false (plain scikit-learn)",
}


def capture_share(entry: dict[str, Any]) -> float | None:
    """Capture's share of the server CPU per request: its in-process cost over (server without it + that cost)."""
    off = entry["variants"].get("mlaas-nocapture")
    us = entry["floor"].get("capture_us")
    if off is None or us is None:
        return None
    return float(us / (off["cpu_ms_per_request"] * 1e3 + us))


def report(summary: dict[str, Any]) -> tuple[list[str], dict[str, bool]]:
    tables = []
    rows_out = []
    for key, entry in summary.items():
        rows, conc = key.split("x")
        for variant, m in entry["variants"].items():
            rows_out.append([rows, conc, variant, common.fmt(m["rps"], 1), common.fmt(m["rows_per_s"], 0),
                             common.fmt(m["p50_ms"]), common.fmt(m["p99_ms"]), common.fmt(m["cpu_ms_per_request"]),
                             common.fmt(m["redis_cpu_ms_per_request"]), m["errors"]])
    tables.append(common.print_table(
        "Throughput, latency and server CPU (medians over the rounds)",
        ["rows", "conc.", "server", "req/s", "rows/s", "p50 ms", "p99 ms", "CPU ms/req", "Redis CPU ms/req",
         "errors"], rows_out))
    ratio_rows = []
    for key, entry in summary.items():
        rows, conc = key.split("x")
        for peer in ("mlflow", "mlflow-close"):
            r = entry[f"vs_{peer}"]
            ratio_rows.append([rows, conc, peer, " ".join(common.fmt(x) for x in r["rps_ratio_per_round"]),
                               common.fmt(common.median(r["rps_ratio_per_round"])),
                               " ".join(common.fmt(x) for x in r["p99_ratio_per_round"]),
                               common.fmt(common.median(r["p99_ratio_per_round"]))])
    tables.append(common.print_table(
        "mlaas / peer, pair by pair (each round's ratio, then the median)",
        ["rows", "conc.", "peer", "req/s ratio per round", "median", "p99 ratio per round", "median"], ratio_rows))
    floor_rows = []
    for key, entry in summary.items():
        rows, conc = key.split("x")
        f = entry["floor"]
        floor_rows.append([rows, conc, common.fmt(f["predict_ms"]), common.fmt(f["compiled_ms"], 3),
                           common.fmt(f["floor_rps"], 1), common.fmt(entry["variants"]["mlaas"]["rps"], 1),
                           f"{f['service_share_of_floor'] * 100:.0f}%"])
    tables.append(common.print_table(
        "In-process floor: the model's own predict on a ready frame (cores / predict time)",
        ["rows", "conc.", "sklearn predict ms", "compiled ms", "floor req/s", "mlaas req/s", "mlaas share"],
        floor_rows))
    checks: dict[str, bool] = {}
    for rows in (1, 100):
        entry = summary.get(f"{rows}x8")
        if entry is None:
            continue
        shipped, close = entry["vs_mlflow"], entry["vs_mlflow-close"]
        checks[f"{rows} row(s): req/s >= 2.5x mlflow as shipped"] = min(shipped["rps_ratio_per_round"]) >= 2.5
        checks[f"{rows} row(s): req/s >= 1.5x mlflow with Connection: close"] = min(close["rps_ratio_per_round"]) >= 1.5
        checks[f"{rows} row(s): p99 <= 0.4x mlflow as shipped"] = max(shipped["p99_ratio_per_round"]) <= 0.4
        checks[f"{rows} row(s): p99 <= 0.6x mlflow with Connection: close"] = max(close["p99_ratio_per_round"]) <= 0.6
        share = capture_share(entry)
        if share is not None:
            checks[f"{rows} row(s): capture (default) <= 5% of server CPU per request (measured in-process)"] = \
                share <= 0.05
    one = summary.get("1x8")
    if one is not None:
        cpu = one["variants"]["mlaas"]["cpu_ms_per_request"]
        checks["1 row: server CPU per request <= 0.5x a naive predict"] = cpu <= 0.5 * one["floor"]["naive_cpu_ms"]
    capture_rows = [[key.replace("x", " rows, conc. "), how, " ".join(f"{x * 100:+.1f}%" for x in shares),
                     f"{common.median(shares) * 100:+.1f}%", f"{min(shares) * 100:+.1f}% .. {max(shares) * 100:+.1f}%"]
                    for key, e in summary.items()
                    for label, how in (("capture_cpu_share_per_round", "batched every 0.1 s (default)"),
                                       ("sync_capture_cpu_share_per_round", "on each request"))
                    if (shares := e.get(label))]
    tables.append(common.print_table("Inference capture: share of server CPU per request (on - off) / on",
                                     ["where", "capture written", "per round", "median", "spread"], capture_rows))
    inproc_rows = [[key.replace("x", " rows, conc. "), common.fmt(e["floor"]["capture_us"], 1),
                    common.fmt(e["variants"]["mlaas-nocapture"]["cpu_ms_per_request"] * 1e3, 0),
                    f"{share * 100:.1f}%"]
                   for key, e in summary.items() if (share := capture_share(e)) is not None]
    tables.append(common.print_table(
        "Inference capture measured in-process: its CPU per request against the server's CPU per request without it",
        ["where", "capture CPU us/req (entry + share of the batched write)", "server CPU us/req, capture off",
         "share"], inproc_rows))
    if one is not None:
        tables.append(common.print_table(
            "Server CPU per one-row request against a naive predict (DataFrame from the record + pipeline.predict)",
            ["mlaas CPU ms/req", "naive predict CPU ms", "ratio"],
            [[common.fmt(cpu, 3), common.fmt(one["floor"]["naive_cpu_ms"], 3),
              common.fmt(cpu / one["floor"]["naive_cpu_ms"])]]))
    tables.append(common.print_table("Targets (every round must pass the throughput and p99 ratios)",
                                     ["target", "result"], [[k, common.verdict(v)] for k, v in checks.items()]))
    return tables, checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (A B pairs) per configuration")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rows", default=",".join(map(str, ROWS)), help="payload sizes, e.g. 1,100")
    parser.add_argument("--concurrency", default=",".join(map(str, CONCURRENCY)), help="e.g. 8")
    args = parser.parse_args(argv)
    sizes = [int(x) for x in args.rows.split(",")]
    levels = [int(x) for x in args.concurrency.split(",")]

    from mlaas.inference import compiled
    from mlaas.settings import Settings
    from tests.integration.models import CATEGORICAL, NUMERIC, register, titanic_pipeline

    info = common.machine()
    print(f"machine: {info['cores']} cores, {info['cpu']}, load {info['load_at_start']}", flush=True)
    data = common.ROOT / "examples" / "data" / "titanic"
    train, test = pd.read_csv(data / "titanic.csv"), pd.read_csv(data / "titanic_test.csv")
    features = NUMERIC + CATEGORICAL

    stack, key = common.start_stack("inference", ("redis", "s3", "mlflow"))
    servers: list[dict[str, Any]] = []
    processes: list[common.Process] = []
    try:
        os.environ.update(stack.env())
        settings = Settings.from_env(stack.env())
        name = f"bench-titanic-{int(time.time())}"
        version = register(settings, name, titanic_pipeline(), train[features], train["Survived"])
        import mlflow

        model = mlflow.sklearn.load_model(f"models:/{name}/{version}")
        predictor, why = compiled.build(model, features)
        assert predictor is not None, f"the benchmark's model does not take the fast path: {why}"

        bodies = {n: records(test[features], n) for n in sorted({*sizes, 100})}
        files = {}
        for n, body in bodies.items():
            files[n] = stack.config.path(f"body-{n}.json")
            files[n].write_text(json.dumps({"dataframe_records": body}))
        auth = f"Bearer {key}"
        query = f"/inference?model={name}&version={version}"
        for variant, env in (("mlaas", {"MLAAS_CAPTURE_ENABLED": "true"}),
                             ("mlaas-nocapture", {"MLAAS_CAPTURE_ENABLED": "false"}),
                             ("mlaas-sync", {"MLAAS_CAPTURE_BATCH_SECONDS": "0"}),
                             ("mlaas-sklearn", {"MLAAS_FAST_PATH": "false"})):
            process, url = common.start_api(stack, variant, env, workers=args.workers)
            processes.append(process)
            servers.append({"name": variant, "pid": process.pid, "url": url + query, "auth": auth, "close": False,
                            "mlaas": True})
        process, url = start_mlflow_serve(stack, f"models:/{name}/{version}", args.workers)
        processes.append(process)
        for variant, close in (("mlflow", False), ("mlflow-close", True)):
            servers.append({"name": variant, "pid": process.pid, "url": url + "/invocations", "auth": "",
                            "close": close, "mlaas": False})
        by_name = {s["name"]: s for s in servers}

        frames = {n: pd.DataFrame.from_records(b) for n, b in bodies.items()}
        answers = check_answers([s for s in servers if s["name"] != "mlflow-close"],
                                {"dataframe_records": bodies[100]}, model, frames[100])
        print(f"answers equal to the registered model's own: {answers}", flush=True)
        for server in servers:  # load the model in every worker before timing
            run_wrk(server["url"], files[1], connections=4, seconds=2, auth=server["auth"], close=server["close"])
        floors = in_process_floor(model, predictor, frames, bodies)
        for n, us in capture_cost(settings, model, features, bodies).items():
            floors[n]["capture_us"] = us

        runs: list[dict[str, Any]] = []
        redis_pid = stack.pids().get("redis")
        for round_no in range(args.rounds):
            load = common.wait_quiet()
            print(f"round {round_no + 1}/{args.rounds}: load {load:.2f}", flush=True)
            for rows in sizes:
                for conc in levels:
                    names = ["mlaas", "mlflow", "mlflow-close"]
                    if (rows, conc) in EXTRA_AT:
                        names += ["mlaas-sync", "mlaas-nocapture", "mlaas-sklearn"]
                    if round_no % 2:
                        names.reverse()
                    for variant in names:
                        result = measure(by_name[variant], files[rows], conc, args.seconds, redis_pid)
                        runs.append({"round": round_no, "rows": rows, "concurrency": conc, "variant": variant,
                                     **result})
                        print(f"  {rows:>4} rows c={conc} {variant:16s} {result['rps']:8.1f} req/s "
                              f"p99 {result['p99_ms']:7.1f} ms cpu {result['cpu_ms_per_request']:6.2f} ms/req "
                              f"load {result['load']}", flush=True)
    finally:
        for process in processes:
            process.stop()
        stack.stop()

    summary = summarise(runs, floors)
    tables, checks = report(summary)
    loads = [r["load"] for r in runs]
    print(f"\nload average during the runs: median {common.median(loads):.2f}, max {max(loads):.2f}")
    common.save("inference", {"machine": info, "variants": VARIANTS, "seconds": args.seconds, "rounds": args.rounds,
                              "workers": args.workers, "answers_equal": answers, "fast_path": why,
                              "runs": runs, "floors": floors, "summary": summary, "targets": checks,
                              "load": {"median": common.median(loads), "max": max(loads)}, "tables": tables})
    return 0


if __name__ == "__main__":
    sys.exit(main())
