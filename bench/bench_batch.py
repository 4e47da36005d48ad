"""Batch scoring: POST /batch-inference rows/s against the same model's in-process predict over the same file,
and the worker's peak memory for a 1M- and a 10M-row file.

    flock /tmp/mlaas-integration.lock env PYTHONPATH=$PWD .venv/bin/python bench/bench_batch.py [--sizes N ...]

The files (titanic rows resampled, Parquet in row groups of 100,000) are generated here. Both sides are warm, as a
long-running worker and a notebook with its model loaded are:

- batch: one Celery worker (``--concurrency 1``, one long-lived pool process that caches loaded models as any
  worker does) first runs an untimed batch job of the same model on a small file, so the model is loaded before
  the timed jobs. A job's time counts from the POST to the job's success as seen by polling ``GET /jobs/<id>``:
  queueing, reading the file from storage, checking and scoring every chunk, and writing every part to storage.
  Its peak memory is the pool process's VmHWM after the job, reset to the current RSS before it (``clear_refs``).
- in-process (the target's peer): the model loaded with mlflow.sklearn, ``predict`` and ``predict_proba`` on the
  whole file read with pandas (1M rows), or million-row batch by batch (larger files); its time counts those two
  calls only, not the read. The "read + predict" column also counts reading the file (from local disk) with pandas.
"""

from __future__ import annotations

import argparse
import os
import sys
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
WARM_ROWS = 10_000  # the untimed job that loads the model


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


def peer_rows_per_s(estimator: Any, path: Path, features: list[str]) -> tuple[float, float, int]:
    """In-process predict + predict_proba over the file; returns (rows/s of the predict calls, rows/s of reading and
    predicting, rows)."""
    parquet = pq.ParquetFile(path)
    whole = parquet.metadata.num_rows <= 1_000_000
    frames = iter([pd.read_parquet(path)] if whole else (b.to_pandas() for b in parquet.iter_batches(1_000_000)))
    seconds, total, rows = 0.0, 0.0, 0
    while True:
        read_from = time.perf_counter()
        frame = next(frames, None)
        if frame is None:
            break
        X = frame[features]
        started = time.perf_counter()
        estimator.predict(X)
        estimator.predict_proba(X)
        seconds += time.perf_counter() - started
        total += time.perf_counter() - read_from
        rows += len(frame)
    return rows / seconds, rows / total, rows


def pool_process(worker_pid: int, timeout: float = 60.0) -> int:
    """The pid of the worker's one pool process (``--concurrency 1``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = Path(f"/proc/{worker_pid}/task/{worker_pid}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.2)
    raise RuntimeError("the worker started no pool process")


def reset_peak(pid: int) -> None:
    """Reset a process's peak resident size (VmHWM) to its current one (Linux: clear_refs 5)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def peak_mb(pid: int) -> float:
    """A process's peak resident size (VmHWM) in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(x for x in status.splitlines() if x.startswith("VmHWM:")).split()[1]) / 1024


def upload(ctx: Any, path: Path, uri: Any) -> None:
    with path.open("rb") as file:
        ctx.storage.put_stream(uri, file, length=path.stat().st_size, content_type="application/octet-stream")


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
                             "evaluate", "--concurrency", "1", "--loglevel", "WARNING"],
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
        warm = stack.config.path("data", "warm.parquet")
        warm.parent.mkdir(parents=True, exist_ok=True)
        generate(warm, WARM_ROWS, seed=1)
        warm_uri = S3Uri(settings.datasets_bucket, "bench/warm.parquet")
        upload(ctx, warm, warm_uri)
        run_job(api, base, {"model": name, "version": version, "dataset": str(warm_uri)})  # loads the model
        pool = pool_process(worker.pid)
        for rows in args.sizes:
            path = stack.config.path("data", f"rows-{rows}.parquet")
            path.parent.mkdir(parents=True, exist_ok=True)
            generate(path, rows)
            uri = S3Uri(settings.datasets_bucket, f"bench/rows-{rows}.parquet")
            upload(ctx, path, uri)
            print(f"{rows:,} rows: {path.stat().st_size / 2**20:.0f} MB uploaded", flush=True)
            load = common.wait_quiet(max_wait=60)
            peer, peer_with_read, peer_rows = peer_rows_per_s(estimator, path, features)
            reset_peak(pool)
            job, seconds = run_job(api, base, {"model": name, "version": version, "dataset": str(uri)})
            peak = peak_mb(pool)
            assert pool_process(worker.pid) == pool, "the pool process changed during the job"
            result = job["result"]
            assert result["rows"] == rows == peer_rows, result
            entry = {"rows": rows, "file_mb": round(path.stat().st_size / 2**20, 1), "load": round(load, 2),
                     "batch_s": round(seconds, 2), "batch_rows_per_s": round(rows / seconds),
                     "peer_rows_per_s": round(peer), "peer_read_predict_rows_per_s": round(peer_with_read),
                     "ratio": round(rows / seconds / peer, 3), "worker_peak_mb": round(peak),
                     "parts": result["files"]}
            rounds.append(entry)
            print(f"  batch {entry['batch_rows_per_s']:,} rows/s ({seconds:.1f} s), in-process predict "
                  f"{entry['peer_rows_per_s']:,} rows/s (read + predict {peer_with_read:,.0f}): ratio "
                  f"{entry['ratio']:.2f}; worker peak "
                  f"{entry['worker_peak_mb']} MB", flush=True)
            path.unlink()
    finally:
        if worker is not None:
            worker.stop()
        stack.stop()

    table = common.print_table("Batch scoring vs in-process predict (same model, same file)",
                               ["rows", "file MB", "batch rows/s", "in-process predict rows/s",
                                "in-process read + predict rows/s", "ratio (to predict)", "worker peak MB"],
                               [[f"{r['rows']:,}", r["file_mb"], f"{r['batch_rows_per_s']:,}",
                                 f"{r['peer_rows_per_s']:,}", f"{r['peer_read_predict_rows_per_s']:,}",
                                 f"{r['ratio']:.2f}", r["worker_peak_mb"]]
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
