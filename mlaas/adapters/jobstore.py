"""Job records in Redis: written at submission, moved through states by the worker, kept for a TTL."""

from __future__ import annotations

import builtins
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import redis

from mlaas.adapters import jobscripts
from mlaas.adapters.redis import connect, redis_errors, text
from mlaas.errors import Conflict, IdempotencyKeyReused, NotFound, Unavailable
from mlaas.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

STATES = ("queued", "running", "succeeded", "failed", "cancelled")
TERMINAL = ("succeeded", "failed", "cancelled")


class LeaseLost(Exception):
    """The attempt writing to a job no longer holds it: its lease expired and the job was given to another."""

def _now() -> float:
    return time.time()


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


class JobStore:
    """Create, read, list and transition job records; lease running jobs to the attempt that runs them."""

    def __init__(self, settings: Settings, client: redis.Redis | None = None) -> None:
        self.redis = client or connect(settings)
        self.prefix = settings.redis_prefix
        self.ttl = settings.job_ttl_seconds
        self.lease_seconds = settings.job_lease_seconds
        self.max_attempts = settings.job_max_attempts
        self.socket_timeout = settings.redis_socket_timeout
        self._skew = 0.0  # how far Redis's clock was seen ahead of this process's
        self._scripts = {name: self.redis.register_script(getattr(jobscripts, name.upper()))
                         for name in ("transition", "create", "withdraw", "acquire", "renew", "progress", "release",
                                      "reap")}

    @property
    def impatient(self) -> JobStore:
        """This store (the patient wrapper's calls wait for Redis; the heartbeat's must not)."""
        return self

    def _key(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def _hist(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:history"

    @property
    def _base(self) -> str:
        return f"{self.prefix}:jobs"

    @property
    def _leases(self) -> str:
        return f"{self.prefix}:job-leases"

    def index_key(self, *, owner: str | None = None, job_type: str | None = None, state: str | None = None) -> str:
        """The sorted set listing the jobs that match these filters (the scripts keep it, see jobscripts)."""
        key = self._base
        for tag, value in (("o", owner), ("t", job_type), ("s", state)):
            key += f":{tag}:{value}" if value else ""
        return key

    def _run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        with redis_errors():
            return self._scripts[name](keys=keys, args=args)

    def ping(self) -> None:
        with redis_errors():
            self.redis.ping()

    def create(
        self, job_type: str, params: dict[str, Any], *, idempotency_key: str | None = None, request_id: str = "",
        owner: str = "",
    ) -> tuple[dict[str, Any], bool]:
        """Write a queued job; with an idempotency key (one owner's), return the existing job instead.

        -> (job, created). The same key with another body raises IdempotencyKeyReused (422).
        """
        job_id = uuid.uuid4().hex
        body_hash = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()
        idem_key = self._idem_key(job_type, idempotency_key, owner)
        now = _now()
        record = {
            "job_id": job_id, "type": job_type, "state": "queued", "params": json.dumps(params),
            "progress": json.dumps({"step": "queued", "percent": 0}), "created_at": repr(now),
            "updated_at": repr(now), "request_id": request_id, "attempts": "0", "owner": owner,
        }
        keys = [self._key(job_id), self._hist(job_id), self._base, idem_key]

        def write(deadline: float) -> tuple[str, str]:
            status, value = self._run("create", keys, [
                repr(deadline), json.dumps(record), json.dumps({"state": "queued", "at": now}), self.ttl, repr(now),
                f"{job_id} {body_hash}", f"{self.prefix}:job:", job_id])
            return str(status), str(value)

        status, value = write(self._deadline(now))
        if status == "late":  # it answered, so it did not hang: its clock is ahead of ours
            server_now = float(value)
            self._skew = max(self._skew, server_now - now)
            status, value = write(server_now + self.socket_timeout)
        if status == "exists":
            other_id, _, other_hash = value.partition(" ")
            if other_id != job_id:
                if other_hash != body_hash:
                    raise IdempotencyKeyReused("Idempotency-Key was already used with a different request body")
                return self.get(other_id), False
        # built here rather than read back: a read that timed out would answer 503 for a job already written
        return _decode(record, [json.dumps({"state": "queued", "at": now})]), True

    def withdraw(self, job_id: str, job_type: str, idempotency_key: str | None, owner: str = "") -> bool:
        """Delete a job still queued, and its idempotency key: its message never reached the queue.

        One script, so that run late by a Redis that hung it still only removes a job no worker started.
        """
        keys = [self._key(job_id), self._hist(job_id), self._base, self._idem_key(job_type, idempotency_key, owner)]
        return bool(self._run("withdraw", keys, [job_id]))

    def _idem_key(self, job_type: str, idempotency_key: str | None, owner: str) -> str:
        if not idempotency_key:
            return ""
        digest = hashlib.sha256(idempotency_key.encode()).hexdigest()
        return f"{self.prefix}:idem:{job_type}:{digest}" + (f":{owner}" if owner else "")

    def _deadline(self, now: float) -> float:
        """Until when Redis may run a write: one socket timeout, the earliest this client stops waiting for it."""
        return now + self._skew + self.socket_timeout

    def get(self, job_id: str, *, owner: str | None = None) -> dict[str, Any]:
        """The job as the API shows it; NotFound for an unknown or expired id (or, given an owner, another's)."""
        with redis_errors():
            pipe = self.redis.pipeline(transaction=False)  # reads only: no MULTI/EXEC round of its own
            pipe.hgetall(self._key(job_id))
            pipe.lrange(self._hist(job_id), 0, -1)
            raw, history = pipe.execute()
        if not raw or (owner is not None and raw.get("owner", "") != owner):
            raise NotFound(f"job {job_id!r} does not exist")
        return _decode(raw, history)

    def params(self, job_id: str) -> dict[str, Any]:
        return dict(self.get(job_id)["params"])

    def list(
        self, *, job_type: str | None = None, state: str | None = None, limit: int = 50, offset: int = 0,
        owner: str | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """Recent jobs, newest first, filtered (by owner too, when given); returns (page, total matching).

        Reads one index and one page of records: O(page), however many jobs there are.
        """
        index = self.index_key(owner=owner, job_type=job_type, state=state)
        with redis_errors():
            pipe = self.redis.pipeline(transaction=False)
            pipe.zremrangebyscore(index, "-inf", _now() - self.ttl)
            pipe.zrevrange(index, offset, offset + limit - 1)
            pipe.zcard(index)
            _, ids, total = pipe.execute()
            pipe = self.redis.pipeline(transaction=False)
            for job_id in ids:
                pipe.hgetall(self._key(str(job_id)))
                pipe.lrange(self._hist(str(job_id)), 0, -1)
            replies = pipe.execute()
        page = [_decode(raw, history) for raw, history in zip(replies[::2], replies[1::2], strict=True) if raw]
        return page, int(total)

    def transition(self, job_id: str, to: str, *, allowed_from: tuple[str, ...], attempt: int | None = None,
                   **fields: Any) -> str:
        """Move a job to ``to`` if it is in one of ``allowed_from`` (given ``attempt``: for that attempt only).

        Returns the previous state. Raises NotFound for an unknown job, Conflict when the current state does
        not allow it, and LeaseLost when ``attempt`` is no longer the job's.
        """
        now = _now()
        values = {"state": to, "updated_at": repr(now)}
        if to in TERMINAL:
            values["finished_at"] = repr(now)
        for key, value in fields.items():
            values[key] = json.dumps(value, allow_nan=False) if key in ("result", "error", "progress") else str(value)
        entry: dict[str, Any] = {"state": to, "at": now, **({"attempt": attempt} if attempt is not None else {})}
        status, previous = self._run(
            "transition", [self._key(job_id), self._hist(job_id), self._base, self._leases],
            [json.dumps(list(allowed_from)), json.dumps(values), json.dumps(entry), self.ttl,
             "" if attempt is None else str(attempt), repr(now), job_id])
        if status == "missing":
            raise NotFound(f"job {job_id!r} does not exist")
        if status == "refused":
            raise Conflict(f"job {job_id!r} is {previous}, it cannot become {to}")
        if status == "fenced":
            raise LeaseLost(f"job {job_id!r} attempt {attempt} no longer holds the job")
        return str(previous)

    def acquire(self, job_id: str, *, holder: str, dead_holder: str = "") -> tuple[str, str]:
        """Take a job to run it under a lease: ('ok', attempt), ('busy', holder), ('terminal', state), ('missing', '').

        A running job whose lease expired, or whose holder is ``dead_holder``, lost its worker: it runs again
        as the next attempt, unless that was its MLAAS_JOB_MAX_ATTEMPTS-th lost worker (then it fails).
        """
        status, value = self._run(
            "acquire", [self._key(job_id), self._hist(job_id), self._base, self._leases],
            [holder, self.lease_seconds, repr(_now()), self.max_attempts, dead_holder, self.ttl, job_id])
        return str(status), str(value)

    def holder(self, job_id: str) -> str | None:
        """Who holds a running job's lease (``host:pid``), if anyone."""
        with redis_errors():
            return text(self.redis.hget(self._key(job_id), "holder"))

    def renew(self, job_id: str, attempt: int, holder: str) -> bool:
        """Extend the lease of ``attempt``; False when the job is no longer that attempt's."""
        return bool(self._run("renew", [self._key(job_id), self._leases],
                              [str(attempt), holder, repr(_now() + self.lease_seconds), job_id]))

    def set_progress(self, job_id: str, step: str, percent: int, *, attempt: int) -> str:
        """Record a step of ``attempt``; returns the job's state. LeaseLost when the attempt no longer holds it."""
        status, state = self._run("progress", [self._key(job_id)], [
            str(attempt), json.dumps({"step": step, "percent": percent}), repr(_now())])
        if status == "missing":
            raise NotFound(f"job {job_id!r} does not exist")
        if status == "fenced" and state != "cancelled":
            raise LeaseLost(f"job {job_id!r} attempt {attempt} no longer holds the job (it is {state})")
        return str(state)

    def release(self, job_id: str, holder: str, reason: str) -> bool:
        """Put a running job held by ``holder`` back in the queued state (its worker stops or retries later)."""
        return bool(self._run("release", [self._key(job_id), self._hist(job_id), self._base, self._leases],
                              [holder, reason, repr(_now()), self.ttl, job_id]))

    def reap(self, limit: int = 100) -> builtins.list[tuple[str, str, str]]:
        """Requeue (or fail, past the attempts) running jobs whose lease expired: [(job_id, type, new state)]."""
        flat = self._run("reap", [self._base, self._leases],
                         [repr(_now()), self.max_attempts, self.ttl, f"{self.prefix}:job:", limit])
        return [(str(flat[i]), str(flat[i + 1]), str(flat[i + 2])) for i in range(0, len(flat), 3)]

    def state(self, job_id: str) -> str | None:
        with redis_errors():
            return text(self.redis.hget(self._key(job_id), "state"))


def _decode(raw: dict[str, str], history: list[str]) -> dict[str, Any]:
    def floats(name: str) -> float | None:
        return float(raw[name]) if raw.get(name) else None

    job: dict[str, Any] = {
        "job_id": raw["job_id"],
        "type": raw["type"],
        "state": raw["state"],
        "progress": json.loads(raw.get("progress") or "{}"),
        "params": json.loads(raw.get("params") or "{}"),
        "result": json.loads(raw["result"]) if raw.get("result") else None,
        "error": json.loads(raw["error"]) if raw.get("error") else None,
        "created_at": _iso(floats("created_at")),
        "started_at": _iso(floats("started_at")),
        "finished_at": _iso(floats("finished_at")),
        "updated_at": _iso(floats("updated_at")),
        "request_id": raw.get("request_id") or None,
        "attempts": int(raw.get("attempts") or 0),
        "owner": raw.get("owner") or None,
        "history": [_event(json.loads(item)) for item in history],
    }
    return job


def _event(entry: dict[str, Any]) -> dict[str, Any]:
    """A history entry: the state and when, and for an attempt's entries its number and why it ended."""
    event = {"state": entry["state"], "at": _iso(entry["at"])}
    event.update({k: entry[k] for k in ("attempt", "reason") if k in entry})
    return event


def patiently(call: Callable[[], T], wait_seconds: float) -> T:
    """Run a job-store call, riding out a Redis outage of up to ``wait_seconds`` (backing off up to 5 s)."""
    deadline = time.monotonic() + wait_seconds
    delay = 0.5
    while True:
        try:
            return call()
        except Unavailable as exc:
            if exc.dependency != "redis" or time.monotonic() + delay > deadline:
                raise
            log.warning("%s; trying again in %.1f s", exc.message, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


class PatientJobStore:
    """The job store as running jobs use it (the worker's context): every call waits for Redis.

    The work a job has done is worth more than a fast failure, so its progress and result wait out a
    Redis outage (MLAAS_JOB_REDIS_WAIT_SECONDS) instead of failing; the API keeps the plain store and
    answers 503 at once.
    """

    def __init__(self, store: JobStore, wait_seconds: float) -> None:
        self._store = store
        self._wait_seconds = wait_seconds

    @property
    def impatient(self) -> JobStore:
        """The store whose calls fail at once when Redis is away."""
        return self._store

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            return patiently(lambda: attr(*args, **kwargs), self._wait_seconds)

        return call
