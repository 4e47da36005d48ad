"""POST /inference against `mlflow models serve` and MLServer, per model family: same registered model, workers,
payloads, load.

For each family of ``bench/families.py`` (linear pipeline, random forest, HistGradientBoosting, XGBoost and
LightGBM at the end of the same pipeline, and both boosters alone with their own MLflow flavours), every server
runs 2 workers on 127.0.0.1 and get the same body (MLflow's ``dataframe_records``) from ``wrk`` with
bench/wrk_post.lua, at concurrency 1 and 8, for 1 and 100 rows. Each round runs every
variant once, the order reversed every other round (A B, B A, ...), so each ratio is taken pair by pair
within one round. `mlflow models serve` runs as shipped (keep-alive) and with ``Connection: close``; MLServer
1.7.1 with its MLflow runtime (``parallel_workers: 2``, bench/mlserver_peer.py, in bench/.venv-mlserver) is
sent the same body on its ``/invocations``. A peer that cannot be installed, started or answer the model's own
labels is left out of that family with the reason printed and saved, never silently. mlaas also runs with
its fast path off (plain scikit-learn: the generic path), and for the linear family with inference capture
off and written on each request, to show what each costs. Server CPU per request is the CPU time of the
server's process tree over the run. Before timing, every server's labels must equal the registered model's
own ``predict`` (and mlaas's probabilities its ``predict_proba``, within 1e-6 relative), or the run fails;
afterwards the API's ``mlaas_inference_path_total`` gives the share of requests that left the compiled path.

Run: python bench/bench_inference.py [--seconds 5] [--rounds 3]
         [--families linear,forest,hgb,xgboost,lightgbm,xgboost-native,lightgbm-native]
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
import mlserver_peer
import numpy as np
import pandas as pd
from families import FAMILIES, Family

ROWS = (1, 100)
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
        compiled_s = math.nan
        if predictor is not None:
            columns = compiled.columns_of(frame, predictor.inputs)
            started = time.perf_counter()
            for _ in range(calls):
                predictor.predict(columns)
            compiled_s = (time.perf_counter() - started) / calls
        out[n] = {"predict_ms": predict_s * 1e3, "naive_cpu_ms": naive_cpu_s * 1e3, "compiled_ms": compiled_s * 1e3,
                  "floor_rps": (os.cpu_count() or 1) / predict_s}
    return out


def capture_cost(settings: Any, name: str, version: int, bodies: dict[int, list[dict[str, Any]]],
                 per_write: int = 50) -> dict[int, dict[str, Any]]:
    """CPU microseconds per request of the capture code alone, in-process, as the API runs it, warm.

    The model is loaded by the API's own cache and each body parsed and scored by the API's own functions, so
    the capture is handed what the server hands it (on the compiled path the checked arrays, not a DataFrame).
    Timed: ``capture.record`` as the server calls it, plus the writer thread's ``write_pending`` every
    ``per_write`` requests (about what one of 2 workers holds per 0.1 s at 1,000 req/s), against the stack's
    Redis under a key prefix of its own. Every entry must reach Redis: a write that timed out or was refused
    would time the drop path instead, so that fails the run."""
    import dataclasses

    from mlaas.adapters.capture_buffer import CaptureBuffer
    from mlaas.context import Context
    from mlaas.inference import payload, predict
    from mlaas.inference.cache import ModelCache
    from mlaas.monitoring import capture

    cache = ModelCache(Context(settings))
    served = cache.get(cache.resolve(name, version))
    buffer = CaptureBuffer(dataclasses.replace(settings, redis_prefix="bench-capture", capture_batch_seconds=3600))
    key = buffer.stream_key(served.name, served.version)
    out: dict[int, dict[str, Any]] = {}
    try:
        for n, records_ in bodies.items():
            rows = payload.parse_rows(json.loads(json.dumps({"dataframe_records": records_})), max_rows=10_000)
            features, ignored = predict.prepare_features(rows, served)
            result = predict.predict(served, features, rows, ignored)
            calls, best = 2000 if n < 1000 else 200, float("inf")
            for _ in range(3):  # the least disturbed of three batches
                buffer.redis.delete(*buffer.redis.keys("bench-capture:*") or ["bench-capture:none"])
                started = time.process_time()
                for i in range(calls):
                    capture.record(buffer, served.name, served.version, result, "0" * 32)
                    if i % per_write == per_write - 1:
                        buffer.write_pending()
                buffer.write_pending()
                elapsed = time.process_time() - started
                kept = buffer.length(key)
                if buffer.failures or buffer.dropped_local or buffer.dropped(key) or kept != calls:
                    raise SystemExit(f"capture cost, {n} rows: {kept} of {calls} entries reached Redis "
                                     f"({buffer.failures} failed writes): the timing is not of the capture path")
                best = min(best, elapsed / calls)
            out[n] = {"us": best * 1e6, "path": result.path, "entry_bytes": buffer.held_bytes(key) // calls}
    finally:
        buffer.redis.delete(*buffer.redis.keys("bench-capture:*") or ["bench-capture:none"])
    return out


def check_answers(servers: list[dict[str, Any]], body: dict[str, Any], model: Any, frame: pd.DataFrame
                  ) -> tuple[dict[str, bool], dict[str, str]]:
    """Every server's labels equal the registered model's own; mlaas's probabilities within 1e-6 relative.

    Returns (server -> equal, server -> why not, for those that are not)."""
    import requests

    expected = model.predict(frame).tolist()
    proba = model.predict_proba(frame)
    out, why = {}, {}
    for server in servers:
        headers = {"Authorization": server["auth"]} if server["auth"] else {}
        answer = requests.post(server["url"], json=body, headers=headers, timeout=60)
        if not answer.ok:
            why[server["name"]] = f"HTTP {answer.status_code}: {error_cause(answer.text)}"
            print(f"  {server['name']} answered {why[server['name']]}", flush=True)
            out[server["name"]] = False
            continue
        data = answer.json()
        same = data["predictions"] == expected
        if not same:
            why[server["name"]] = "answered other labels than the model's own predict"
        if server["mlaas"]:
            got = np.array([[p[str(c)] for c in model.classes_] for p in data["probabilities"]])
            same = same and bool(np.allclose(got, proba, rtol=1e-6, atol=0))
        out[server["name"]] = same
    return out, why


def error_cause(text: str) -> str:
    """An error answer's message and, where it sends its stack trace (MLflow's scoring server), the trace's last
    line: the exception that refused the request."""
    try:
        data = json.loads(text)
    except ValueError:
        return text[:300]
    if not isinstance(data, dict):
        return text[:300]
    message = str(data.get("message") or data.get("error") or data.get("detail") or text)[:300]
    trace = [line for line in str(data.get("stack_trace") or "").splitlines() if line.strip()]
    return f"{message} ({trace[-1].strip()[:300]})" if trace else message


def paths_counted(url: str, auth: str, model: str) -> dict[str, float]:
    """Requests per scoring path (compiled, fallback, sklearn) the API counted for ``model``."""
    import requests
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(f"{url}/metrics", headers={"Authorization": auth}, timeout=30).text
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "mlaas_inference_path_total" and sample.labels.get("model") == model:
                counts[sample.labels["path"]] = counts.get(sample.labels["path"], 0.0) + sample.value
    return counts


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
        for mine_name, peer in PAIRS:
            pairs = [(v[mine_name], v[peer]) for v in by_round.values() if mine_name in v and peer in v]
            entry[f"vs_{peer}" if mine_name == "mlaas" else f"{mine_name}_vs_{peer}"] = {
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


PAIRS = (("mlaas", "mlflow"), ("mlaas", "mlflow-close"), ("mlaas", "mlserver"), ("mlaas-sklearn", "mlflow-close"))
VARIANTS = {
    "mlaas": "mlaas /inference (capture on, written every 0.1 s; fast path on)",
    "mlaas-sklearn": "mlaas, MLAAS_FAST_PATH=false (plain scikit-learn: the generic path)",
    "mlflow": "mlflow models serve, as shipped (keep-alive)",
    "mlflow-close": "mlflow models serve, Connection: close",
    "mlserver": "MLServer 1.7.1, mlserver_mlflow.MLflowRuntime, parallel_workers 2 (keep-alive)",
    "mlaas-nocapture": "mlaas, MLAAS_CAPTURE_ENABLED=false",
    "mlaas-sync": "mlaas, capture written on each request (MLAAS_CAPTURE_BATCH_SECONDS=0)",
}


def capture_share(entry: dict[str, Any]) -> float | None:
    """Capture's share of the server CPU per request: its in-process cost over (server without it + that cost)."""
    off = entry["variants"].get("mlaas-nocapture")
    us = entry["floor"].get("capture_us")
    if off is None or us is None:
        return None
    return float(us / (off["cpu_ms_per_request"] * 1e3 + us))


