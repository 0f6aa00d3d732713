"""The Lua that keeps the queue in Redis, and the connection helpers both sides share.

Every change to the fair order is one script, so it is atomic. The scripts mirror
``generation.queue.fair.FairQueue`` (``enqueue`` is its ``push``, ``fair_pop`` its ``pop``,
``CANCEL`` its ``cancel``) and ``generation.limits.TokenBucket`` (``level`` is its refill,
``refund`` its refund); ``tests/test_fairqueue.py`` compares them on random inputs.

Key layout (under one prefix, default ``sdbot``; jobs are named by their uid): ``q:guilds``,
``q:users:G``, ``q:jobs:G:U`` (the rings), ``q:last``, ``q:lastuser:G`` (who was served last),
``job:UID`` (request: ``payload`` and its pictures as raw ``blob:N`` fields, ``blobs`` their
count when there are any; id, guild, user, units, charged, state: queued, held, running, done;
``batch``: its image count and a digest of its batch key, ``"4 9f…"``, for ``claims``),
``work`` (the stream of claimed jobs, group ``workers``), ``ev:UID`` (the job's events),
``result:UID``, ``cancel:UID``, ``rl:u:G:U`` and ``rl:g:G`` (token buckets), ``active:G:U``,
``depth``, ``wake``, ``workers`` (last seen), ``stats``.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

GROUP = "workers"
KEEP_S = 24 * 3600  # events and results of a finished job stay a day

# FairQueue.push: a guild (user) new to its ring goes before the one served last, if that one
# is at the front.
_ENQUEUE = """
local function enqueue(p, id, g, u)
  local guilds, users = p .. ':q:guilds', p .. ':q:users:' .. g
  local jobs = p .. ':q:jobs:' .. g .. ':' .. u
  if redis.call('LLEN', jobs) == 0 then
    if redis.call('LLEN', users) == 0 then
      redis.call('RPUSH', guilds, g)
      if redis.call('LLEN', guilds) > 1
          and redis.call('LINDEX', guilds, 0) == redis.call('GET', p .. ':q:last') then
        redis.call('LREM', guilds, -1, g)
        redis.call('LPUSH', guilds, g)
      end
    end
    redis.call('RPUSH', users, u)
    if redis.call('LLEN', users) > 1
        and redis.call('LINDEX', users, 0) == redis.call('GET', p .. ':q:lastuser:' .. g) then
      redis.call('LREM', users, -1, u)
      redis.call('LPUSH', users, u)
    end
  end
  redis.call('RPUSH', jobs, id)
  redis.call('LPUSH', p .. ':wake', id)
  redis.call('LTRIM', p .. ':wake', 0, 63)
end
"""

# FairQueue.cancel: takes a waiting job out of the rings (false: it was not in them).
_DEQUEUE = """
local function dequeue(p, id, g, u)
  local guilds, users = p .. ':q:guilds', p .. ':q:users:' .. g
  local jobs = p .. ':q:jobs:' .. g .. ':' .. u
  if redis.call('LREM', jobs, 0, id) == 0 then return false end
  if redis.call('LLEN', jobs) == 0 then redis.call('LREM', users, 0, u) end
  if redis.call('LLEN', users) == 0 then redis.call('LREM', guilds, 0, g) end
  return true
end
"""

# FairQueue.pop: the front guild's front user's oldest job; both move to the back.
_FAIR_POP = """
local function fair_pop(p)
  local guilds = p .. ':q:guilds'
  local g = redis.call('LINDEX', guilds, 0)
  if not g then return false end
  local users = p .. ':q:users:' .. g
  local u = redis.call('LINDEX', users, 0)
  local jobs = p .. ':q:jobs:' .. g .. ':' .. u
  local id = redis.call('LPOP', jobs)
  redis.call('SET', p .. ':q:last', g)
  redis.call('SET', p .. ':q:lastuser:' .. g, u)
  if redis.call('LLEN', jobs) > 0 then
    redis.call('LMOVE', users, users, 'LEFT', 'RIGHT')
  else
    redis.call('LPOP', users)
  end
  if redis.call('LLEN', users) > 0 then
    redis.call('LMOVE', guilds, guilds, 'LEFT', 'RIGHT')
  else
    redis.call('LPOP', guilds)
  end
  return id
