"""Batch scoring: POST /batch-inference rows/s against the same model's in-process predict over the same file,
and the worker's peak memory for a 1M- and a 10M-row file.

    flock /tmp/mlaas-integration.lock env PYTHONPATH=$PWD .venv/bin/python bench/bench_batch.py [--sizes N ...]

The files (titanic rows resampled, Parquet in row groups of 100,000) are generated here. The job runs in a worker of
its own (``--max-tasks-per-child 1``: a fresh pool process per job, so each job's peak memory is its own); its peak
is the pool process's VmHWM. The peer loads the model with mlflow.sklearn and calls ``predict`` and
``predict_proba`` on the whole file read with pandas (1M rows), or row group by row group (larger files), in this
process; its time counts the predict calls only. The job's time counts from the POST to the job's success.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import common
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import requests

TARGET_RATIO = 0.8
ROW_GROUP = 100_000


def generate(path: Path, rows: int, seed: int = 0) -> None:
    """A Parquet file of ``rows`` titanic-like rows (resampled, with noise), written one row group at a time."""
    titanic = pd.read_csv(common.ROOT / "examples" / "data" / "titanic" / "titanic.csv")
    rng = np.random.default_rng(seed)
    writer = None
    for start in range(0, rows, ROW_GROUP):
        n = min(ROW_GROUP, rows - start)
        block = titanic.iloc[rng.integers(0, len(titanic), n)].reset_index(drop=True)
        block["PassengerId"] = np.arange(start + 1, start + n + 1)
        block["Age"] = (block["Age"] + rng.normal(0, 2, n)).clip(0.5, 90)
        block["Fare"] = (block["Fare"] * rng.uniform(0.9, 1.1, n)).round(4)
        table = pa.Table.from_pandas(block.drop(columns=["Name", "Ticket", "Cabin"], errors="ignore"),
                                     preserve_index=False)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=ROW_GROUP)
    assert writer is not None
    writer.close()


def peer_rows_per_s(estimator: Any, path: Path, features: list[str]) -> tuple[float, int]:
    """In-process predict + predict_proba over the file; returns (rows/s of the predict calls, rows)."""
    parquet = pq.ParquetFile(path)
    whole = parquet.metadata.num_rows <= 1_000_000
    frames = [pd.read_parquet(path)] if whole else (b.to_pandas() for b in parquet.iter_batches(1_000_000))
    seconds, rows = 0.0, 0
    for frame in frames:
        X = frame[features]
        started = time.perf_counter()
        estimator.predict(X)
        estimator.predict_proba(X)
        seconds += time.perf_counter() - started
        rows += len(frame)
    return rows / seconds, rows


class PeakMemory:
    """Polls the VmHWM (peak RSS) of every child of a process while a job runs."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak_kb, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        while not self._stop.wait(0.1):
            for child in Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split():
                try:
                    status = Path(f"/proc/{child}/status").read_text()
                except OSError:
                    continue
                line = next((x for x in status.splitlines() if x.startswith("VmHWM:")), "")
                if line:
                    self.peak_kb = max(self.peak_kb, int(line.split()[1]))


