"""Job records in Redis: written at submission, moved through states by the worker, kept for a TTL."""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import redis

from mlaas.adapters.redis import connect, redis_errors, text
from mlaas.errors import Conflict, NotFound, Unavailable
from mlaas.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

STATES = ("queued", "running", "succeeded", "failed", "cancelled")
TERMINAL = ("succeeded", "failed", "cancelled")

# Move a job to a new state only from an allowed one; returns the state it ended in.
_TRANSITION = """
local key = KEYS[1]
local current = redis.call('HGET', key, 'state')
if not current then return {'missing', ''} end
local allowed = cjson.decode(ARGV[1])
local ok = false
for _, s in ipairs(allowed) do if s == current then ok = true end end
if not ok then return {'refused', current} end
local fields = cjson.decode(ARGV[2])
for k, v in pairs(fields) do redis.call('HSET', key, k, v) end
redis.call('RPUSH', KEYS[2], ARGV[3])
local ttl = tonumber(ARGV[4])
redis.call('EXPIRE', key, ttl)
redis.call('EXPIRE', KEYS[2], ttl)
return {'ok', current}
"""


# Write a new queued job (and its idempotency key) in one step, unless Redis runs it past the client's
# deadline: a hung Redis that resumes must not apply a submission the API already answered 503 to.
# An idempotency key whose job record is gone (expired, or never written) no longer counts.
_CREATE = """
local deadline = tonumber(ARGV[1])
if deadline > 0 then
  local t = redis.call('TIME')
  local server_now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  if server_now > deadline then return {'late', string.format('%.6f', server_now)} end
end
local ttl = tonumber(ARGV[4])
if KEYS[4] ~= '' then
  local existing = redis.call('GET', KEYS[4])
  if existing then
    local other = string.match(existing, '^(%S+)')
    if other and redis.call('EXISTS', ARGV[7] .. other) == 1 then return {'exists', existing} end
  end
  redis.call('SET', KEYS[4], ARGV[6], 'EX', ttl)
end
if redis.call('EXISTS', KEYS[1]) == 1 then return {'ok', ''} end
for k, v in pairs(cjson.decode(ARGV[2])) do redis.call('HSET', KEYS[1], k, v) end
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('RPUSH', KEYS[2], ARGV[3])
redis.call('EXPIRE', KEYS[2], ttl)
local now = tonumber(ARGV[5])
redis.call('ZADD', KEYS[3], now, ARGV[8])
redis.call('ZREMRANGEBYSCORE', KEYS[3], 0, now - ttl)
return {'ok', ''}
"""


# Take back a submission whose message could not be published, unless a worker has already started it.
_WITHDRAW = """
if redis.call('HGET', KEYS[1], 'state') ~= 'queued' then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
if KEYS[4] ~= '' then
  local owner = redis.call('GET', KEYS[4])
  if owner and string.sub(owner, 1, string.len(ARGV[1]) + 1) == ARGV[1] .. ' ' then redis.call('DEL', KEYS[4]) end
end
return 1
"""


def _now() -> float:
    return time.time()


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