def report(summary: dict[str, Any], family: str) -> tuple[list[str], dict[str, bool]]:
    tables = []
    rows_out = []
    for key, entry in summary.items():
        rows, conc = key.split("x")
        for variant, m in entry["variants"].items():
            rows_out.append([rows, conc, variant, common.fmt(m["rps"], 1), common.fmt(m["rows_per_s"], 0),
                             common.fmt(m["p50_ms"]), common.fmt(m["p99_ms"]), common.fmt(m["cpu_ms_per_request"]),
                             common.fmt(m["redis_cpu_ms_per_request"]), m["errors"]])
    tables.append(common.print_table(
        f"{family}: throughput, latency and server CPU (medians over the rounds)",
        ["rows", "conc.", "server", "req/s", "rows/s", "p50 ms", "p99 ms", "CPU ms/req", "Redis CPU ms/req",
         "errors"], rows_out))
    ratio_rows = []
    for key, entry in summary.items():
        rows, conc = key.split("x")
        for label, peer in PAIRS:
            r = entry[f"vs_{peer}" if label == "mlaas" else f"{label}_vs_{peer}"]
            if not r["rps_ratio_per_round"]:
                continue
            ratio_rows.append([rows, conc, f"{label} / {peer}",
                               " ".join(common.fmt(x) for x in r["rps_ratio_per_round"]),
                               common.fmt(common.median(r["rps_ratio_per_round"])),
                               " ".join(common.fmt(x) for x in r["p99_ratio_per_round"]),
                               common.fmt(common.median(r["p99_ratio_per_round"]))])
    tables.append(common.print_table(
        f"{family}: mlaas / peer, pair by pair (each round's ratio, then the median)",
        ["rows", "conc.", "pair", "req/s ratio per round", "median", "p99 ratio per round", "median"], ratio_rows))
    floor_rows = []
    for key, entry in summary.items():
        rows, conc = key.split("x")
        f = entry["floor"]
        floor_rows.append([rows, conc, common.fmt(f["predict_ms"]), common.fmt(f["compiled_ms"], 3),
                           common.fmt(f["floor_rps"], 1), common.fmt(entry["variants"]["mlaas"]["rps"], 1),
                           f"{f['service_share_of_floor'] * 100:.0f}%"])
    tables.append(common.print_table(
        f"{family}: in-process floor, the model's own predict on a ready frame (cores / predict time)",
        ["rows", "conc.", "sklearn predict ms", "compiled ms", "floor req/s", "mlaas req/s", "mlaas share"],
        floor_rows))
    checks: dict[str, bool] = {}
    for key, entry in summary.items():
        rows, conc = key.split("x")
        close, shipped = entry["vs_mlflow-close"]["rps_ratio_per_round"], entry["vs_mlflow"]["rps_ratio_per_round"]
        mlserver = entry["vs_mlserver"]["rps_ratio_per_round"]
        if conc == "8":
            if close:
                checks[f"{rows} row(s), conc. 8: req/s >= 2x mlflow with Connection: close"] = min(close) >= 2
            if mlserver:
                checks[f"{rows} row(s), conc. 8: req/s >= 1.5x MLServer"] = min(mlserver) >= 1.5
        if conc == "1" and close + shipped + mlserver:
            checks[f"{rows} row(s), conc. 1: req/s >= 1x every peer"] = min(close + shipped + mlserver) >= 1
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
    if capture_rows:
        tables.append(common.print_table("Inference capture: share of server CPU per request (on - off) / on",
                                         ["where", "capture written", "per round", "median", "spread"], capture_rows))
    inproc_rows = [[key.replace("x", " rows, conc. "), e["floor"].get("capture_path", ""),
                    e["floor"].get("capture_entry_bytes", ""), common.fmt(e["floor"]["capture_us"], 1),
                    common.fmt(e["variants"]["mlaas-nocapture"]["cpu_ms_per_request"] * 1e3, 0),
                    f"{share * 100:.1f}%"]
                   for key, e in summary.items() if (share := capture_share(e)) is not None]
    if inproc_rows:
        tables.append(common.print_table(
            "Inference capture measured in-process (the API's own parse, score and capture, warm): its CPU per "
            "request against the server's CPU per request without it, share = capture / (server without it + "
            "capture)", ["where", "scoring path", "entry bytes", "capture CPU us/req (entry + share of the batched "
                         "write)", "server CPU us/req, capture off", "share"], inproc_rows))
    if one is not None:
        tables.append(common.print_table(
            "Server CPU per one-row request against a naive predict (DataFrame from the record + pipeline.predict)",
            ["mlaas CPU ms/req", "naive predict CPU ms", "ratio"],
            [[common.fmt(cpu, 3), common.fmt(one["floor"]["naive_cpu_ms"], 3),
              common.fmt(cpu / one["floor"]["naive_cpu_ms"])]]))
    tables.append(common.print_table(f"{family}: targets (every round must pass the throughput ratios)",
                                     ["target", "result"], [[k, common.verdict(v)] for k, v in checks.items()]))
    return tables, checks




