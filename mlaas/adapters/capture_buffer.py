"""The inference capture buffer: one capped Redis stream per model version, fed on the request path."""

from __future__ import annotations

import atexit
import json
import logging
import threading
import time
from typing import Any
from urllib.parse import quote, unquote

import redis

from mlaas.adapters.jobstore import connect, redis_errors
from mlaas.settings import Settings

log = logging.getLogger(__name__)
BREAKER_SECONDS = 5.0
MAX_PENDING = 10_000  # batched mode: requests held in the process at most; beyond, they are dropped and counted

# Append unless the stream is full; a full stream counts the rows it refused.
_APPEND = """
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then
  redis.call('INCRBY', KEYS[2], ARGV[3])
  return 0
end
redis.call('XADD', KEYS[1], '*', 'd', ARGV[2])
redis.call('SADD', KEYS[3], KEYS[1])
return 1
"""


def _command(*args: str | int) -> bytes:
    """One Redis command in the wire protocol (RESP), without the client's general-purpose packing."""
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else str(arg).encode()
        parts += [b"$%d\r\n" % len(data), data, b"\r\n"]
    return b"".join(parts)


class CaptureBuffer:
    """Append captured requests quickly (never raising), and read them back for flushing."""

    def __init__(self, settings: Settings) -> None:
        self.prefix = f"{settings.redis_prefix}:capture"
        self.max_entries = settings.capture_max_entries
        fast = settings.capture_timeout
        self.fast = redis.Redis.from_url(settings.redis_url, socket_timeout=fast, socket_connect_timeout=fast,
                                         decode_responses=True)
        self.redis = connect(settings)
        self._append = self.fast.register_script(_APPEND)
        self._open_until = 0.0
        self._lock = threading.Lock()
        self._connection: redis.connection.ConnectionInterface | None = None
        self._connection_lock = threading.Lock()
        self.batch_seconds = settings.capture_batch_seconds
        self._pending: list[tuple[str, str, int, str]] = []  # (stream key, entry, rows, model)
        self._pending_lock = threading.Lock()
        self._flusher: threading.Thread | None = None
        self.failures = 0
        self.dropped_local = 0

    def stream_key(self, model: str, version: int) -> str:
        return f"{self.prefix}:s:{quote(model, safe='')}:{version}"

    @staticmethod
    def parse_stream_key(key: str) -> tuple[str, int]:
        _, encoded, version = key.rsplit(":", 2)
        return unquote(encoded), int(version)

    # -- request path -------------------------------------------------------------------------------
    def append(self, model: str, version: int, entry: dict[str, Any], rows: int) -> str | None:
        """Buffer one request's rows; None when buffered, else why not. Never raises (a breaker skips 5 s).

        With ``capture_batch_seconds`` > 0 the request is held in the process and written with the others
        of that interval in one round trip (a refusal by Redis is then counted, not returned).
        """
        now = time.monotonic()
        if now < self._open_until:
            self._count_failure(rows, None)
            return "redis_unavailable"
        key = self.stream_key(model, version)
        data = json.dumps(entry, default=str)
        if self.batch_seconds > 0:
            return self._hold(key, data, rows, model)
        try:
            added = self._write([(key, data, rows)])[0]
        except redis.RedisError as exc:
            self._open_until = time.monotonic() + BREAKER_SECONDS
            self._count_failure(rows, exc)
            return "redis_unavailable"
        return None if added else "buffer_full"

    def _hold(self, key: str, data: str, rows: int, model: str) -> str | None:
        with self._pending_lock:
            if len(self._pending) >= MAX_PENDING:
                with self._lock:
                    self.dropped_local += rows
                return "buffer_full"
            self._pending.append((key, data, rows, model))
            if self._flusher is None:
                self._flusher = threading.Thread(target=self._flush_forever, name="capture-flush", daemon=True)
                self._flusher.start()
                atexit.register(self.write_pending)
        return None

    def _flush_forever(self) -> None:
        while True:
            time.sleep(self.batch_seconds)
            self.write_pending()

    def write_pending(self) -> None:
        """Write the requests held in batched mode (never raises; refusals and failures are counted)."""
        with self._pending_lock:
            batch, self._pending = self._pending, []
        if not batch:
            return
        rows = sum(item[2] for item in batch)
        if time.monotonic() < self._open_until:
            self._count_failure(rows, None)
            return
        try:
            added = self._write([item[:3] for item in batch])
        except redis.RedisError as exc:
            self._open_until = time.monotonic() + BREAKER_SECONDS
            self._count_failure(rows, exc)
            return
        from mlaas.adapters import telemetry

        for (_, _, n, model), ok in zip(batch, added, strict=True):
            if not ok:
                telemetry.capture_dropped(model, "buffer_full", n)

    def _write(self, items: list[tuple[str, str, int]]) -> list[int]:
        """Run the append script once per item, all in one round trip, on a connection of its own: the
        general-purpose client costs twice the CPU per call on the request path."""
        with self._connection_lock:
            if self._connection is None:
                self._connection = self.fast.connection_pool.make_connection()
            connection = self._connection
            try:
                results: list[int] = []
                commands = [self._args(*item) for item in items]
                connection.send_packed_command([b"".join(_command("EVALSHA", self._append.sha, 3, *args)
                                                         for args in commands)], check_health=False)
                missing = []
                for i in range(len(items)):
                    try:
                        results.append(int(connection.read_response()))
                    except redis.exceptions.NoScriptError:  # a restarted Redis forgot the script
                        results.append(0)
                        missing.append(i)
                if missing:
                    connection.send_packed_command([b"".join(_command("EVAL", _APPEND, 3, *commands[i])
                                                             for i in missing)])
                    for i in missing:
                        results[i] = int(connection.read_response())
                return results
            except BaseException:
                connection.disconnect()
                raise

    def _args(self, key: str, data: str, rows: int) -> tuple[str | int, ...]:
        return key, f"{key}:dropped", f"{self.prefix}:streams", self.max_entries, data, rows

    def _count_failure(self, rows: int, exc: Exception | None) -> None:
        with self._lock:
            self.failures += 1
            self.dropped_local += rows
        if exc is not None:
            log.warning("inference capture unavailable (%s); %d rows not captured", type(exc).__name__, rows)

    # -- flushing -----------------------------------------------------------------------------------
    def streams(self) -> list[str]:
        with redis_errors():
            return sorted(self.redis.smembers(f"{self.prefix}:streams"))

    def head(self, key: str, count: int) -> list[tuple[str, dict[str, Any]]]:
        with redis_errors():
            return [(i, json.loads(f["d"])) for i, f in self.redis.xrange(key, "-", "+", count=count)]

    def read(self, key: str, first: str, last: str) -> list[tuple[str, dict[str, Any]]]:
        with redis_errors():
            return [(i, json.loads(f["d"])) for i, f in self.redis.xrange(key, first, last)]

    def plan(self, key: str) -> tuple[str, str] | None:
        with redis_errors():
            raw = self.redis.get(f"{key}:plan")
        if not raw:
            return None
        first, _, last = raw.partition(" ")
        return first, last

    def set_plan(self, key: str, first: str, last: str) -> None:
        with redis_errors():
            self.redis.set(f"{key}:plan", f"{first} {last}")

    def finish(self, key: str, ids: list[str]) -> None:
        """Remove flushed entries and the plan that named them."""
        with redis_errors():
            pipe = self.redis.pipeline()
            for start in range(0, len(ids), 1000):
                pipe.xdel(key, *ids[start:start + 1000])
            pipe.delete(f"{key}:plan")
            pipe.execute()

    def dropped(self, key: str) -> int:
        with redis_errors():
            return int(self.redis.get(f"{key}:dropped") or 0)

    def lock(self, name: str, ttl: int) -> redis.lock.Lock:
        return self.redis.lock(f"{self.prefix}:lock:{name}", timeout=ttl, blocking=False)

    def add_unchecked(self, key: str, rows: int) -> int:
        with redis_errors():
            return int(self.redis.incrby(f"{key}:unchecked", rows))

    def take_unchecked(self, key: str, rows: int) -> None:
        with redis_errors():
            self.redis.decrby(f"{key}:unchecked", rows)

    def get_text(self, name: str) -> str | None:
        with redis_errors():
            return self.redis.get(f"{self.prefix}:{name}")

    def set_text(self, name: str, value: str) -> None:
        with redis_errors():
            self.redis.set(f"{self.prefix}:{name}", value)
