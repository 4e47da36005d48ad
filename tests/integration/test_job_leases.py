"""The job store's leases, fences, reaper, indexes and owners, against a real Redis of this module's own.

The store's clock (``jobstore._now``) is moved by hand, so a lease expires without waiting for it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import localstack
import pytest

from mlaas import jobs
from mlaas.adapters import jobstore
from mlaas.adapters.jobstore import JobStore, LeaseLost
from mlaas.context import Context
from mlaas.errors import IdempotencyKeyReused, NotFound
from mlaas.settings import Settings
from tests.waiting import wait_for

pytestmark = pytest.mark.integration
LEASE = 30


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = localstack.free_ports(1)[0]
    folder = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                             "--appendonly", "no", "--dir", str(folder)], stdout=subprocess.DEVNULL)
    try:
        url = f"redis://127.0.0.1:{port}/0"
        wait_for(lambda: socket.create_connection(("127.0.0.1", port), 1).close() or True, 20, "redis-server")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(jobstore, "_now", clock)
    return clock


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(redis_url=redis_url, redis_prefix=f"t{uuid.uuid4().hex[:8]}", job_lease_seconds=LEASE,
                    job_heartbeat_seconds=0.2)


@pytest.fixture
def store(settings: Settings) -> JobStore:
    return JobStore(settings)


def new_job(store: JobStore, job_type: str = "train", owner: str = "alice", **params: Any) -> str:
    record, created = store.create(job_type, {"model": "m", **params}, owner=owner)
    assert created
    return str(record["job_id"])


def test_a_lost_lease_is_reaped_once_and_the_old_attempt_can_no_longer_write(store, clock):
    job_id = new_job(store)
    assert store.acquire(job_id, holder="host-a:1") == ("ok", "1")
    assert store.acquire(job_id, holder="host-b:2")[0] == "busy"  # a redelivered message is not run twice
    clock.now += LEASE / 2
    assert store.renew(job_id, 1, "host-a:1")
    clock.now += LEASE - 1
    assert store.reap() == []  # renewed: still held
    clock.now += 2
    assert store.reap() == [(job_id, "train", "queued")]
    assert store.reap() == []  # a second reaper finds nothing to requeue
    assert store.acquire(job_id, holder="host-b:2") == ("ok", "2")

    with pytest.raises(LeaseLost):
        store.set_progress(job_id, "evaluate", 70, attempt=1)
    with pytest.raises(LeaseLost):
        store.transition(job_id, "succeeded", allowed_from=("running",), attempt=1, result={"stale": True})
    assert not store.renew(job_id, 1, "host-a:1")
    store.set_progress(job_id, "fit", 50, attempt=2)
    store.transition(job_id, "succeeded", allowed_from=("running",), attempt=2, result={"fresh": True})
    job = store.get(job_id)
    assert job["result"] == {"fresh": True} and job["progress"]["step"] == "fit"
    assert [(h["state"], h.get("attempt"), h.get("reason")) for h in job["history"]] == [
        ("queued", None, None), ("running", 1, None), ("queued", 1, "worker_lost"), ("running", 2, None),
        ("succeeded", 2, None)]


def test_a_job_that_loses_its_worker_every_time_fails_worker_lost_after_max_attempts(store, clock):
    job_id = new_job(store)
    for attempt in (1, 2, 3):
        assert store.acquire(job_id, holder=f"h:{attempt}") == ("ok", str(attempt))
        store.set_progress(job_id, "fit", 50, attempt=attempt)
        clock.now += LEASE + 1
        assert store.reap() == [(job_id, "train", "failed" if attempt == 3 else "queued")]
    job = store.get(job_id)
    assert job["state"] == "failed" and job["error"]["code"] == "worker_lost"
    assert "3 attempts" in job["error"]["message"] and "fit" in job["error"]["message"]
    assert [(h["state"], h.get("attempt"), h.get("reason")) for h in job["history"][1:]] == [
        ("running", 1, None), ("queued", 1, "worker_lost"), ("running", 2, None), ("queued", 2, "worker_lost"),
        ("running", 3, None), ("failed", 3, "worker_lost")]
    assert store.acquire(job_id, holder="h:4") == ("terminal", "failed")
    assert store.list(state="failed")[1] == 1 and store.list(state="running")[1] == 0


def test_a_dead_pool_process_of_this_host_is_taken_over_at_once(store, clock, settings):
    job_id = new_job(store)
    child = subprocess.Popen(["true"])
    child.wait()
    dead = jobs.holder_id(child.pid)
    assert store.acquire(job_id, holder=dead) == ("ok", "1")
    lease = jobs.take(job_id, ctx=Context(settings, {"jobs": store}))  # no waiting for the lease
    assert isinstance(lease, jobs.Lease) and lease.attempt == 2
    alive = new_job(store)
    assert store.acquire(alive, holder=jobs.holder_id(os.getppid())) == ("ok", "1")
    assert jobs.take(alive, ctx=Context(settings, {"jobs": store})) == "busy"


def test_the_heartbeat_keeps_a_long_job_leased_and_a_graceful_stop_queues_it_again(settings):
    store = JobStore(settings)
    ctx = Context(settings, {"jobs": store})
    job_id = new_job(store)
    first_until: list[float] = []
    renewed = threading.Event()

    def handler(job_id: str, params: dict[str, Any], progress: jobs.Progress) -> dict[str, Any]:
        first_until.append(float(store.redis.hget(store._key(job_id), "lease_until")))
        wait_for(lambda: float(store.redis.hget(store._key(job_id), "lease_until")) > first_until[0], 10,
                 "the heartbeat renewing the lease")
        renewed.set()
        return {"ok": True}

    assert jobs.run(job_id, handler, ctx=ctx) == "succeeded"
    assert renewed.is_set()
    assert store.redis.zscore(store._leases, job_id) is None  # a finished job holds no lease

    other = new_job(store)
    assert store.acquire(other, holder=jobs.holder_id(4242)) == ("ok", "1")
    sent: list[tuple[str, str]] = []

    class Queue:
        def submit(self, task: str, job_id: str) -> None:
            sent.append((task, job_id))

    assert jobs.requeue_stopped(other, "mlaas.train", 4242, ctx=Context(settings, {"jobs": store, "queue": Queue()}))
    assert sent == [("mlaas.train", other)]
    job = store.get(other)
    assert job["state"] == "queued" and job["history"][-1]["reason"] == "worker_stopped"


def test_listing_reads_the_index_of_its_filters_and_follows_each_transition(store, clock):
    ids = {}
    for n, (job_type, owner) in enumerate([("train", "alice"), ("drift", "alice"), ("train", "bob"),
                                           ("evaluate", "bob"), ("train", "alice")]):
        clock.now += 1
        ids[n] = new_job(store, job_type, owner, n=n)
    assert store.acquire(ids[0], holder="h:1")[0] == "ok"
    store.transition(ids[0], "succeeded", allowed_from=("running",), attempt=1, result={})
    store.transition(ids[2], "cancelled", allowed_from=("queued",))

    def listed(**filters: Any) -> tuple[list[str], int]:
        page, total = store.list(**filters)
        return [j["job_id"] for j in page], total

    assert listed() == ([ids[4], ids[3], ids[2], ids[1], ids[0]], 5)
    assert listed(limit=2, offset=1) == ([ids[3], ids[2]], 5)
    assert listed(job_type="train") == ([ids[4], ids[2], ids[0]], 3)
    assert listed(state="queued") == ([ids[4], ids[3], ids[1]], 3)
    assert listed(job_type="train", state="queued") == ([ids[4]], 1)
    assert listed(owner="alice") == ([ids[4], ids[1], ids[0]], 3)
    assert listed(owner="alice", job_type="train", state="succeeded") == ([ids[0]], 1)
    assert listed(owner="bob", state="cancelled") == ([ids[2]], 1)
    assert listed(owner="carol") == ([], 0)
    assert store.withdraw(ids[4], "train", None, "alice")
    assert listed(job_type="train", state="queued") == ([], 0) and listed()[1] == 4
    clock.now += store.ttl + 10  # past the TTL: pruned from the index a listing reads
    assert listed(job_type="drift") == ([], 0)


def test_owners_see_only_their_jobs_and_idempotency_keys_are_per_owner(store):
    job_id = new_job(store, owner="alice")
    with pytest.raises(NotFound):
        store.get(job_id, owner="bob")
    assert store.get(job_id, owner="alice")["owner"] == "alice"
    assert store.get(job_id)["job_id"] == job_id  # no owner given: an admin's view
    first, created = store.create("train", {"model": "m"}, idempotency_key="k1", owner="alice")
    again, created_again = store.create("train", {"model": "m"}, idempotency_key="k1", owner="alice")
    assert created and not created_again and again["job_id"] == first["job_id"]
    with pytest.raises(IdempotencyKeyReused) as reused:
        store.create("train", {"model": "other"}, idempotency_key="k1", owner="alice")
    assert reused.value.status == 422
    bobs, created = store.create("train", {"model": "other"}, idempotency_key="k1", owner="bob")
    assert created and bobs["job_id"] != first["job_id"]  # another key's use of it reveals nothing
