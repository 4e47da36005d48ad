"""A running job waits for Redis instead of failing, within MLAAS_JOB_REDIS_WAIT_SECONDS (PatientJobStore)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from mlaas import jobs
from mlaas.adapters import jobstore
from mlaas.adapters.jobstore import PatientJobStore, patiently
from mlaas.context import Context
from mlaas.errors import Unavailable
from mlaas.settings import Settings


class FlakyJobs:
    """A job store that is down (raises Unavailable) for its first ``failures`` calls."""

    def __init__(self, failures: int, dependency: str = "redis") -> None:
        self.failures = failures
        self.dependency = dependency
        self.calls = 0
        self.record: dict[str, Any] = {"job_id": "j1", "type": "train", "state": "queued", "params": {}, "attempts": 0}
        self.steps: list[str] = []

    def _call(self) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise Unavailable(self.dependency, f"{self.dependency} does not answer (ConnectionError)")

    @property
    def impatient(self) -> FlakyJobs:
        return self

    def state(self, job_id: str) -> str:
        self._call()
        return str(self.record["state"])

    def holder(self, job_id: str) -> str | None:
        self._call()
        return None

    def acquire(self, job_id: str, *, holder: str, dead_holder: str = "") -> tuple[str, str]:
        self._call()
        self.record.update(state="running", attempts=self.record["attempts"] + 1)
        return "ok", str(self.record["attempts"])

    def renew(self, job_id: str, attempt: int, holder: str) -> bool:
        return True

    def release(self, job_id: str, holder: str, reason: str) -> bool:
        self._call()
        self.record["state"] = "queued"
        return True

    def transition(self, job_id: str, to: str, *, allowed_from: tuple[str, ...], attempt: int | None = None,
                   **fields: Any) -> str:
        self._call()
        previous = self.record["state"]
        self.record.update(state=to, **fields)
        return str(previous)

    def get(self, job_id: str) -> dict[str, Any]:
        self._call()
        return dict(self.record)

    def set_progress(self, job_id: str, step: str, percent: int, *, attempt: int) -> str:
        self._call()
        self.steps.append(step)
        return str(self.record["state"])


def context(store: FlakyJobs, wait: float) -> Context:
    """A worker's context over ``store``: its job store waits ``wait`` seconds for Redis."""
    return Context(Settings(), {"jobs": PatientJobStore(store, wait)})  # type: ignore[arg-type]


def handler(job_id: str, params: dict[str, Any], progress: jobs.Progress) -> dict[str, Any]:
    progress("fit", 50)
    progress("evaluate", 70)
    return {"ok": True}


def test_a_job_waits_for_redis_and_carries_on_with_one_attempt():
    store = FlakyJobs(failures=2)
    assert jobs.run("j1", handler, ctx=context(store, wait=30)) == "succeeded"
    assert store.record["state"] == "succeeded" and store.record["attempts"] == 1
    assert store.steps == ["fit", "evaluate"]


class Clock:
    """Stands in for the time module in the job store: sleeping moves the clock on at once."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def test_past_the_wait_redis_unavailable_is_raised_and_nothing_is_recorded_as_failed(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(jobstore, "time", clock)
    store = FlakyJobs(failures=10**6)
    with pytest.raises(Unavailable) as raised:
        jobs.run("j1", handler, ctx=context(store, wait=4.0))
    assert raised.value.dependency == "redis"
    assert clock.slept == [0.5, 1.0, 2.0]  # backing off, and giving up rather than sleeping past the wait
    assert store.calls == 4
    assert store.record["state"] == "queued"


def test_other_dependencies_are_not_waited_for():
    store = FlakyJobs(failures=1, dependency="s3")
    with pytest.raises(Unavailable):
        patiently(lambda: store.state("j1"), 30)
    assert store.calls == 1


def test_redis_unavailable_inside_the_handler_retries_and_fails_the_job_on_the_final_attempt():
    def needs_redis(job_id: str, params: dict[str, Any], progress: jobs.Progress) -> dict[str, Any]:
        raise Unavailable("redis", "redis does not answer (ConnectionError)")

    store = FlakyJobs(failures=0)
    with pytest.raises(Unavailable):
        jobs.run("j1", needs_redis, ctx=context(store, wait=0), final_attempt=False)
    assert store.record["state"] == "queued"  # given back: the task retries it with backoff
    store = FlakyJobs(failures=0)
    assert jobs.run("j1", needs_redis, ctx=context(store, wait=0), final_attempt=True) == "failed"
    assert store.record["state"] == "failed"


def test_a_retry_the_broker_refuses_requeues_the_message_instead_of_dropping_it():
    from celery.exceptions import Reject, Retry

    from worker.tasks import _retry

    class Refused:
        def retry(self, **_: Any) -> Exception:
            raise Reject(ConnectionError("Error 111 connecting"), requeue=False)  # what Task.retry does

    class Accepted:
        def retry(self, **_: Any) -> Exception:
            raise Retry("retry in 2 s")

    requeued = _retry(Refused(), "job j1", countdown=2, max_retries=3)
    assert isinstance(requeued, Reject) and requeued.requeue
    with pytest.raises(Retry):
        _retry(Accepted(), "job j1", countdown=2, max_retries=3)
