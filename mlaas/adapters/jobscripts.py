"""The Lua scripts of the job store: every change of a job's state, its lease and its listing indexes in one step.

Each job is listed in sorted sets (score: its creation time) per filter a listing can ask for: all jobs, by type,
by state, by owner and their combinations (``<base>[:o:<owner>][:t:<type>][:s:<state>]``). The scripts that
move a job between states move it between the state indexes too, and prune entries older than the job TTL
from the indexes they touch, so a listing reads one sorted set and one page of records.

Running jobs hold a lease (``lease_until``, ``holder``); the ``leases`` sorted set (score: ``lease_until``)
lets the reaper find expired ones without reading every job. Writes of a job's worker are fenced by its
attempt number (the ``attempts`` field).
"""

from __future__ import annotations

# Shared functions, prepended to each script. (The scripts name the index keys they build: Redis Cluster
# would need them declared, a single Redis, as mlaas uses, does not.)
_LIB = """
local function ikey(base, o, t, s)
  local k = base
  if o ~= '' then k = k .. ':o:' .. o end
  if t ~= '' then k = k .. ':t:' .. t end
  if s ~= '' then k = k .. ':s:' .. s end
  return k
end
-- Move job ``id`` from the indexes of state ``old`` to those of ``new`` ('' for old: a new job; for new: gone).
local function reindex(base, o, t, old, new, score, id, cutoff)
  local owners = {''}
  if o ~= '' then owners = {'', o} end
  for _, oo in ipairs(owners) do
    for _, tt in ipairs({'', t}) do
      if old ~= '' then redis.call('ZREM', ikey(base, oo, tt, old), id) end
      if new == '' then redis.call('ZREM', ikey(base, oo, tt, ''), id) end
      local adds = {}
      if new ~= '' then adds = {ikey(base, oo, tt, new)} end
      if old == '' then table.insert(adds, ikey(base, oo, tt, '')) end
      for _, k in ipairs(adds) do
        redis.call('ZADD', k, score, id)
        redis.call('ZREMRANGEBYSCORE', k, '-inf', cutoff)
      end
    end
  end
end
local function move(key, base, id, old, new, now, ttl)
  local h = redis.call('HMGET', key, 'owner', 'type', 'created_at')
  reindex(base, h[1] or '', h[2] or '', old, new, tonumber(h[3]) or now, id, now - ttl)
end
local function record(key, hist, entry, ttl)
  redis.call('RPUSH', hist, cjson.encode(entry))
  redis.call('EXPIRE', key, ttl)
  redis.call('EXPIRE', hist, ttl)
end
-- The running job's worker is gone: queue it again, or fail it once it lost ``max_lost`` workers.
local function lose(key, hist, base, leases, id, now, max_lost, ttl)
  local lost = redis.call('HINCRBY', key, 'lost', 1)
  local attempt = tonumber(redis.call('HGET', key, 'attempts') or '0')
  redis.call('ZREM', leases, id)
  redis.call('HDEL', key, 'lease_until', 'holder')
  if lost >= max_lost then
    local step = cjson.decode(redis.call('HGET', key, 'progress') or '{}').step or ''
    local err = {code = 'worker_lost', message = string.format(
      'the job lost its worker on each of its %d attempts (last at step %q): it may need more memory or time '
      .. 'than a worker has', lost, step), details = {attempts = attempt, workers_lost = lost}}
    redis.call('HSET', key, 'state', 'failed', 'error', cjson.encode(err), 'finished_at', now, 'updated_at', now)
    move(key, base, id, 'running', 'failed', now, ttl)
    record(key, hist, {state = 'failed', at = now, attempt = attempt, reason = 'worker_lost'}, ttl)
    return 'failed'
  end
  redis.call('HSET', key, 'state', 'queued', 'updated_at', now)
  move(key, base, id, 'running', 'queued', now, ttl)
  record(key, hist, {state = 'queued', at = now, attempt = attempt, reason = 'worker_lost'}, ttl)
  return 'queued'
end
"""

# Move a job to a new state only from an allowed one (and, given an attempt, only for that attempt).
# KEYS: job, history, index base, leases. ARGV: allowed, fields, history entry, ttl, attempt or '', now, id.
TRANSITION = _LIB + """
local key = KEYS[1]
local current = redis.call('HGET', key, 'state')
if not current then return {'missing', ''} end
local ok = false
for _, s in ipairs(cjson.decode(ARGV[1])) do if s == current then ok = true end end
if not ok then return {'refused', current} end
if ARGV[5] ~= '' and redis.call('HGET', key, 'attempts') ~= ARGV[5] then return {'fenced', current} end
local fields = cjson.decode(ARGV[2])
for k, v in pairs(fields) do redis.call('HSET', key, k, v) end
if fields['state'] ~= 'running' then
  redis.call('HDEL', key, 'lease_until', 'holder')
  redis.call('ZREM', KEYS[4], ARGV[7])
end
local ttl, now = tonumber(ARGV[4]), tonumber(ARGV[6])
move(key, KEYS[3], ARGV[7], current, fields['state'], now, ttl)
redis.call('RPUSH', KEYS[2], ARGV[3])
redis.call('EXPIRE', key, ttl)
redis.call('EXPIRE', KEYS[2], ttl)
return {'ok', current}
"""

# Write a new queued job (and its idempotency key) in one step, unless Redis runs it past the client's
# deadline: a hung Redis that resumes must not apply a submission the API already answered 503 to.
# An idempotency key whose job record is gone (expired, or never written) no longer counts.
# KEYS: job, history, index base, idempotency key or ''. ARGV: deadline, record, history entry, ttl, now,
# "id body-hash", job key prefix, id.
CREATE = _LIB + """
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
move(KEYS[1], KEYS[3], ARGV[8], '', 'queued', now, ttl)
return {'ok', ''}
"""

