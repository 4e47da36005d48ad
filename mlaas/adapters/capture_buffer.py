"""The inference capture buffer: one capped Redis stream per model version, fed on the request path."""

from __future__ import annotations

import atexit
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

import redis

from mlaas.adapters.redis import connect, redis_errors, text
from mlaas.settings import Settings

log = logging.getLogger(__name__)
BREAKER_SECONDS = 5.0
MAX_PENDING = 10_000  # batched mode: requests held in the process at most; beyond, they are dropped and counted

# Append a batch of entries to one stream while it has room in entries and in bytes; the refused ones (all
# from the first that does not fit) count their rows. KEYS: stream, dropped rows, the set of streams, bytes held.
# ARGV: the entry cap, the byte cap, then (entry, rows) pairs. Returns how many (the first ones) were added.
_APPEND = """
local room = tonumber(ARGV[1]) - redis.call('XLEN', KEYS[1])
local budget = tonumber(ARGV[2]) - tonumber(redis.call('GET', KEYS[4]) or '0')
local added, refused, used = 0, 0, 0
for i = 3, #ARGV, 2 do
  local size = string.len(ARGV[i])
  if refused == 0 and added < room and used + size <= budget then
    redis.call('XADD', KEYS[1], '*', 'd', ARGV[i])
    added = added + 1
    used = used + size
  else
    refused = refused + tonumber(ARGV[i + 1])
  end
end
if refused > 0 then redis.call('INCRBY', KEYS[2], refused) end
if added > 0 then
  redis.call('SADD', KEYS[3], KEYS[1])
  redis.call('INCRBY', KEYS[4], used)
end
return added
"""
# Claim entries of a stream for one flusher, atomically, so that flushers running at once never take the same
# entry. A claim is a fixed range of entry ids ("first last") with a lease; the entries stay in the stream until
# the claim is finished. First a claim whose lease ran out (its holder died) is taken over, with the same range, so
# it is rewritten into the same files; else the next ARGV[1] entries after the stream's cursor. A plan left by an
# earlier release (one flusher per stream) becomes an expired claim. KEYS: stream, claims, cursor, earlier plan.
# ARGV: how many entries, the lease (ms). Returns {range, entries} or false when nothing is left to claim.
_CLAIM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = now + tonumber(ARGV[2])
local earlier = redis.call('GET', KEYS[4])
if earlier then
  redis.call('HSET', KEYS[2], earlier, 0)
  redis.call('DEL', KEYS[4])
end
local claims = redis.call('HGETALL', KEYS[2])
for i = 1, #claims, 2 do
  if tonumber(claims[i + 1]) < now then
    redis.call('HSET', KEYS[2], claims[i], lease)
    local first, last = string.match(claims[i], '^(%S+) (%S+)$')
    return {claims[i], redis.call('XRANGE', KEYS[1], first, last)}
  end