def run_job(api: requests.Session, base: str, body: dict[str, Any]) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    response = api.post(f"{base}/batch-inference", json=body, timeout=60)
    response.raise_for_status()
    job_id = response.json()["job_id"]
    while True:
        job = api.get(f"{base}/jobs/{job_id}", timeout=30).json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.2)
    if job["state"] != "succeeded":
        raise RuntimeError(f"batch job {job_id} {job['state']}: {job.get('error')}")
    return job, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    args = parser.parse_args(argv)

    import mlflow

    from mlaas.context import Context
    from mlaas.settings import Settings
    from mlaas.uris import S3Uri
    from tests.integration.models import CATEGORICAL, NUMERIC, register, titanic_pipeline

    info = common.machine()
    print(f"machine: {info['cores']} cores, {info['cpu']}, load {info['load_at_start']}", flush=True)
    stack, key = common.start_stack("batch", ("redis", "s3", "mlflow", "api"))
    worker = None
    rounds = []
    try:
        env = stack.env()
        os.environ.update(env)
        settings = Settings.from_env(env)
        ctx = Context(settings)
        worker = common.Process(
            "worker-batch", [sys.executable, "-m", "celery", "-A", "worker.celery_app:app", "worker", "-Q",
                             "evaluate", "--concurrency", "1", "--max-tasks-per-child", "1", "--loglevel", "WARNING"],
            env={**os.environ, **env, "PYTHONPATH": str(common.ROOT)}, log=stack.config.path("logs", "bench.log"))
        titanic = pd.read_csv(common.ROOT / "examples" / "data" / "titanic" / "titanic.csv")
        features = NUMERIC + CATEGORICAL
        name = f"bench-batch-{int(time.time())}"
        version = register(settings, name, titanic_pipeline(), titanic[features], titanic["Survived"])
        mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
        estimator = mlflow.sklearn.load_model(f"models:/{name}/{version}")
        api = requests.Session()
        api.headers["Authorization"] = f"Bearer {key}"
        base = stack.config.url("api")
        for rows in args.sizes:
            path = stack.config.path("data", f"rows-{rows}.parquet")
            path.parent.mkdir(parents=True, exist_ok=True)
            generate(path, rows)
            uri = S3Uri(settings.datasets_bucket, f"bench/rows-{rows}.parquet")
            with path.open("rb") as file:
                ctx.storage.put_stream(uri, file, length=path.stat().st_size, content_type="application/octet-stream")
            print(f"{rows:,} rows: {path.stat().st_size / 2**20:.0f} MB uploaded", flush=True)
            load = common.wait_quiet(max_wait=60)
            peer, peer_rows = peer_rows_per_s(estimator, path, features)
            with PeakMemory(worker.pid) as memory:
                job, seconds = run_job(api, base, {"model": name, "version": version, "dataset": str(uri)})
            result = job["result"]
            assert result["rows"] == rows == peer_rows, result
            entry = {"rows": rows, "file_mb": round(path.stat().st_size / 2**20, 1), "load": round(load, 2),
                     "batch_s": round(seconds, 2), "batch_rows_per_s": round(rows / seconds),
                     "peer_rows_per_s": round(peer), "ratio": round(rows / seconds / peer, 3),
                     "worker_peak_mb": round(memory.peak_kb / 1024), "parts": result["files"]}
            rounds.append(entry)
            print(f"  batch {entry['batch_rows_per_s']:,} rows/s ({seconds:.1f} s), in-process predict "
                  f"{entry['peer_rows_per_s']:,} rows/s: ratio {entry['ratio']:.2f}; worker peak "
                  f"{entry['worker_peak_mb']} MB", flush=True)
            path.unlink()
    finally:
        if worker is not None:
            worker.stop()
        stack.stop()

    table = common.print_table("Batch scoring vs in-process predict (same model, same file)",
                               ["rows", "file MB", "batch rows/s", "in-process rows/s", "ratio", "worker peak MB"],
                               [[f"{r['rows']:,}", r["file_mb"], f"{r['batch_rows_per_s']:,}",
                                 f"{r['peer_rows_per_s']:,}", f"{r['ratio']:.2f}", r["worker_peak_mb"]]
                                for r in rounds])
    peaks = [r["worker_peak_mb"] for r in rounds]
    checks = {"rows_per_s_ratio": all(r["ratio"] >= TARGET_RATIO for r in rounds),
              "memory_flat": max(peaks) <= 1.25 * min(peaks)}
    print(f"\nrows/s ≥ {TARGET_RATIO}× in-process: {common.verdict(checks['rows_per_s_ratio'])}; "
          f"peak memory within 25% across sizes ({', '.join(map(str, peaks))} MB): "
          f"{common.verdict(checks['memory_flat'])}")
    common.save("batch", {"machine": info, "rounds": rounds, "targets": checks, "tables": [table]})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
