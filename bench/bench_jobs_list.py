"""GET /jobs with 100,000 job records: the indexed listing against the old full scan, in one run.

The local stack's Redis and API run; job records are written through the job store (types, states and
owners mixed, as many users would leave them). Timed: ``GET /jobs?limit=50`` (and with filters) through the
API, and in this process the store's indexed listing against the full scan it replaces (read every job
id of the window, fetch each one's type and state, then the page), over the same records.

Run: python bench/bench_jobs_list.py [--jobs 100000] [--requests 300]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import common
import requests

TARGET_P99_MS = 50.0
OWNERS = ("alice", "bob", "carol", "dave")
TYPES = ("train", "evaluate", "drift")


def full_scan(store: Any, *, job_type: str | None, state: str | None, limit: int, offset: int = 0) -> int:
    """The listing before the indexes: every id of the window, each one's type and state, then the page."""
    ids = [str(job_id) for job_id in store.redis.zrevrange(f"{store.prefix}:jobs", 0, -1)]
    pipe = store.redis.pipeline()
    for job_id in ids:
        pipe.hmget(store._key(job_id), "type", "state")
    heads = pipe.execute()
    matching = [job_id for job_id, (t, s) in zip(ids, heads, strict=True)
                if t is not None and (job_type is None or t == job_type) and (state is None or s == state)]
    for job_id in matching[offset:offset + limit]:
        store.get(job_id)
    return len(matching)


def fill(store: Any, count: int) -> None:
    """Write ``count`` job records and move them to a mix of states, as finished work leaves them."""
    rng = random.Random(7)
    started = time.monotonic()
    for n in range(count):
        record, _ = store.create(rng.choice(TYPES), {"model": f"m{n % 50}", "n": n}, owner=rng.choice(OWNERS))
        roll = rng.random()
        if roll < 0.9:
            job_id = record["job_id"]
            status, attempt = store.acquire(job_id, holder="bench:1")
            if roll < 0.85:
                store.transition(job_id, "succeeded" if roll < 0.75 else "failed", allowed_from=("running",),
                                 attempt=int(attempt), result={"n": n})
        if n and n % 20000 == 0:
            print(f"  {n} records in {time.monotonic() - started:.0f} s", flush=True)


def percentiles(samples: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(samples, n=100)
    return statistics.median(samples), cuts[98]


def timed(call: Callable[[], Any], rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        started = time.perf_counter()
        call()
        out.append((time.perf_counter() - started) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--scans", type=int, default=10)
    args = parser.parse_args()

    from mlaas.adapters.jobstore import JobStore
    from mlaas.settings import Settings

    stack, key = common.start_stack("jobs-list", ("redis", "s3", "mlflow", "api"))
    try:
        settings = Settings.from_env(stack.env())
        store = JobStore(settings)
        fill(store, args.jobs)
        url = stack.config.url("api")
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {key}"
        rows, result = [], {"machine": common.machine(), "jobs": args.jobs}
        for label, params, filters in (
            ("GET /jobs?limit=50", {"limit": 50}, {}),
            ("GET /jobs?type=train&state=failed&limit=50", {"type": "train", "state": "failed", "limit": 50},
             {"job_type": "train", "state": "failed"}),
        ):
            session.get(f"{url}/jobs", params=params).raise_for_status()
            api = timed(lambda p=params: session.get(f"{url}/jobs", params=p).raise_for_status(), args.requests)
            indexed = timed(lambda f=filters: store.list(limit=50, **f), args.requests)
            scan = timed(lambda f=filters: full_scan(store, limit=50, job_type=f.get("job_type"),
                                                    state=f.get("state")), args.scans)
            (api50, api99), (ix50, ix99), (sc50, sc99) = (percentiles(api), percentiles(indexed),
                                                          percentiles(scan))
            rows.append([label, common.fmt(api50), common.fmt(api99), common.fmt(ix50), common.fmt(sc50),
                         f"{sc50 / ix50:.0f}x", common.verdict(api99 < TARGET_P99_MS)])
            result[label] = {"api_p50_ms": api50, "api_p99_ms": api99, "indexed_p50_ms": ix50, "indexed_p99_ms": ix99,
                             "full_scan_p50_ms": sc50, "full_scan_p99_ms": sc99, "ratio": sc50 / ix50}
        common.print_table(f"Listing jobs, {args.jobs:,} records (ms)", [
            "request", "API p50", "API p99", "store, indexed p50", "store, full scan p50", "scan / indexed",
            f"p99 < {TARGET_P99_MS:.0f} ms"], rows)
        common.save("jobs_list", result)
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
