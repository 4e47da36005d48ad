"""Train jobs against a bare Celery round trip and against a plain script doing the same steps, in one run.

The local stack runs with its Celery workers (one process per queue, as shipped) and its API. Each
round submits a train job of the titanic model through POST /train, runs a plain script that does the
same steps with the same content (splits, files, params, metrics, tags) in this (warm) process with the
libraries directly, and times bare Celery round trips of a trivial task (a worker with mlaas's broker
settings and a Redis result backend). Submit -> running is measured as a user sees it: from the
client's POST /train (a clock read just before sending it) to the moment the worker marked the job
running (from the job record; the client and the worker share this machine's clock). The part from
the record's creation (the API wrote it and published the task) is shown beside it.

Run: python bench/bench_jobs.py [--rounds 8]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from typing import Any

import common
import numpy as np
import pandas as pd
import requests

CELERY_ROUND_TRIPS = 30


def plain_script(storage: Any, settings: Any, name: str, source_version: int, bucket: str, prefix: str,
                 run_no: int) -> dict[str, float]:
    """What a notebook user would write to retrain and register the model, with the same content as the
    job (splits, files, params, metrics, tags); returns seconds per step."""
    import hashlib

    import mlflow
    import yaml
    from mlflow.models import infer_signature
    from sklearn import metrics
    from sklearn.base import clone
    from sklearn.model_selection import train_test_split

    from mlaas.uris import S3Uri

    steps: dict[str, float] = {}
    clock = time.perf_counter()

    def step(label: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        steps[label] = now - clock
        clock = now

    raw_config = storage.get_bytes(S3Uri(bucket, f"{prefix}/data_config.yaml"))
    config = yaml.safe_load(raw_config)
    raw = storage.get_bytes(S3Uri(bucket, f"{prefix}/titanic.csv"))
    frame = pd.read_csv(io.BytesIO(raw))
    source = mlflow.sklearn.load_model(f"models:/{name}/{source_version}")
    step("download")
    features, target = config["numerical_features"] + config["categorical_features"], config["target_column"]
    rows = frame[config["index_columns"] + features + [target]]
    rest, baseline = train_test_split(rows, test_size=settings.drift_fraction, stratify=rows[target], random_state=0)
    share = settings.test_fraction / (1 - settings.drift_fraction)
    train, test = train_test_split(rest, test_size=share, stratify=rest[target], random_state=0)
    step("split")
    folder = f"plain/{name}/{run_no}"
    for part, data in (("baseline", baseline), ("holdout", test)):
        buffer = io.BytesIO()
        data.to_parquet(buffer)
        storage.put_bytes(S3Uri(settings.drift_bucket, f"{folder}/{part}.parquet"), buffer.getvalue())
    storage.put_bytes(S3Uri(settings.drift_bucket, f"{folder}/data_config.yaml"), raw_config)
    step("baseline_upload")
    model = clone(source).fit(train[features], train[target])
    step("fit")
    predicted = model.predict(test[features])
    proba = model.predict_proba(test[features])
    scores = {"accuracy": metrics.accuracy_score(test[target], predicted),
              "precision_macro": metrics.precision_score(test[target], predicted, average="macro"),
              "recall_macro": metrics.recall_score(test[target], predicted, average="macro"),
              "f1_macro": metrics.f1_score(test[target], predicted, average="macro"),
              "f1_weighted": metrics.f1_score(test[target], predicted, average="weighted"),
              "roc_auc": metrics.roc_auc_score(test[target], proba[:, 1]),
              "log_loss": metrics.log_loss(test[target], proba)}
    step("evaluate")
    dataset = f"s3://{bucket}/{prefix}/titanic.csv"
    baseline_uri = f"s3://{settings.drift_bucket}/{folder}/baseline.parquet"
    mlflow.set_experiment(f"plain/{name}")
    with mlflow.start_run(run_name=f"plain_{run_no}") as run:
        mlflow.log_params({"source_model": name, "source_version": source_version, "dataset": dataset,
                           "dataset_sha256": hashlib.sha256(raw).hexdigest(), "data_config": prefix,
                           "test_dataset": f"s3://{settings.drift_bucket}/{folder}/holdout.parquet",
                           "baseline": baseline_uri, "task": "classification",
                           "drift_fraction": settings.drift_fraction, "test_fraction": settings.test_fraction,
                           "random_state": 0, "rows": len(frame), "rows_train": len(train),
                           "rows_baseline": len(baseline), "rows_test": len(test), "test_set": "holdout"})
        mlflow.log_metrics(scores)
        mlflow.log_dict(config, "data_config.json")
        step("log")
        head = train[features].head(5)
        info = mlflow.sklearn.log_model(model, name="model", signature=infer_signature(head, model.predict(head)),
                                        input_example=head, pip_requirements=["scikit-learn", "skops", "pandas"],
                                        serialization_format="skops", skops_trusted_types=["numpy.dtype"])
        step("register")
        tags = {"stage": "staging", "drift-data": baseline_uri, "dataset": dataset, "data_config": prefix,
                "test_dataset": f"s3://{settings.drift_bucket}/{folder}/holdout.parquet",
                "source_version": str(source_version), "job_id": f"plain-{run_no}", "task": "classification",
                "run_name": run.info.run_name}
        mlflow.register_model(info.model_uri, name, tags=tags)  # tagged as it is created, as the job does
    step("tag")
    return steps


def job_times(redis: Any, prefix: str, job_id: str) -> dict[str, float]:
    record = redis.hgetall(f"{prefix}:job:{job_id}")
    return {k: float(record[k]) for k in ("created_at", "started_at", "finished_at") if record.get(k)}


def celery_round_trips(echo: Any, count: int) -> list[float]:
    out = []
    for i in range(count):
        started = time.perf_counter()
        assert echo.apply_async((i,), queue="bench-echo").get(timeout=30) == i
        out.append(time.perf_counter() - started)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args(argv)

    import redis as redis_lib

    from mlaas.context import Context
    from mlaas.settings import Settings
    from mlaas.uris import S3Uri
    from tests.integration.models import CATEGORICAL, NUMERIC, register, titanic_pipeline

    info = common.machine()
    print(f"machine: {info['cores']} cores, {info['cpu']}, load {info['load_at_start']}", flush=True)
    stack, key = common.start_stack("jobs", ("redis", "s3", "mlflow", "workers", "api"))
    processes: list[common.Process] = []
    try:
        env = stack.env()
        os.environ.update(env)
        settings = Settings.from_env(env)
        ctx = Context(settings)
        data = common.ROOT / "examples" / "data" / "titanic"
        bucket, prefix = settings.datasets_bucket, "bench/titanic"
        for local, remote in (("titanic.csv", "titanic.csv"), ("data_config.yaml", "data_config.yaml")):
            ctx.storage.put_bytes(S3Uri(bucket, f"{prefix}/{remote}"), (data / local).read_bytes())
        train = pd.read_csv(data / "titanic.csv")
        name = f"bench-jobs-{int(time.time())}"
        source_version = register(settings, name, titanic_pipeline(), train[NUMERIC + CATEGORICAL], train["Survived"])

        echo_worker = common.Process(
            "celery-echo", [sys.executable, "-m", "celery", "-A", "celery_echo:app", "worker", "-Q", "bench-echo",
                            "--concurrency", "1", "--loglevel", "WARNING"],
            env={**os.environ, **env, "PYTHONPATH": str(common.ROOT)}, cwd=common.ROOT / "bench",
            log=stack.config.path("logs", "celery-echo.log"))
        processes.append(echo_worker)
        sys.path.insert(0, str(common.ROOT / "bench"))
        from celery_echo import echo

        celery_round_trips(echo, 3)  # waits for the worker, then warms it

        api = requests.Session()
        api.headers["Authorization"] = f"Bearer {key}"
        base = stack.config.url("api")
        redis = redis_lib.Redis.from_url(settings.redis_url, decode_responses=True)
        body = {"model": name, "version": source_version, "dataset": f"s3://{bucket}/{prefix}/titanic.csv",
                "data_config": f"s3://{bucket}/{prefix}/data_config.yaml", "random_state": 0}

        def train_job() -> dict[str, Any]:
            posted = time.time()
            response = api.post(f"{base}/train", json=body, timeout=60)
            response.raise_for_status()
            job_id = response.json()["job_id"]
            deadline = time.monotonic() + 300
            while True:
                job = api.get(f"{base}/jobs/{job_id}", timeout=30).json()
                if job["state"] in ("succeeded", "failed", "cancelled"):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"job {job_id} still {job['state']}")
                time.sleep(0.05)
            if job["state"] != "succeeded":
                raise RuntimeError(f"job {job_id} {job['state']}: {job.get('error')}")
            times = job_times(redis, settings.redis_prefix, job_id)
            return {"posted": posted, **times, "dispatch_s": times["started_at"] - posted,
                    "record_to_running_s": times["started_at"] - times["created_at"],
                    "post_to_succeeded_s": times["finished_at"] - posted,
                    "running_s": times["finished_at"] - times["started_at"]}

        print("warming up: one job, one plain run", flush=True)
        train_job()
        plain_script(ctx.storage, settings, name, source_version, bucket, prefix, run_no=-1)

        rounds = []
        for round_no in range(args.rounds):
            load = common.wait_quiet(max_wait=20)
            order = ["job", "plain", "celery"] if round_no % 2 == 0 else ["celery", "plain", "job"]
            entry: dict[str, Any] = {"round": round_no, "load": round(load, 2)}
            for what in order:
                if what == "job":
                    entry["job"] = train_job()
                elif what == "plain":
                    started = time.perf_counter()
                    entry["plain_steps"] = plain_script(ctx.storage, settings, name, source_version, bucket, prefix,
                                                        run_no=round_no)
                    entry["plain_s"] = time.perf_counter() - started
                else:
                    entry["celery_s"] = celery_round_trips(echo, CELERY_ROUND_TRIPS)
            rounds.append(entry)
            print(f"  round {round_no + 1}: dispatch {entry['job']['dispatch_s'] * 1e3:6.1f} ms, "
                  f"celery p50 {np.median(entry['celery_s']) * 1e3:5.2f} ms, "
                  f"job {entry['job']['post_to_succeeded_s']:.2f} s, plain {entry['plain_s']:.2f} s, load {load:.2f}",
                  flush=True)
    finally:
        for process in processes:
            process.stop()
        stack.stop()

    tables, checks, summary = report(rounds)
    common.save("jobs", {"machine": info, "rounds": rounds, "summary": summary, "targets": checks, "tables": tables})
    return 0


def report(rounds: list[dict[str, Any]]) -> tuple[list[str], dict[str, bool], dict[str, Any]]:
    celery = [x for r in rounds for x in r["celery_s"]]
    dispatch = [r["job"]["dispatch_s"] for r in rounds]
    from_record = [r["job"]["record_to_running_s"] for r in rounds]
    overheads = [(r["job"]["post_to_succeeded_s"] - r["plain_s"]) / r["plain_s"] for r in rounds]
    summary = {
        "celery_p50_ms": common.median(celery) * 1e3, "celery_p90_ms": float(np.percentile(celery, 90)) * 1e3,
        "dispatch_p50_ms": common.median(dispatch) * 1e3, "dispatch_max_ms": max(dispatch) * 1e3,
        "record_to_running_p50_ms": common.median(from_record) * 1e3,
        "job_p50_s": common.median([r["job"]["post_to_succeeded_s"] for r in rounds]),
        "job_running_p50_s": common.median([r["job"]["running_s"] for r in rounds]),
        "plain_p50_s": common.median([r["plain_s"] for r in rounds]),
        "overhead_per_round": overheads, "overhead_p50": common.median(overheads),
    }
    tables = [common.print_table(
        "Dispatch: submit -> running against a bare Celery round trip (same run)",
        ["bare Celery round trip p50 ms", "p90 ms", "submit -> running p50 ms (client POST -> running)",
         "max ms", "ratio (p50 / Celery p50)", "of which record created -> running, p50 ms"],
        [[common.fmt(summary["celery_p50_ms"]), common.fmt(summary["celery_p90_ms"]),
          common.fmt(summary["dispatch_p50_ms"]), common.fmt(summary["dispatch_max_ms"]),
          common.fmt(summary["dispatch_p50_ms"] / summary["celery_p50_ms"]),
          common.fmt(summary["record_to_running_p50_ms"])]])]
    steps = sorted({k for r in rounds for k in r["plain_steps"]}, key=list(rounds[0]["plain_steps"]).index)
    tables.append(common.print_table(
        "Train job (titanic) against a plain script doing the same steps, pair by pair",
        ["round", "job: POST -> succeeded s", "of which running s", "plain script s", "overhead", "load"],
        [[r["round"] + 1, common.fmt(r["job"]["post_to_succeeded_s"]), common.fmt(r["job"]["running_s"]),
          common.fmt(r["plain_s"]), f"{o * 100:+.0f}%", r["load"]] for r, o in zip(rounds, overheads, strict=True)]
        + [["median", common.fmt(summary["job_p50_s"]), common.fmt(summary["job_running_p50_s"]),
            common.fmt(summary["plain_p50_s"]), f"{summary['overhead_p50'] * 100:+.0f}%", ""]]))
    tables.append(common.print_table(
        "Plain script: median seconds per step", steps,
        [[common.fmt(common.median([r["plain_steps"][s] for r in rounds]), 3) for s in steps]]))
    checks = {
        "submit (client POST) -> running p50 <= 3x a bare Celery round trip":
            summary["dispatch_p50_ms"] <= 3 * summary["celery_p50_ms"],
        "train job overhead over the plain script <= 25% (median of the pairs)": summary["overhead_p50"] <= 0.25,
    }
    tables.append(common.print_table("Targets", ["target", "result"],
                                     [[k, common.verdict(v)] for k, v in checks.items()]))
    return tables, checks, summary


if __name__ == "__main__":
    sys.exit(main())
