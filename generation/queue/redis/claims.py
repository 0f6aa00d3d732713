"""The Lua a worker claims batches with, and holds them by.

``CLAIM_BATCH`` is ``generation.queue.batch.take_batch`` on the rings in Redis: the next job in
fair order (``FairQueue.pop``, the ``CLAIM`` script's pop), then the next queued jobs in fair
order whose batch key digest (in the job's ``batch`` field, written at submit) equals the head's,
within ``max_jobs`` jobs and ``max_images`` images; they leave the rings as ``FairQueue.cancel``
takes a job out, so they only move earlier. The walk looks at most ``lookahead`` queued jobs
past the head, so that one claim's cost is bounded however deep the queue. A job queued without
a ``batch`` (by an older version) runs alone.

Every job claimed is added to the ``work`` stream and read by the claiming worker in the same
script, so each is that worker's pending entry from the first instant, with its own delivery
count. ``RECLAIM_BATCH`` takes over the entries of a silent worker the same way: the oldest idle
entry, and idle entries whose jobs share its key. ``HEARTBEAT_ALL`` keeps every entry a worker
holds from going idle and names the ones it lost.

Each claimed job is answered as: stream entry, uid, payload, deliveries, previous consumer
(``''``: none), guild (as it names keys: ``-`` for none; for the worker's log lines), then its
blobs.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from generation.queue.redis.scripts import _BLOBS, _DEQUEUE, _FAIR_POP

# The queued jobs in the order FairQueue.pop would give them (generation.queue.fair.fair_order),
# read lazily: visit(id, guild, user) is called for each until it answers true or ``limit``
# jobs were visited. No list is read past ``limit`` items: no more are ever visited.
_FAIR_WALK = """
local function fair_walk(p, limit, visit)
  local ring, head, seen = {}, 1, 0
  for _, g in ipairs(redis.call('LRANGE', p .. ':q:guilds', 0, limit - 1)) do
    table.insert(ring, {g = g})
  end
  while head <= #ring and seen < limit do
    local guild = ring[head]
    head = head + 1
    if not guild.users then
      guild.users, guild.next = {}, 1
      for _, u in ipairs(redis.call('LRANGE', p .. ':q:users:' .. guild.g, 0, limit - 1)) do
        table.insert(guild.users, {u = u})
      end
    end
    local user = guild.users[guild.next]
    guild.next = guild.next + 1
    if not user.jobs then
      user.jobs = redis.call('LRANGE', p .. ':q:jobs:' .. guild.g .. ':' .. user.u, 0, limit - 1)
      user.next = 1
    end
    local id = user.jobs[user.next]
    user.next = user.next + 1
    seen = seen + 1
    if visit(id, guild.g, user.u) then return end
    if user.next <= #user.jobs then table.insert(guild.users, user) end
    if guild.next <= #guild.users then table.insert(ring, guild) end
  end
end
"""

# A job's batch key digest (false: it has none) and its image count.
_BATCH_OF = """
local function batch_of(job)
  local field = redis.call('HGET', job, 'batch')
  if not field then return false, 1 end
  local images, key = string.match(field, '^(%d+) (%x+)$')
  return key or false, tonumber(images or '1')
end
"""

# ARGV: prefix, consumer, max jobs, max images, lookahead
CLAIM_BATCH = (
    _FAIR_POP
    + _DEQUEUE
    + _BLOBS
    + _FAIR_WALK
    + _BATCH_OF
    + """
local p, consumer = ARGV[1], ARGV[2]
local max_jobs, max_images, lookahead = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local head = fair_pop(p)
if not head then return false end
local ids = {head}
local key, images = batch_of(p .. ':job:' .. head)
if key and max_jobs > 1 then
  local companions = {}
  fair_walk(p, lookahead, function(id, g, u)
    local other, size = batch_of(p .. ':job:' .. id)
    if other == key and images + size <= max_images then
      table.insert(companions, {id, g, u})
      images = images + size
    end
    return 1 + #companions >= max_jobs
  end)
  for _, c in ipairs(companions) do
    dequeue(p, c[1], c[2], c[3])
    table.insert(ids, c[1])
  end
end
for _, id in ipairs(ids) do
  redis.call('HSET', p .. ':job:' .. id, 'state', 'running')
  redis.call('XADD', p .. ':work', '*', 'job', id)
end
local read = redis.call('XREADGROUP', 'GROUP', 'workers', consumer, 'COUNT', #ids,
  'STREAMS', p .. ':work', '>')
local out = {}
for _, entry in ipairs(read[1][2]) do
  local job = p .. ':job:' .. entry[2][2]
  table.insert(out, with_blobs({entry[1], entry[2][2], redis.call('HGET', job, 'payload'), 1, '',
    redis.call('HGET', job, 'guild') or '-'}, job))
end
return out
"""
)

# ARGV: prefix, consumer, idle ms, max jobs, max images, lookahead
RECLAIM_BATCH = (
    _BLOBS
    + _BATCH_OF
    + """
local p, consumer, idle = ARGV[1], ARGV[2], ARGV[3]
local max_jobs, max_images, lookahead = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local stream = p .. ':work'
local pending = redis.call('XPENDING', stream, 'workers', 'IDLE', idle, '-', '+', lookahead)
local out, key, images = {}, nil, 0
for _, row in ipairs(pending) do
  if #out >= max_jobs or (#out > 0 and not key) then break end
  local entry, previous, deliveries = row[1], row[2], row[4]
  local found = redis.call('XRANGE', stream, entry, entry)
  if #found == 0 then  -- deleted while pending: nothing to run, and nobody to wait for it
    redis.call('XACK', stream, 'workers', entry)
  else
    local id = found[1][2][2]
    local job = p .. ':job:' .. id
    local other, size = batch_of(job)
    if #out == 0 or (other == key and images + size <= max_images) then
      if #out == 0 then key = other end
      images = images + size
      redis.call('XCLAIM', stream, 'workers', consumer, idle, entry)  -- counts a delivery
      table.insert(out, with_blobs({entry, id, redis.call('HGET', job, 'payload'),
        deliveries + 1, previous, redis.call('HGET', job, 'guild') or '-'}, job))
    end
  end
end
if #out == 0 then return false end
return out
"""
)

# ARGV: prefix, consumer, then the entries it holds; answers the ones another worker took
HEARTBEAT_ALL = """
local p, consumer = ARGV[1], ARGV[2]
local lost = {}
for i = 3, #ARGV do
  local entry = ARGV[i]
  local pending = redis.call('XPENDING', p .. ':work', 'workers', entry, entry, 1)
  if #pending == 0 or pending[1][2] ~= consumer then
    table.insert(lost, entry)
  else
    redis.call('XCLAIM', p .. ':work', 'workers', consumer, 0, entry, 'JUSTID')
  end
end
return lost
"""


class Claims:
    """The batch claims, registered on one client."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.claim = client.register_script(CLAIM_BATCH)
        self.reclaim = client.register_script(RECLAIM_BATCH)
        self.heartbeat = client.register_script(HEARTBEAT_ALL)