class JobStore:
    """Create, read, list and transition job records."""

    def __init__(self, settings: Settings, client: redis.Redis | None = None) -> None:
        self.redis = client or connect(settings)
        self.prefix = settings.redis_prefix
        self.ttl = settings.job_ttl_seconds
        self.socket_timeout = settings.redis_socket_timeout
        self._skew = 0.0  # how far Redis's clock was seen ahead of this process's
        self._transition = self.redis.register_script(_TRANSITION)
        self._create = self.redis.register_script(_CREATE)
        self._withdraw = self.redis.register_script(_WITHDRAW)

    def _key(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def _hist(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:history"

    def ping(self) -> None:
        with redis_errors():
            self.redis.ping()

    def create(
        self, job_type: str, params: dict[str, Any], *, idempotency_key: str | None = None, request_id: str = ""
    ) -> tuple[dict[str, Any], bool]:
        """Write a queued job; with an idempotency key, return the existing job instead. -> (job, created)."""
        job_id = uuid.uuid4().hex
        body_hash = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()
        idem_key = self._idem_key(job_type, idempotency_key)
        now = _now()
        record = {
            "job_id": job_id,
            "type": job_type,
            "state": "queued",
            "params": json.dumps(params),
            "progress": json.dumps({"step": "queued", "percent": 0}),
            "created_at": repr(now),
            "updated_at": repr(now),
            "request_id": request_id,
            "attempts": "0",
        }
        keys = [self._key(job_id), self._hist(job_id), f"{self.prefix}:jobs", idem_key]

        def write(deadline: float) -> tuple[str, str]:
            status, value = self._create(keys=keys, args=[
                repr(deadline), json.dumps(record), json.dumps({"state": "queued", "at": now}), self.ttl, repr(now),
                f"{job_id} {body_hash}", f"{self.prefix}:job:", job_id])
            return str(status), str(value)

        with redis_errors():
            status, value = write(self._deadline(now))
            if status == "late":  # it answered, so it did not hang: its clock is ahead of ours
                server_now = float(value)
                self._skew = max(self._skew, server_now - now)
                status, value = write(server_now + self.socket_timeout)
        if status == "exists":
            other_id, _, other_hash = value.partition(" ")
            if other_id != job_id:
                if other_hash != body_hash:
                    raise Conflict("Idempotency-Key was already used with a different request body")
                return self.get(other_id), False
        # built here rather than read back: a read that timed out would answer 503 for a job already written
        return _decode(record, [json.dumps({"state": "queued", "at": now})]), True

    def withdraw(self, job_id: str, job_type: str, idempotency_key: str | None) -> bool:
        """Delete a job still queued, and its idempotency key: its message never reached the queue.

        One script, so that run late by a Redis that hung it still only removes a job no worker started.
        """
        keys = [self._key(job_id), self._hist(job_id), f"{self.prefix}:jobs", self._idem_key(job_type, idempotency_key)]
        with redis_errors():
            return bool(self._withdraw(keys=keys, args=[job_id]))

    def _idem_key(self, job_type: str, idempotency_key: str | None) -> str:
        if not idempotency_key:
            return ""
        return f"{self.prefix}:idem:{job_type}:{hashlib.sha256(idempotency_key.encode()).hexdigest()}"

    def _deadline(self, now: float) -> float:
        """Until when Redis may run a write: one socket timeout, the earliest this client stops waiting for it."""
        return now + self._skew + self.socket_timeout

    def get(self, job_id: str) -> dict[str, Any]:
        """The job as the API shows it; NotFound for an unknown or expired id."""
        with redis_errors():
            pipe = self.redis.pipeline()
            pipe.hgetall(self._key(job_id))
            pipe.lrange(self._hist(job_id), 0, -1)
            raw, history = pipe.execute()
        if not raw:
            raise NotFound(f"job {job_id!r} does not exist")
        return _decode(raw, history)

    def params(self, job_id: str) -> dict[str, Any]:
        return dict(self.get(job_id)["params"])

    def list(
        self, *, job_type: str | None = None, state: str | None = None, limit: int = 50, offset: int = 0
    ) -> tuple[list[dict[str, Any]], int]:
        """Recent jobs, newest first, filtered; returns (page, total matching)."""
        with redis_errors():
            ids = [str(job_id) for job_id in self.redis.zrevrange(f"{self.prefix}:jobs", 0, -1)]
            pipe = self.redis.pipeline()
            for job_id in ids:
                pipe.hmget(self._key(job_id), "type", "state")
            heads = pipe.execute()
        matching = [
            job_id
            for job_id, (t, s) in zip(ids, heads, strict=True)
            if t is not None and (job_type is None or t == job_type) and (state is None or s == state)
        ]
        page = []
        for job_id in matching[offset : offset + limit]:
            try:
                page.append(self.get(job_id))
            except NotFound:
                continue
        return page, len(matching)

    def transition(self, job_id: str, to: str, *, allowed_from: tuple[str, ...], **fields: Any) -> str:
        """Move a job to ``to`` if it is in one of ``allowed_from``; returns the previous state.

        Raises NotFound for an unknown job and Conflict when the current state does not allow it.
        """
        now = _now()
        values = {"state": to, "updated_at": repr(now)}
        if to == "running":
            values["started_at"] = repr(now)
        if to in TERMINAL:
            values["finished_at"] = repr(now)
        for key, value in fields.items():
            values[key] = json.dumps(value, allow_nan=False) if key in ("result", "error", "progress") else str(value)
        with redis_errors():
            status, previous = self._transition(
                keys=[self._key(job_id), self._hist(job_id)],
                args=[json.dumps(list(allowed_from)), json.dumps(values), json.dumps({"state": to, "at": now}),
                      self.ttl],
            )
        if status == "missing":
            raise NotFound(f"job {job_id!r} does not exist")
        if status == "refused":
            raise Conflict(f"job {job_id!r} is {previous}, it cannot become {to}")
        return str(previous)

    def set_progress(self, job_id: str, step: str, percent: int) -> None:
        with redis_errors():
            self.redis.hset(
                self._key(job_id),
                mapping={"progress": json.dumps({"step": step, "percent": percent}), "updated_at": repr(_now())},
            )

    def bump_attempts(self, job_id: str) -> int:
        with redis_errors():
            return int(self.redis.hincrby(self._key(job_id), "attempts", 1))

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
        "history": [
            {"state": h["state"], "at": _iso(h["at"])} for h in (json.loads(item) for item in history)
        ],
    }
    return job


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

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            return patiently(lambda: attr(*args, **kwargs), self._wait_seconds)

        return call
