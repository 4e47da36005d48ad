#!/usr/bin/env python3
"""Where a serving API worker's CPU goes with inference capture on: sampled in the live server, under load.

Starts the local stack (Redis, SeaweedFS, MLflow) and the API as shipped (2 gunicorn workers, capture on, written
every 0.1 s), registers the benchmark's linear titanic model, and drives ``POST /inference`` with ``wrk`` (1-row or
100-row ``dataframe_records`` bodies, concurrency 8). While the load runs, ``py-spy record --nonblocking`` samples
every thread of each worker (CPU time only, idle threads left out); the share of samples with a capture frame
(``mlaas/monitoring/capture.py`` or ``mlaas/adapters/capture_buffer.py``: building the entry on the request thread,
writing the held entries on the writer thread) is the capture's share of the worker's CPU, measured in the server
rather than in a separate process (bench_inference.py's ``capture_cost``) or as a difference of two noisy runs.
py-spy counts the writer thread's ``time.sleep`` (a C call under a Python frame) as active; those samples are
left out. Other blocking calls it may count as active (socket writes and closes in gunicorn) stay in "everything
else", so the shares are, if anything, understated by them.

    flock /tmp/mlaas-integration.lock env PYTHONPATH=$PWD .venv/bin/python bench/profile_capture.py [--rows 1 100]

py-spy comes from the wheel at the repository root (``pip install py_spy-*.whl``; the script installs it if missing).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import common
from bench_inference import records, run_wrk
from families import FAMILIES

CAPTURE_FILES = ("mlaas/monitoring/capture.py", "mlaas/adapters/capture_buffer.py")
SLEEP_LEAF = "CaptureBuffer._flush_forever (mlaas/adapters/capture_buffer.py:242)"  # the line of its time.sleep


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        wheel = next(common.ROOT.glob("py_spy-*.whl"))
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", str(wheel)], check=True)
    return found


def sample(spy: str, pid: int, seconds: int, out: Path) -> None:
    subprocess.run([spy, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "250", "--nonblocking",
                    "--threads", "--format", "raw", "--output", str(out)], check=True, capture_output=True)


def shares(folded: Path) -> dict[str, float]:
    """Samples by what they were doing: capture on the request thread, capture on the writer thread, the rest."""
    counts: Counter[str] = Counter()
    for line in folded.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        if stack.rstrip().endswith(SLEEP_LEAF):
            continue  # the writer thread in its time.sleep between writes: idle, though py-spy samples it
        if "_flush_forever" in stack:
            counts["capture, writer thread"] += int(n)
        elif any(f in stack for f in CAPTURE_FILES):
            counts["capture, request thread"] += int(n)
        else:
            counts["everything else"] += int(n)
    total = sum(counts.values()) or 1
    return {k: counts[k] / total for k in ("capture, request thread", "capture, writer thread", "everything else")} | {
        "samples": float(total)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 100])
    parser.add_argument("--seconds", type=int, default=20, help="py-spy's sampling time per size (wrk runs 6 s more)")
    args = parser.parse_args(argv)
    spy = py_spy()
    from mlaas.settings import Settings
    from tests.integration.models import CATEGORICAL, NUMERIC

    info = common.announce()
    train, test = common.titanic()
    features = NUMERIC + CATEGORICAL
    stack, key = common.start_stack("profile-capture", ("redis", "s3", "mlflow"))
    process = None
    rows_out = []
    try:
        os.environ.update(stack.env())
        settings = Settings.from_env(stack.env())
        name = f"profile-capture-{int(time.time())}"
        version, _ = FAMILIES["linear"].register(settings, name, train[features], train["Survived"])
        process, base = common.start_api(stack, "capture-on", {"MLAAS_CAPTURE_ENABLED": "true"}, workers=2)
        url = f"{base}/inference?model={name}&version={version}"
        for n in args.rows:
            body = stack.config.path(f"body-{n}.json")
            body.write_text(json.dumps({"dataframe_records": records(test[features], n)}))
            run_wrk(url, body, connections=8, seconds=3, auth=f"Bearer {key}")  # warm both workers
            common.wait_quiet(max_wait=30)
            load: dict[str, object] = {}
            wrk = threading.Thread(target=lambda b=body, out=load: out.update(run_wrk(
                url, b, connections=8, seconds=args.seconds + 6, auth=f"Bearer {key}")))
            wrk.start()
            time.sleep(3)
            workers = common._children().get(process.pid, [])
            outs = [stack.config.path(f"spy-{n}-{pid}.txt") for pid in workers]
            spies = [threading.Thread(target=sample, args=(spy, pid, args.seconds, out))
                     for pid, out in zip(workers, outs, strict=True)]
            for t in spies:
                t.start()
            for t in spies:
                t.join()
            wrk.join()
            for pid, out in zip(workers, outs, strict=True):
                got = shares(out)
                capture = got["capture, request thread"] + got["capture, writer thread"]
                rows_out.append([n, pid, int(got["samples"]), f"{got['capture, request thread'] * 100:.2f}%",
                                 f"{got['capture, writer thread'] * 100:.2f}%", f"{capture * 100:.2f}%",
                                 f"{load.get('requests', 0) / (float(load.get('duration_us', 1)) / 1e6):,.0f}",
                                 load.get("errors", "-")])
                print(rows_out[-1], flush=True)
    finally:
        if process is not None:
            process.stop()
        stack.stop()
    table = common.print_table(
        "Capture's share of each API worker's CPU samples under load (py-spy, every thread, idle left out)",
        ["rows", "worker pid", "samples", "capture, request thread", "capture, writer thread", "capture, all",
         "req/s (both workers)", "errors"], rows_out)
    common.save("profile_capture", {"machine": info, "rows": rows_out, "table": table})
    return 0


if __name__ == "__main__":
    sys.exit(main())