def run_family(family: Family, stack: Any, apis: list[dict[str, Any]], data: dict[str, Any], args: argparse.Namespace
               ) -> dict[str, Any]:
    """Register the family's model, serve it with `mlflow models serve`, check every answer, then time the rounds."""
    from mlaas.inference import compiled

    features, sizes, levels = data["features"], data["sizes"], data["levels"]
    name = f"bench-{family.name}-{int(time.time())}"
    version, model = family.register(data["settings"], name, data["train"][features], data["train"]["Survived"])
    predictor, why = (compiled.build(model, features, data["train"][features].head()) if family.compiled
                      else (None, "not compiled: served by its own library (native booster)"))
    if family.compiled and predictor is None:
        raise SystemExit(f"{family.name}: the model does not take the fast path: {why}")
    query = f"/inference?model={name}&version={version}"
    servers = [{**api, "url": api["base"] + query} for api in apis
               if family.extra_variants or api["name"] in ("mlaas", "mlaas-sklearn")]
    peers_left_out: dict[str, str] = {}
    process, url = start_mlflow_serve(stack, f"models:/{name}/{version}", args.workers)
    mlserver = None
    try:
        for variant, close in (("mlflow", False), ("mlflow-close", True)):
            servers.append({"name": variant, "pid": process.pid, "url": url + "/invocations", "auth": "",
                            "close": close, "mlaas": False})
        if data["mlserver"] is None:
            peers_left_out["mlserver"] = f"not installed: {data['mlserver_why']}"
        else:
            try:
                mlserver, mlserver_url = mlserver_peer.start(stack, data["mlserver"], name,
                                                             f"models:/{name}/{version}", args.workers)
                servers.append({"name": "mlserver", "pid": mlserver.pid, "url": mlserver_url + "/invocations",
                                "auth": "", "close": False, "mlaas": False})
            except Exception as exc:  # noqa: BLE001 (the reason goes into the output)
                peers_left_out["mlserver"] = f"did not start: {exc}"
        bodies, files = data["bodies"], data["files"]
        frames = {n: pd.DataFrame.from_records(b) for n, b in bodies.items()}
        answers, wrong = check_answers([s for s in servers if s["name"] != "mlflow-close"],
                                       {"dataframe_records": bodies[100]}, model, frames[100])
        print(f"{family.name}: answers equal to the registered model's own: {answers}", flush=True)
        if not all(v for k, v in answers.items() if k.startswith("mlaas")):
            raise SystemExit(f"{family.name}: mlaas answered other labels or probabilities than the model: "
                             f"{answers} {wrong}")
        for peer in [k for k, v in answers.items() if not v and not k.startswith("mlaas")]:
            peers_left_out.update({p: wrong.get(peer, "answered other labels than the model's own predict")
                                   for p in (("mlflow", "mlflow-close") if peer == "mlflow" else (peer,))})
        servers = [s for s in servers if s["name"] not in peers_left_out]
        for peer, why_out in peers_left_out.items():
            print(f"{family.name}: {peer} LEFT OUT: {why_out}", flush=True)
        by_name = {s["name"]: s for s in servers}
        for server in servers:  # load the model in every worker before timing
            run_wrk(server["url"], files[1], connections=4, seconds=2, auth=server["auth"], close=server["close"])
        before = paths_counted(by_name["mlaas"]["base"], by_name["mlaas"]["auth"], name)
        floors = in_process_floor(model, predictor, frames, bodies)
        if family.extra_variants:
            for n, cost in capture_cost(data["settings"], name, version, bodies).items():
                floors[n].update(capture_us=cost["us"], capture_path=cost["path"],
                                 capture_entry_bytes=cost["entry_bytes"])
        runs: list[dict[str, Any]] = []
        redis_pid = stack.pids().get("redis")
        for round_no in range(args.rounds):
            load = common.wait_quiet(max_wait=args.quiet_wait)
            print(f"{family.name} round {round_no + 1}/{args.rounds}: load {load:.2f}", flush=True)
            for rows in sizes:
                for conc in levels:
                    names = [n for n in ("mlaas", "mlaas-sklearn", "mlflow", "mlflow-close", "mlserver")
                             if n in by_name]
                    if family.extra_variants and (rows, conc) in EXTRA_AT:
                        names += ["mlaas-sync", "mlaas-nocapture"]
                    if round_no % 2:
                        names.reverse()
                    for variant in names:
                        result = measure(by_name[variant], files[rows], conc, args.seconds, redis_pid)
                        runs.append({"round": round_no, "rows": rows, "concurrency": conc, "variant": variant,
                                     **result})
                        print(f"  {rows:>4} rows c={conc} {variant:16s} {result['rps']:8.1f} req/s "
                              f"p99 {result['p99_ms']:7.1f} ms cpu {result['cpu_ms_per_request']:6.2f} ms/req "
                              f"load {result['load']}", flush=True)
        after = paths_counted(by_name["mlaas"]["base"], by_name["mlaas"]["auth"], name)
    finally:
        process.stop()
        if mlserver is not None:
            mlserver.stop()
    counted = {path: after.get(path, 0.0) - before.get(path, 0.0) for path in ("compiled", "fallback", "sklearn")}
    total = sum(counted.values())
    fell_back = (counted["fallback"] + counted["sklearn"]) / total if total else math.nan
    summary = summarise(runs, floors)
    tables, checks = report(summary, family.name)
    tables.append(common.print_table(f"{family.name}: requests by scoring path (mlaas, fast path on)",
                                      ["compiled", "fell back to scikit-learn", "no compiled model",
                                       "share fallen back"],
                                      [[int(counted["compiled"]), int(counted["fallback"]), int(counted["sklearn"]),
                                        f"{fell_back * 100:.2f}%"]]))
    checks["labels equal to the model's own (every server timed), probabilities within 1e-6 (mlaas)"] = all(
        v for k, v in answers.items() if k not in peers_left_out)
    for peer, why_out in peers_left_out.items():
        tables.append(f"{family.name}: {peer} left out: {why_out}")
        print(tables[-1])
    return {"model": family.describe, "fast_path": why, "answers_equal": answers, "peers_left_out": peers_left_out,
            "runs": runs, "floors": floors,
            "summary": summary, "paths": counted, "fallback_share": fell_back, "targets": checks, "tables": tables}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (A B pairs) per configuration")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rows", default=",".join(map(str, ROWS)), help="payload sizes, e.g. 1,100")
    parser.add_argument("--concurrency", default=",".join(map(str, CONCURRENCY)), help="e.g. 8")
    parser.add_argument("--families", default=",".join(FAMILIES), help=f"of {', '.join(FAMILIES)}")
    parser.add_argument("--quiet-wait", type=float, default=120.0,
                        help="at most this many seconds before each round for the load to drop below 1.5")
    args = parser.parse_args(argv)
    chosen = [FAMILIES[f] for f in args.families.split(",")]

    from mlaas.settings import Settings
    from tests.integration.models import CATEGORICAL, NUMERIC

    info = common.announce()
    train, test = common.titanic()
    features = NUMERIC + CATEGORICAL
    sizes = [int(x) for x in args.rows.split(",")]
    stack, key = common.start_stack("inference", ("redis", "s3", "mlflow"))
    processes: list[common.Process] = []
    results: dict[str, Any] = {}
    try:
        os.environ.update(stack.env())
        bodies = {n: records(test[features], n) for n in sorted({*sizes, 100})}
        files = {}
        for n, body in bodies.items():
            files[n] = stack.config.path(f"body-{n}.json")
            files[n].write_text(json.dumps({"dataframe_records": body}))
        mlserver, mlserver_why = mlserver_peer.ensure()
        if mlserver is None:
            print(f"MLServer peer NOT available: {mlserver_why}", flush=True)
        data = {"mlserver": mlserver, "mlserver_why": mlserver_why, "settings": Settings.from_env(stack.env()),
                "train": train, "features": features, "sizes": sizes,
                "levels": [int(x) for x in args.concurrency.split(",")], "bodies": bodies, "files": files}
        variants = [("mlaas", {"MLAAS_CAPTURE_ENABLED": "true"}), ("mlaas-sklearn", {"MLAAS_FAST_PATH": "false"})]
        if any(f.extra_variants for f in chosen):
            variants += [("mlaas-nocapture", {"MLAAS_CAPTURE_ENABLED": "false"}),
                         ("mlaas-sync", {"MLAAS_CAPTURE_BATCH_SECONDS": "0"})]
        apis = []
        for variant, env in variants:
            process, url = common.start_api(stack, variant, env, workers=args.workers)
            processes.append(process)
            apis.append({"name": variant, "pid": process.pid, "base": url, "auth": f"Bearer {key}", "close": False,
                         "mlaas": True})
        for family in chosen:
            results[family.name] = run_family(family, stack, apis, data, args)
    finally:
        for process in processes:
            process.stop()
        stack.stop()

    overview = [[name, r["model"], key.replace("x", " / "),
                 common.fmt(common.median(e["vs_mlflow-close"]["rps_ratio_per_round"])),
                 common.fmt(common.median(e["vs_mlflow"]["rps_ratio_per_round"])),
                 common.fmt(common.median(e["vs_mlserver"]["rps_ratio_per_round"])),
                 common.fmt(common.median(e["mlaas-sklearn_vs_mlflow-close"]["rps_ratio_per_round"])),
                 f"{r['fallback_share'] * 100:.2f}%"]
                for name, r in results.items() for key, e in r["summary"].items()]
    table = common.print_table("All families: mlaas req/s over the peer's (median of the rounds)",
                               ["family", "model", "rows / conc.", "/ mlflow close", "/ mlflow as shipped",
                                "/ MLServer",
                                "generic path / mlflow close", "fell back"], overview)
    loads = [r["load"] for res in results.values() for r in res["runs"]]
    print(f"\nload average during the runs: median {common.median(loads):.2f}, max {max(loads):.2f}")
    common.save("inference", {"machine": info, "variants": VARIANTS, "seconds": args.seconds, "rounds": args.rounds,
                              "workers": args.workers, "families": results, "overview": table,
                              "load": {"median": common.median(loads), "max": max(loads)}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