end
local cursor = redis.call('GET', KEYS[3])
local entries = redis.call('XRANGE', KEYS[1], cursor and ('(' .. cursor) or '-', '+', 'COUNT', tonumber(ARGV[1]))
if #entries == 0 then return false end
local range = entries[1][1] .. ' ' .. entries[#entries][1]
redis.call('SET', KEYS[3], entries[#entries][1])
redis.call('HSET', KEYS[2], range, lease)
return {range, entries}
"""
# Finish a claim: remove its entries and give their bytes back. KEYS: stream, bytes held, claims. ARGV: the range.
# Returns 1 when this call ended the claim, 0 when another flusher had already finished it.
_FINISH = """
local first, last = string.match(ARGV[1], '^(%S+) (%S+)$')
local entries = redis.call('XRANGE', KEYS[1], first, last)
local freed, ids = 0, {}
for _, entry in ipairs(entries) do
  local fields = entry[2]
  for j = 1, #fields, 2 do
    if fields[j] == 'd' then freed = freed + string.len(fields[j + 1]) end
  end
  ids[#ids + 1] = entry[1]
  if #ids == 1000 then
    redis.call('XDEL', KEYS[1], unpack(ids))
    ids = {}
  end
end
if #ids > 0 then redis.call('XDEL', KEYS[1], unpack(ids)) end
if freed > 0 and tonumber(redis.call('DECRBY', KEYS[2], freed)) < 0 then redis.call('SET', KEYS[2], 0) end
return redis.call('HDEL', KEYS[3], ARGV[1])
"""
# Give a claim back (its write failed): its lease ends now, so the next flush takes it over with the same range.
# KEYS: claims. ARGV: the range. Returns 1 when the claim was still outstanding.
_RELEASE = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], 0)
return 1
"""
MAX_PER_CALL = 500  # entries per script call
CLAIM_LEASE_SECONDS = 300.0  # a flusher that holds a claim longer is taken to be dead: another takes the claim over


def _command_parts(parts: list[bytes], *args: bytes | str | int) -> None:
    """Append one Redis command in the wire protocol (RESP) to ``parts``, bytes arguments uncopied."""
    parts.append(b"*%d\r\n" % len(args))
    for arg in args:
        data = arg if isinstance(arg, bytes) else arg.encode() if isinstance(arg, str) else str(arg).encode()
        parts += [b"$%d\r\n" % len(data), data, b"\r\n"]


def _command(*args: bytes | str | int) -> bytes:
    """One Redis command in the wire protocol, without the client's general-purpose packing."""
    parts: list[bytes] = []
    _command_parts(parts, *args)
    return b"".join(parts)


def _loads(text: str | None) -> Any:
    """An entry as stored; text that is not JSON comes back as itself, for the reader to leave out."""
    try:
        return json.loads(text)  # type: ignore[arg-type]
    except (ValueError, TypeError):
        return text


def _field(fields: list[Any], name: str) -> Any:
    """A field's value in a stream entry as a script returns it (a flat list of names and values)."""
    for i in range(0, len(fields) - 1, 2):
        if fields[i] == name:
            return fields[i + 1]
    return None


def entry_order(entry_id: str) -> tuple[int, int]:
    """A stream entry id ("ms-seq") as numbers, to compare ids as Redis orders them."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


@dataclass(frozen=True)
class Claim:
    """Entries claimed by one flusher: the range of their ids and the entries (id, entry as stored)."""

    first: str
    last: str
    entries: list[tuple[str, Any]]

    @property
    def range(self) -> str:
        return f"{self.first} {self.last}"


def _entries(reply: Any) -> list[tuple[str, Any]]:
    """XRANGE's reply as (entry id, entry as stored)."""
    return [(str(entry_id), _loads(fields["d"])) for entry_id, fields in reply or ()]


class CaptureBuffer:
    """Append captured requests quickly (never raising), and read them back for flushing."""

    def __init__(self, settings: Settings) -> None:
        self.prefix = f"{settings.redis_prefix}:capture"
        self.max_entries = settings.capture_max_entries
        self.max_bytes = settings.capture_max_bytes
        self.fast = connect(settings, fast=True)
        self.redis = connect(settings)
        self._append = self.fast.register_script(_APPEND)
        self._finish = self.redis.register_script(_FINISH)
        self._claim = self.redis.register_script(_CLAIM)
        self._release = self.redis.register_script(_RELEASE)
        self._open_until = 0.0
        self._lock = threading.Lock()
        self._connection: redis.connection.ConnectionInterface | None = None
        self._connection_lock = threading.Lock()
        self.batch_seconds = settings.capture_batch_seconds
        self.flush_batch = settings.capture_flush_batch
        self.claim_lease = CLAIM_LEASE_SECONDS
        self._pending: list[tuple[str, bytes | str, int, str]] = []  # (stream key, entry, rows, model)
        self._pending_lock = threading.Lock()
        self._flusher: threading.Thread | None = None
        self.failures = 0
        self.dropped_local = 0
        self._keys: dict[tuple[str, int], str] = {}

    def stream_key(self, model: str, version: int) -> str:
        key = self._keys.get((model, version))
        if key is None:  # quoted once per model version, not on every request
            if len(self._keys) >= 10_000:
                self._keys.clear()
            key = self._keys[(model, version)] = f"{self.prefix}:s:{quote(model, safe='')}:{version}"
        return key

    @staticmethod
    def parse_stream_key(key: str) -> tuple[str, int]:
        _, encoded, version = key.rsplit(":", 2)
        return unquote(encoded), int(version)

    # -- request path -------------------------------------------------------------------------------
    def append(self, model: str, version: int, entry: bytes | str, rows: int) -> str | None:
        """Buffer one request's rows (``entry``: JSON text); None when buffered, else why not. Never raises.

        With ``capture_batch_seconds`` > 0 (the default) the request is held in the process and written
        with the others of that interval in one round trip; a refusal by Redis is then counted, not
        returned. With 0 it is written before this returns. A Redis that fails opens a breaker for 5 s.
        """
        if time.monotonic() < self._open_until:
            self._count_failure(rows, None)
            return "redis_unavailable"
        key = self.stream_key(model, version)
        if self.batch_seconds > 0:
            return self._hold(key, entry, rows, model)
        try:
            added = self._write([(key, entry, rows)])[0]
        except redis.RedisError as exc:
            self._open_until = time.monotonic() + BREAKER_SECONDS
            self._count_failure(rows, exc)
            return "redis_unavailable"
        return None if added else "buffer_full"

    def _hold(self, key: str, data: bytes | str, rows: int, model: str) -> str | None:
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
            try:
                self.write_pending()
            except Exception:  # never let the writer thread die: later captures still need it
                log.exception("writing captured requests failed")

    def write_pending(self) -> None:
        """Write the requests held in batched mode (never raises; refusals and failures are counted)."""
        with self._pending_lock:
            batch, self._pending = self._pending, []
        if not batch:
            return
        from mlaas.adapters import telemetry

        added: list[bool] | None = None
        error: Exception | None = None
        if time.monotonic() >= self._open_until:  # else the breaker is open: drop without trying
            try:
                added = self._write([item[:3] for item in batch])
            except redis.RedisError as exc:
                self._open_until = time.monotonic() + BREAKER_SECONDS
                error = exc
        if added is None:
            self._count_failure(sum(item[2] for item in batch), error)
            for _, _, n, model in batch:
                telemetry.capture_dropped(model, "redis_unavailable", n)
            return
        for (_, _, n, model), ok in zip(batch, added, strict=True):
            if not ok:
                telemetry.capture_dropped(model, "buffer_full", n)

    def _write(self, items: list[tuple[str, bytes | str, int]]) -> list[bool]:
        """Append entries (stream key, JSON text, rows) with one script call per stream and up to
        MAX_PER_CALL entries, all in one round trip, on a connection of its own (the general-purpose
        client costs twice the CPU per call); whether each entry was added, in order."""
        calls: list[tuple[list[int], list[bytes | str | int]]] = []  # (item indexes, script arguments)
        by_key: dict[str, list[int]] = {}
        for i, (key, _, _) in enumerate(items):
            by_key.setdefault(key, []).append(i)
        for key, indexes in by_key.items():
            for start in range(0, len(indexes), MAX_PER_CALL):
                chunk = indexes[start:start + MAX_PER_CALL]
                args: list[bytes | str | int] = [key, f"{key}:dropped", f"{self.prefix}:streams", f"{key}:bytes",
                                                 self.max_entries, self.max_bytes]
                for i in chunk:
                    args += [items[i][1], items[i][2]]
                calls.append((chunk, args))
        added = [False] * len(items)
        with self._connection_lock:
            if self._connection is None:
                self._connection = self.fast.connection_pool.make_connection()
            connection = self._connection
            try:
                parts: list[bytes] = []
                for _, args in calls:
                    _command_parts(parts, "EVALSHA", self._append.sha, 4, *args)
                connection.send_packed_command([b"".join(parts)], check_health=False)
                counts: list[int | None] = []
                for _ in calls:
                    try:
                        counts.append(int(connection.read_response()))
                    except redis.exceptions.NoScriptError:  # a restarted Redis forgot the script
                        counts.append(None)
                missing = [n for n, count in enumerate(counts) if count is None]
                if missing:
                    connection.send_packed_command([b"".join(_command("EVAL", _APPEND, 4, *calls[n][1])
                                                             for n in missing)])
                    for n in missing:
                        counts[n] = int(connection.read_response())
            except BaseException:
                connection.disconnect()
                raise
        for (chunk, _), count in zip(calls, counts, strict=True):
            for i in chunk[:count]:
                added[i] = True
        return added

    def _count_failure(self, rows: int, exc: Exception | None) -> None:
        with self._lock:
            self.failures += 1
            self.dropped_local += rows
        if exc is not None:
            log.warning("inference capture unavailable (%s); %d rows not captured", type(exc).__name__, rows)

    # -- flushing -----------------------------------------------------------------------------------
    def streams(self) -> list[str]:
        with redis_errors():
            return sorted(str(key) for key in self.redis.smembers(f"{self.prefix}:streams"))

    def head(self, key: str, count: int) -> list[tuple[str, Any]]:
        with redis_errors():
            return _entries(self.redis.xrange(key, "-", "+", count=count))

    def claim(self, key: str, count: int | None = None, lease: float | None = None) -> Claim | None:
        """Take the next entries of a stream (at most ``count``, by default MLAAS_CAPTURE_FLUSH_BATCH) for this
        flusher alone, held for ``lease`` seconds (by default ``claim_lease``), or a claim whose holder's
        lease ran out; None when nothing is left to claim. The entries stay buffered until ``finish``."""
        with redis_errors():
            reply = self._claim(keys=[key, f"{key}:claims", f"{key}:cursor", f"{key}:plan"],
                                args=[count or self.flush_batch, max(1, int((lease or self.claim_lease) * 1000))])
        if not reply:
            return None
        first, _, last = str(reply[0]).partition(" ")
        return Claim(first, last, [(str(entry_id), _loads(_field(fields, "d"))) for entry_id, fields in reply[1]])

    def finish(self, key: str, claim: Claim) -> bool:
        """Remove a claim's entries (giving their bytes back to the stream's cap) and the claim; False when
        another flusher, which took the claim over, had already finished it."""
        with redis_errors():  # one script call: atomic, as the claim must go with the last of its entries
            return bool(self._finish(keys=[key, f"{key}:bytes", f"{key}:claims"], args=[claim.range]))

    def release(self, key: str, claim: Claim) -> bool:
        """Give a claim back unfinished (its write failed), for the next flush to take over at once rather than
        after its lease; False when it was no longer outstanding."""
        with redis_errors():
            return bool(self._release(keys=[f"{key}:claims"], args=[claim.range]))

    def claims(self, key: str) -> list[str]:
        """The ranges ("first last") of a stream's outstanding claims, oldest entries first."""
        with redis_errors():
            ranges = [str(r) for r in self.redis.hkeys(f"{key}:claims")]
        return sorted(ranges, key=lambda r: entry_order(r.partition(" ")[0]))

    def unsettled_from(self, key: str) -> str | None:
        """The first entry of the oldest batch a flusher still holds: files from there on may have a gap before
        them (an earlier batch not yet written), so a reader that keeps a watermark stops short of them."""
        ranges = self.claims(key)
        return ranges[0].partition(" ")[0] if ranges else None

    def length(self, key: str) -> int:
        """Entries a stream holds (claimed or not)."""
        with redis_errors():
            return int(self.redis.xlen(key))

    def held_bytes(self, key: str) -> int:
        """The size of the entries a stream holds, as counted against MLAAS_CAPTURE_MAX_BYTES."""
        with redis_errors():
            return int(self.redis.get(f"{key}:bytes") or 0)

    def dropped(self, key: str) -> int:
        with redis_errors():
            return int(self.redis.get(f"{key}:dropped") or 0)

    def add_unchecked(self, key: str, rows: int) -> int:
        with redis_errors():
            return int(self.redis.incrby(f"{key}:unchecked", rows))

    def take_unchecked(self, key: str, rows: int) -> None:
        with redis_errors():
            self.redis.decrby(f"{key}:unchecked", rows)

    def get_text(self, name: str) -> str | None:
        with redis_errors():
            return text(self.redis.get(f"{self.prefix}:{name}"))

    def set_text(self, name: str, value: str) -> None:
        with redis_errors():
            self.redis.set(f"{self.prefix}:{name}", value)