end
"""

_RELEASE = """
local function release(p, g, u)
  local active = p .. ':active:' .. g .. ':' .. u
  if tonumber(redis.call('GET', active) or '0') > 0 then redis.call('DECR', active) end
  local depth = p .. ':depth'
  if tonumber(redis.call('GET', depth) or '0') > 0 then redis.call('DECR', depth) end
end
"""

# TokenBucket.refund: a bucket's saved level, whenever it was saved, may take the refund
# before its refill, as both are capped at the burst; a bucket that expired is full anyway.
_REFUND = """
local function refund(key, units)
  local saved = redis.call('HMGET', key, 'tokens', 'burst')
  local tokens, burst = tonumber(saved[1]), tonumber(saved[2])
  if not tokens or not burst then return end
  redis.call('HSET', key, 'tokens', tostring(math.min(burst, tokens + math.min(units, burst))))
end
"""

# A request's pictures (its bytes) are raw fields of its job: ``blob:0`` … ``blob:N-1``; the
# claims answer them after the payload, and a job that ended drops them (its payload stays).
_BLOBS = """
local function with_blobs(out, job)
  local n = tonumber(redis.call('HGET', job, 'blobs') or '0')
  for i = 0, n - 1 do table.insert(out, redis.call('HGET', job, 'blob:' .. i)) end
  return out
end
local function drop_blobs(job)
  local n = tonumber(redis.call('HGET', job, 'blobs') or '0')
  for i = 0, n - 1 do redis.call('HDEL', job, 'blob:' .. i) end
  redis.call('HDEL', job, 'blobs')
end
"""

# ARGV: prefix, uid, guild, user, payload, units, charged, job id, held ('1': shutting down),
# batch ('': it runs alone), then the request's blobs. Eight fields at most: a ninth makes the
# hash half as big again in Redis.
PUSH = (
    _ENQUEUE
    + """
local p, id, g, u = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local job = p .. ':job:' .. id
local state = 'queued'
if ARGV[9] == '1' then state = 'held' end
redis.call('HSET', job, 'payload', ARGV[5], 'guild', g, 'user', u,
  'state', state, 'units', ARGV[6], 'charged', ARGV[7], 'id', ARGV[8])
if (ARGV[10] or '') ~= '' then redis.call('HSET', job, 'batch', ARGV[10]) end
if #ARGV > 10 then redis.call('HSET', job, 'blobs', #ARGV - 10) end
for i = 11, #ARGV do redis.call('HSET', job, 'blob:' .. (i - 11), ARGV[i]) end
if state == 'queued' then enqueue(p, id, g, u) end
return 1
"""
)

# FairQueue.pop as one claim of one job (a worker claims batches: ``claims.CLAIM_BATCH``).
# Answers: stream entry, uid, payload, deliveries, previous consumer ('': none), blobs …
CLAIM = (
    _FAIR_POP
    + _BLOBS
    + """
local p, consumer = ARGV[1], ARGV[2]
local id = fair_pop(p)
if not id then return false end
local job = p .. ':job:' .. id
redis.call('HSET', job, 'state', 'running')
redis.call('XADD', p .. ':work', '*', 'job', id)
local read = redis.call('XREADGROUP', 'GROUP', 'workers', consumer, 'COUNT', 1,
  'STREAMS', p .. ':work', '>')
local entry = read[1][2][1]
local claimed = p .. ':job:' .. entry[2][2]
return with_blobs({entry[1], entry[2][2], redis.call('HGET', claimed, 'payload'), 1, ''}, claimed)
"""
)

# ARGV: prefix, stream entry, uid, keep seconds, then the terminal event's fields
FINISH = (
    _RELEASE
    + _BLOBS
    + """
local p, entry, id = ARGV[1], ARGV[2], ARGV[3]
redis.call('XACK', p .. ':work', 'workers', entry)
redis.call('XDEL', p .. ':work', entry)
local job = p .. ':job:' .. id
-- Redis restarted empty since the job was claimed: nobody follows it, nothing to release
if redis.call('EXISTS', job) == 0 then return 0 end
if redis.call('HGET', job, 'state') ~= 'done' then
  redis.call('HSET', job, 'state', 'done')
  release(p, redis.call('HGET', job, 'guild'), redis.call('HGET', job, 'user'))