# Take back a submission whose message could not be published, unless a worker has already started it.
# KEYS: job, history, index base, idempotency key or ''. ARGV: id.
WITHDRAW = _LIB + """
if redis.call('HGET', KEYS[1], 'state') ~= 'queued' then return 0 end
move(KEYS[1], KEYS[3], ARGV[1], 'queued', '', 0, 0)
redis.call('DEL', KEYS[1], KEYS[2])
if KEYS[4] ~= '' then
  local owner = redis.call('GET', KEYS[4])
  if owner and string.sub(owner, 1, string.len(ARGV[1]) + 1) == ARGV[1] .. ' ' then redis.call('DEL', KEYS[4]) end
end
return 1
"""

# A worker takes a job to run it: the next attempt, under a lease. A job running under a live lease is
# someone else's (a redelivered message): 'busy'. A running job whose lease expired, or whose holder is
# known dead (ARGV[5]), lost its worker first. KEYS: job, history, index base, leases.
# ARGV: holder, lease seconds, now, max workers lost, holder known dead or '', ttl, id.
ACQUIRE = _LIB + """
local key, now, ttl, id = KEYS[1], tonumber(ARGV[3]), tonumber(ARGV[6]), ARGV[7]
local state = redis.call('HGET', key, 'state')
if not state then return {'missing', ''} end
if state == 'succeeded' or state == 'failed' or state == 'cancelled' then return {'terminal', state} end
if state == 'running' then
  local holder = redis.call('HGET', key, 'holder') or ''
  if (tonumber(redis.call('HGET', key, 'lease_until') or '0') or 0) > now and holder ~= ARGV[5] then
    return {'busy', holder}
  end
  if lose(key, KEYS[2], KEYS[3], KEYS[4], id, now, tonumber(ARGV[4]), ttl) == 'failed' then
    return {'terminal', 'failed'}
  end
  state = 'queued'
end
local attempt = redis.call('HINCRBY', key, 'attempts', 1)
local lease_until = now + tonumber(ARGV[2])
redis.call('HSET', key, 'state', 'running', 'holder', ARGV[1], 'lease_until', lease_until, 'started_at', now,
           'updated_at', now, 'progress', '{"step":"starting","percent":0}')
redis.call('ZADD', KEYS[4], lease_until, id)
move(key, KEYS[3], id, state, 'running', now, ttl)
record(key, KEYS[2], {state = 'running', at = now, attempt = attempt}, ttl)
return {'ok', tostring(attempt)}
"""

# The heartbeat: extend the lease of the attempt that holds it. KEYS: job, leases.
# ARGV: attempt, holder, lease_until, id. Returns 0 when the attempt no longer holds the job.
RENEW = """
local h = redis.call('HMGET', KEYS[1], 'state', 'attempts', 'holder')
if h[1] ~= 'running' or h[2] ~= ARGV[1] or h[3] ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'lease_until', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
return 1
"""

# A progress step of one attempt; returns the job's state and whether it was written. KEYS: job.
# ARGV: attempt, progress, now.
PROGRESS = """
local h = redis.call('HMGET', KEYS[1], 'state', 'attempts')
if not h[1] then return {'missing', ''} end
if h[1] ~= 'running' or h[2] ~= ARGV[1] then return {'fenced', h[1]} end
redis.call('HSET', KEYS[1], 'progress', ARGV[2], 'updated_at', ARGV[3])
return {'ok', h[1]}
"""

# Give a running job back to its queue: its worker stops (SIGTERM) or retries later. Matches the holder.
# KEYS: job, history, index base, leases. ARGV: holder, reason, now, ttl, id.
RELEASE = _LIB + """
local key, now, ttl = KEYS[1], tonumber(ARGV[3]), tonumber(ARGV[4])
local h = redis.call('HMGET', key, 'state', 'holder', 'attempts')
if h[1] ~= 'running' or h[2] ~= ARGV[1] then return 0 end
redis.call('HSET', key, 'state', 'queued', 'updated_at', now)
redis.call('HDEL', key, 'lease_until', 'holder')
redis.call('ZREM', KEYS[4], ARGV[5])
move(key, KEYS[3], ARGV[5], 'running', 'queued', now, ttl)
record(key, KEYS[2], {state = 'queued', at = now, attempt = tonumber(h[3]), reason = ARGV[2]}, ttl)
return 1
"""

# The reaper: every running job whose lease expired lost its worker. One script, so two reapers never
# requeue a job twice. KEYS: index base, leases. ARGV: now, max workers lost, ttl, job key prefix, limit.
# Returns id, type, 'queued' or 'failed' for each job it moved.
REAP = _LIB + """
local now, out = tonumber(ARGV[1]), {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[5]))) do
  local key = ARGV[4] .. id
  local h = redis.call('HMGET', key, 'state', 'lease_until', 'type')
  if h[1] ~= 'running' then
    redis.call('ZREM', KEYS[2], id)
  elseif (tonumber(h[2] or '0') or 0) > now then
    redis.call('ZADD', KEYS[2], h[2], id)
  else
    local result = lose(key, key .. ':history', KEYS[1], KEYS[2], id, now, tonumber(ARGV[2]), tonumber(ARGV[3]))
    table.insert(out, id)
    table.insert(out, h[3])
    table.insert(out, result)
  end
end
return out
"""