end
drop_blobs(job)
redis.call('EXPIRE', job, ARGV[4])
redis.call('DEL', p .. ':cancel:' .. id)
-- the terminal event goes out with the ack, so that nobody sees one without the other
local events = p .. ':ev:' .. id
redis.call('XADD', events, '*', unpack(ARGV, 5))
redis.call('EXPIRE', events, ARGV[4])
return 1
"""
)

# ARGV: prefix, uid, keep seconds, then the fields of the event a dequeued job ends with
CANCEL = (
    _RELEASE
    + _REFUND
    + _DEQUEUE
    + _BLOBS
    + """
local p, id = ARGV[1], ARGV[2]
local job = p .. ':job:' .. id
local state = redis.call('HGET', job, 'state')
if state == 'queued' or state == 'held' then
  local g, u = redis.call('HGET', job, 'guild'), redis.call('HGET', job, 'user')
  if state == 'queued' and not dequeue(p, id, g, u) then return 'unknown' end
  redis.call('HSET', job, 'state', 'done')
  drop_blobs(job)
  redis.call('EXPIRE', job, ARGV[3])
  release(p, g, u)
  if redis.call('HGET', job, 'charged') == '1' then
    local units = tonumber(redis.call('HGET', job, 'units'))
    refund(p .. ':rl:u:' .. g .. ':' .. u, units)
    refund(p .. ':rl:g:' .. g, units)
  end
  redis.call('XADD', p .. ':ev:' .. id, '*', unpack(ARGV, 4))
  redis.call('EXPIRE', p .. ':ev:' .. id, ARGV[3])
  return 'dequeued'
elseif state == 'running' then
  redis.call('SET', p .. ':cancel:' .. id, '1', 'EX', ARGV[3])
  return 'stopping'
end
return 'unknown'
"""
)

# ARGV: prefix, then uids. Each waiting job leaves the rings and is held (kept, counted, not
# claimed) until RESUME; answers each job's state afterwards.
HOLD = (
    _DEQUEUE
    + """
local p = ARGV[1]
local states = {}
for i = 2, #ARGV do
  local id = ARGV[i]
  local job = p .. ':job:' .. id
  local state = redis.call('HGET', job, 'state')
  if state == 'queued' then
    dequeue(p, id, redis.call('HGET', job, 'guild'), redis.call('HGET', job, 'user'))
    redis.call('HSET', job, 'state', 'held')
    state = 'held'
  end
  table.insert(states, state or 'gone')
end
return states
"""
)

# ARGV: prefix, uid. A held job goes back into the fair order, as a newcomer.
RESUME = (
    _ENQUEUE
    + """
local p, id = ARGV[1], ARGV[2]
local job = p .. ':job:' .. id
local state = redis.call('HGET', job, 'state')
if state ~= 'held' then return state or false end
redis.call('HSET', job, 'state', 'queued')
enqueue(p, id, redis.call('HGET', job, 'guild'), redis.call('HGET', job, 'user'))
return 'queued'
"""
)

# TokenBucket: ``level`` is its refill, the cost is capped at the burst, waits in seconds.
ADMIT = """
local p, g, u = ARGV[1], ARGV[2], ARGV[3]
local units = tonumber(ARGV[4])
local user_rate, user_burst = tonumber(ARGV[5]), tonumber(ARGV[6])
local guild_rate, guild_burst = tonumber(ARGV[7]), tonumber(ARGV[8])
local max_jobs, max_depth = tonumber(ARGV[9]), tonumber(ARGV[10])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
if tonumber(redis.call('GET', p .. ':depth') or '0') >= max_depth then return {'full'} end
local active_key = p .. ':active:' .. g .. ':' .. u
local active = tonumber(redis.call('GET', active_key) or '0')
if active >= max_jobs then return {'jobs', tostring(active)} end
local function level(key, rate, burst)
  local saved = redis.call('HMGET', key, 'tokens', 'updated')
  local tokens, updated = tonumber(saved[1]), tonumber(saved[2])
  if not tokens then return burst end
  return math.min(burst, tokens + math.max(0, now - updated) * rate / 3600)
end
local user_key, guild_key = p .. ':rl:u:' .. g .. ':' .. u, p .. ':rl:g:' .. g
local user_tokens = level(user_key, user_rate, user_burst)
local guild_tokens = level(guild_key, guild_rate, guild_burst)
local user_cost, guild_cost = math.min(units, user_burst), math.min(units, guild_burst)
local user_wait = math.max(0, user_cost - user_tokens) * 3600 / user_rate
local guild_wait = math.max(0, guild_cost - guild_tokens) * 3600 / guild_rate
if user_wait > 1e-6 or guild_wait > 1e-6 then
  return {'rate', tostring(user_wait), tostring(guild_wait)}
end
redis.call('HSET', user_key, 'tokens', tostring(user_tokens - user_cost),
  'updated', tostring(now), 'burst', tostring(user_burst))
redis.call('HSET', guild_key, 'tokens', tostring(guild_tokens - guild_cost),
  'updated', tostring(now), 'burst', tostring(guild_burst))
redis.call('EXPIRE', user_key, 86400)
redis.call('EXPIRE', guild_key, 86400)
redis.call('INCR', active_key)
redis.call('EXPIRE', active_key, 86400)
redis.call('INCR', p .. ':depth')
return {'ok'}
"""

RELEASE = (
    _RELEASE
    + """
release(ARGV[1], ARGV[2], ARGV[3])
return 1
"""
)

# The rings as they stand, in ring order: a list of guilds, each a list of users' job lists.
SNAPSHOT = """
local p = ARGV[1]
local out = {}
for _, g in ipairs(redis.call('LRANGE', p .. ':q:guilds', 0, -1)) do
  local users = {}
  for _, u in ipairs(redis.call('LRANGE', p .. ':q:users:' .. g, 0, -1)) do
    table.insert(users, redis.call('LRANGE', p .. ':q:jobs:' .. g .. ':' .. u, 0, -1))
  end
  table.insert(out, users)
end
return out
"""

# The queue's depth in one read: queued, the jobs in the rings (a length per user's list, never
# a job read); running, the entries of the ``work`` stream that a worker holds (claimed, not yet
# ended: drawing, post-processed, or held by a silent worker until another takes it over).
DEPTH = """
local p = ARGV[1]
local queued = 0
for _, g in ipairs(redis.call('LRANGE', p .. ':q:guilds', 0, -1)) do
  for _, u in ipairs(redis.call('LRANGE', p .. ':q:users:' .. g, 0, -1)) do
    queued = queued + redis.call('LLEN', p .. ':q:jobs:' .. g .. ':' .. u)
  end
end
local ok, pending = pcall(redis.call, 'XPENDING', p .. ':work', 'workers')
local running = 0
if ok then running = pending[1] end  -- no stream or group yet (Redis restarted empty): none
return {queued, running}
"""

READMIT = """
local p, g, u = ARGV[1], ARGV[2], ARGV[3]
redis.call('INCR', p .. ':active:' .. g .. ':' .. u)
redis.call('INCR', p .. ':depth')
return 1
"""


class Scripts:
    """The scripts registered on one client (each runs by its hash, loaded on first use)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.push = client.register_script(PUSH)
        self.claim = client.register_script(CLAIM)
        self.finish = client.register_script(FINISH)
        self.cancel = client.register_script(CANCEL)
        self.hold = client.register_script(HOLD)
        self.resume = client.register_script(RESUME)
        self.admit = client.register_script(ADMIT)
        self.release = client.register_script(RELEASE)
        self.readmit = client.register_script(READMIT)
        self.snapshot = client.register_script(SNAPSHOT)
        self.depth = client.register_script(DEPTH)


def key(value: int | None) -> str:
    """A guild or user id as it names keys (``-``: none, the CLI's jobs)."""
    return "-" if value is None else str(value)


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def ensure_group(client: aioredis.Redis, prefix: str) -> None:
    try:
        await client.xgroup_create(f"{prefix}:work", GROUP, id="0", mkstream=True)
    except ResponseError as error:
        if "BUSYGROUP" not in str(error):
            raise


async def connect(url: str) -> aioredis.Redis:
    client = aioredis.Redis.from_url(url, decode_responses=False, socket_connect_timeout=5)
    try:
        await client.ping()
    except (OSError, aioredis.ConnectionError) as error:
        await client.aclose()
        raise OSError(f"cannot reach Redis at {url.split('@')[-1]}: {error}") from error
    return client
