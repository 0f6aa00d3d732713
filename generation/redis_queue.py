"""The queue on Redis: the same fair order, limits and events as the in-process queue, for
``sdbot worker`` processes on other machines.

Layout (every key under one prefix, default ``sdbot``):

- the fair order: ``q:guilds`` (a ring of guilds with waiting jobs), ``q:users:G`` (a ring of
  users per guild), ``q:jobs:G:U`` (each user's jobs, oldest first); the same round-robin as
  ``FairQueue``, kept by Lua scripts so that every change is atomic;
Every key and event of a job is named by its ``uid`` (its record's identity, never reused), not
by its database id: a reset or restored database hands out id 1 again, and the new job 1 must
never read the old one's events or pictures. Events and results carry the uid too, and a
follower rejects any that does not match the job it follows.

- ``job:UID``: the job's request, its id, guild and user, its state (queued, running, done);
- ``work``: a stream with the consumer group ``workers``. A worker claims a job by moving it
  from the fair order into the stream and reading it in one script, so the job is a pending
  entry of that worker from the first instant. A worker that stops answering (no heartbeat
  for ``reclaim_after``) loses its entry to the next worker that looks; the delivery count
  says how often it ran, and a job whose workers died twice is failed, not retried again;
- ``ev:UID``: the job's events (started, progress, done, failed, cancelled), a stream the bot
  reads from the start, so a bot that restarts follows its jobs where they are;
- ``result:UID``: the finished images (PNG bytes) and their facts; ``cancel:UID``: a cancel
  request for a running job, read by its worker between denoising steps;
- ``rl:…``, ``active:…``, ``depth``: token buckets, per-user counts and the queue bound, with
  the same rules and messages as ``generation.limits``; a job cancelled while queued gives its
  units back to its buckets, as in-process.

Requests and results travel as JSON and PNG bytes, never pickles: a Redis shared by several
machines must not be a way to run code on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import socket
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import redis.asyncio as aioredis
from PIL import Image
from redis.exceptions import ResponseError

from generation.errors import GenerationError, JobCancelled
from generation.limits import Limits, over_rate, queue_full, too_many_jobs
from generation.options import GenerationOptions
from generation.protocol import Progress, VariantImage, WorkRequest, WorkResult
from generation.queue import (
    Cancelled,
    CancelOutcome,
    Done,
    Failed,
    JobEvent,
    JobHandle,
    Queued,
    QueuedJob,
    Started,
    Throughput,
)
from generation.supervisor import WorkerSupervisor
from moderation.safety import SafetyResult

log = logging.getLogger(__name__)

GROUP = "workers"
KEEP_S = 24 * 3600  # events and results of a finished job stay a day

_FAIR_POP = """
local p = ARGV[1]
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
"""

_RELEASE = """
local function release(p, g, u)
  local active = p .. ':active:' .. g .. ':' .. u
  if tonumber(redis.call('GET', active) or '0') > 0 then redis.call('DECR', active) end
  local depth = p .. ':depth'
  if tonumber(redis.call('GET', depth) or '0') > 0 then redis.call('DECR', depth) end
end
"""

PUSH = """
local p, id, g, u = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
redis.call('HSET', p .. ':job:' .. id, 'payload', ARGV[5], 'guild', g, 'user', u,
  'state', 'queued', 'units', ARGV[6], 'charged', ARGV[7], 'id', ARGV[8])
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
return 1
"""

CLAIM = (
    "local function fair_pop()\n"
    + _FAIR_POP
    + "\nend\n"
    + """
local p, consumer = ARGV[1], ARGV[2]
local id = fair_pop()
if not id then return false end
local job = p .. ':job:' .. id
redis.call('HSET', job, 'state', 'running')
redis.call('XADD', p .. ':work', '*', 'job', id)
local read = redis.call('XREADGROUP', 'GROUP', 'workers', consumer, 'COUNT', 1,
  'STREAMS', p .. ':work', '>')
local entry = read[1][2][1]
local claimed = entry[2][2]
return {entry[1], claimed, redis.call('HGET', p .. ':job:' .. claimed, 'payload'), 1}
"""
)

RECLAIM = """
local p, consumer, idle = ARGV[1], ARGV[2], ARGV[3]
local pending = redis.call('XPENDING', p .. ':work', 'workers', 'IDLE', idle, '-', '+', 1)
if #pending == 0 then return false end
local entry, previous, deliveries = pending[1][1], pending[1][2], pending[1][4]
local claimed = redis.call('XCLAIM', p .. ':work', 'workers', consumer, idle, entry)
if #claimed == 0 or not claimed[1] then return false end
local id = claimed[1][2][2]
return {entry, id, redis.call('HGET', p .. ':job:' .. id, 'payload'), deliveries + 1, previous}
"""

FINISH = (
    _RELEASE
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
redis.call('EXPIRE', job, ARGV[4])
redis.call('DEL', p .. ':cancel:' .. id)
-- the terminal event goes out with the ack, so that nobody sees one without the other
local events = p .. ':ev:' .. id
redis.call('XADD', events, '*', unpack(ARGV, 5))
redis.call('EXPIRE', events, ARGV[4])
return 1
"""
)

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

CANCEL = (
    _RELEASE
    + _REFUND
    + """
local p, id = ARGV[1], ARGV[2]
local job = p .. ':job:' .. id
local state = redis.call('HGET', job, 'state')
if state == 'queued' then
  local g, u = redis.call('HGET', job, 'guild'), redis.call('HGET', job, 'user')
  local guilds, users = p .. ':q:guilds', p .. ':q:users:' .. g
  local jobs = p .. ':q:jobs:' .. g .. ':' .. u
  if redis.call('LREM', jobs, 0, id) == 0 then return 'unknown' end
  if redis.call('LLEN', jobs) == 0 then redis.call('LREM', users, 0, u) end
  if redis.call('LLEN', users) == 0 then redis.call('LREM', guilds, 0, g) end
  redis.call('HSET', job, 'state', 'done')
  redis.call('EXPIRE', job, ARGV[3])
  release(p, g, u)
  if redis.call('HGET', job, 'charged') == '1' then
    local units = tonumber(redis.call('HGET', job, 'units'))
    refund(p .. ':rl:u:' .. g .. ':' .. u, units)
    refund(p .. ':rl:g:' .. g, units)
  end
  redis.call('XADD', p .. ':ev:' .. id, '*', 'type', 'cancelled',
    'reason', 'cancelled while queued', 'uid', id)
  redis.call('EXPIRE', p .. ':ev:' .. id, ARGV[3])
  return 'dequeued'
elseif state == 'running' then
  redis.call('SET', p .. ':cancel:' .. id, '1', 'EX', ARGV[3])
  return 'stopping'
end
return 'unknown'
"""
)

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

HEARTBEAT = """
local p, consumer, entry = ARGV[1], ARGV[2], ARGV[3]
local pending = redis.call('XPENDING', p .. ':work', 'workers', entry, entry, 1)
if #pending == 0 or pending[1][2] ~= consumer then return 0 end
redis.call('XCLAIM', p .. ':work', 'workers', consumer, 0, entry, 'JUSTID')
return 1
"""

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

READMIT = """
local p, g, u = ARGV[1], ARGV[2], ARGV[3]
redis.call('INCR', p .. ':active:' .. g .. ':' .. u)
redis.call('INCR', p .. ':depth')
return 1
"""


def _key(value: int | None) -> str:
    return "-" if value is None else str(value)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def encode_request(request: WorkRequest, uid: str) -> str:
    return json.dumps({"job_id": request.job_id, "uid": uid, "options": asdict(request.options)})


def decode_request(payload: bytes | str) -> WorkRequest:
    return decode_payload(payload)[0]


def decode_payload(payload: bytes | str) -> tuple[WorkRequest, str]:
    """The request and the job's uid."""
    data = json.loads(payload)
    options = data["options"]
    options["seeds"] = tuple(options["seeds"])
    return WorkRequest(int(data["job_id"]), GenerationOptions(**options)), str(data["uid"])


def _image_facts(image: VariantImage) -> dict[str, Any]:
    return {
        "variant": image.variant,
        "seed": image.seed,
        "width": image.width,
        "height": image.height,
        "sha256": image.sha256,
        "watermark_id": image.watermark_id,
        "watermark_verified": image.watermark_verified,
        "nsfw_score": image.safety.nsfw_score,
        "model_flagged": image.safety.model_flagged,
    }


def encode_result(result: WorkResult, uid: str) -> dict[str, bytes | str]:
    meta = {
        "job_id": result.job_id,
        "uid": uid,
        "diffusion_ms": result.diffusion_ms,
        "postprocess_ms": result.postprocess_ms,
        "images": [_image_facts(image) for image in result.images],
    }
    fields: dict[str, bytes | str] = {"meta": json.dumps(meta)}
    for image in result.images:
        fields[f"png:{image.variant}"] = image.png
    return fields


class ForeignResult(ValueError):
    """A result that belongs to another job than the one read for."""


def decode_result(fields: dict[bytes, bytes], uid: str) -> WorkResult:
    meta = json.loads(fields[b"meta"])
    if meta.get("uid") != uid:
        raise ForeignResult(f"the result belongs to job uid {meta.get('uid')!r}, not {uid!r}")
    images = []
    for facts in meta["images"]:
        png = fields[f"png:{facts['variant']}".encode()]
        with Image.open(io.BytesIO(png)) as opened:
            rgb = np.asarray(opened.convert("RGB"))
        images.append(
            VariantImage(
                variant=facts["variant"],
                seed=facts["seed"],
                png=png,
                rgb=rgb,
                width=facts["width"],
                height=facts["height"],
                sha256=facts["sha256"],
                watermark_id=facts["watermark_id"],
                watermark_verified=facts["watermark_verified"],
                safety=SafetyResult(facts["nsfw_score"], facts["model_flagged"]),
            )
        )
    return WorkResult(meta["job_id"], tuple(images), meta["diffusion_ms"], meta["postprocess_ms"])


class _Scripts:
    def __init__(self, client: aioredis.Redis) -> None:
        self.push = client.register_script(PUSH)
        self.claim = client.register_script(CLAIM)
        self.reclaim = client.register_script(RECLAIM)
        self.finish = client.register_script(FINISH)
        self.cancel = client.register_script(CANCEL)
        self.admit = client.register_script(ADMIT)
        self.release = client.register_script(RELEASE)
        self.readmit = client.register_script(READMIT)
        self.heartbeat = client.register_script(HEARTBEAT)
        self.snapshot = client.register_script(SNAPSHOT)


async def _ensure_group(client: aioredis.Redis, prefix: str) -> None:
    try:
        await client.xgroup_create(f"{prefix}:work", GROUP, id="0", mkstream=True)
    except ResponseError as error:
        if "BUSYGROUP" not in str(error):
            raise


async def _connect(url: str) -> aioredis.Redis:
    client = aioredis.Redis.from_url(url, decode_responses=False)
    try:
        await client.ping()
    except (OSError, aioredis.ConnectionError) as error:
        await client.aclose()
        raise OSError(f"cannot reach Redis at {url.split('@')[-1]}: {error}") from error
    return client


class RedisQueue:
    """The bot's side: admission, submission, cancels, and each job's events."""

    def __init__(
        self, client: aioredis.Redis, prefix: str, poll_s: float = 1.0, lost_after_s: float = 60.0
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.poll_s = poll_s
        self.lost_after_s = lost_after_s  # unreachable this long: the followed jobs fail
        self.read_block_ms = 200  # how late a newly followed job's first event may be read
        self.scripts = _Scripts(client)
        # Followed jobs by uid (their keys' names); the job id only names them to the caller.
        self._handles: dict[str, JobHandle] = {}
        self._last: dict[str, bytes] = {}
        self._uids: dict[int, str] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._lost_since: float | None = None

    @classmethod
    async def connect(
        cls, url: str, *, prefix: str = "sdbot", lost_after_s: float = 60.0
    ) -> RedisQueue:
        client = await _connect(url)
        await _ensure_group(client, prefix)
        return cls(client, prefix, lost_after_s=lost_after_s)

    async def start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._read_events(), name="sdbot-events"),
                asyncio.create_task(self._announce(), name="sdbot-positions"),
            ]

    async def hold(self) -> set[int]:
        """Nothing to hold: the workers are processes of their own and go on; jobs this bot
        stops following are picked up again at its next start. Returns no ids."""
        return set()

    async def close(self) -> None:
        """Stops following; the jobs live on in Redis and the workers keep running them."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self.client.aclose()

    async def admit(
        self, guild_id: int | None, user_id: int | None, units: float, limits: Limits
    ) -> None:
        answer = await self.scripts.admit(
            args=[
                self.prefix,
                _key(guild_id),
                _key(user_id),
                repr(units),
                limits.user_units_per_hour,
                limits.user_burst,
                limits.guild_units_per_hour,
                limits.guild_burst,
                limits.max_jobs_per_user,
                limits.max_queue_depth,
            ]
        )
        kind = _text(answer[0])
        if kind == "full":
            raise queue_full(limits)
        if kind == "jobs":
            raise too_many_jobs(int(answer[1]), limits)
        if kind == "rate":
            raise over_rate(float(answer[1]), float(answer[2]), limits)

    async def release(self, guild_id: int | None, user_id: int | None) -> None:
        await self.scripts.release(args=[self.prefix, _key(guild_id), _key(user_id)])

    async def submit(self, job: QueuedJob, *, readmit: bool = False) -> JobHandle:
        if readmit:
            await self.scripts.readmit(args=[self.prefix, _key(job.guild_id), _key(job.user_id)])
        await self.scripts.push(
            args=[
                self.prefix,
                job.uid,
                _key(job.guild_id),
                _key(job.user_id),
                encode_request(job.request, job.uid),
                repr(job.units),
                "0" if readmit else "1",  # a readmitted job was charged before, or never
                job.job_id,
            ]
        )
        handle = await self._follow(job.job_id, job.uid)
        if not await self.client.zcount(f"{self.prefix}:workers", time.time() - 60, "+inf"):
            log.warning(
                "job %d waits in Redis, but no sdbot worker was seen in the last minute "
                "(prefix %s)",
                job.job_id,
                self.prefix,
            )
        place = (await self.positions_by_uid()).get(job.uid)
        if place is not None:  # the first answer says where it stands, at once
            handle.put(place)
        return handle

    async def attach(self, job_id: int, uid: str | None = None) -> JobHandle | None:
        """Follows a job Redis still holds (after a restart of the bot), from its first event."""
        uid = uid or self._uids.get(job_id)
        if uid is None:
            return None
        if uid in self._handles:
            return self._handles[uid]
        if not await self.client.exists(f"{self.prefix}:job:{uid}"):
            return None
        return await self._follow(job_id, uid)

    async def cancel(self, job_id: int, uid: str | None = None) -> str:
        uid = uid or self._uids.get(job_id)
        if uid is None:  # never followed here, and no identity: nothing it could name
            return CancelOutcome.UNKNOWN
        answer = _text(await self.scripts.cancel(args=[self.prefix, uid, KEEP_S]))
        return {
            "dequeued": CancelOutcome.DEQUEUED,
            "stopping": CancelOutcome.STOPPING,
        }.get(answer, CancelOutcome.UNKNOWN)

    async def _follow(self, job_id: int, uid: str) -> JobHandle:
        await self.start()
        handle = JobHandle(job_id)
        self._handles[uid] = handle
        self._uids[job_id] = uid
        self._last[uid] = b"0"  # from its first event: a restarted bot catches up
        return handle

    def _end(self, uid: str, event: Failed) -> None:
        handle = self._handles.pop(uid, None)
        self._last.pop(uid, None)
        if handle is not None:
            handle.put(event)

    async def _lost(self, error: Exception) -> None:
        """Redis does not answer: after ``lost_after_s`` every followed job fails, with why."""
        now = time.monotonic()
        if self._lost_since is None:
            self._lost_since = now
            log.warning("lost Redis: %s; followed jobs fail in %.0f s", error, self.lost_after_s)
        elif now - self._lost_since >= self.lost_after_s:
            reason = (
                f"lost the Redis queue for {now - self._lost_since:.0f} s "
                f"(SDBOT_REDIS_LOST_S is {self.lost_after_s:g}): {error}"
            )
            for uid in list(self._handles):
                self._end(uid, Failed(reason))
        await asyncio.sleep(min(1.0, self.lost_after_s / 4))

    async def _found_again(self) -> None:
        """Redis answers again: a followed job whose key is gone (Redis restarted empty) fails
        now rather than waiting for events that will never come."""
        self._lost_since = None
        log.warning("Redis answers again")
        for uid in list(self._handles):
            if not await self.client.exists(f"{self.prefix}:job:{uid}"):
                self._end(uid, Failed("Redis lost the job (it restarted without its data)"))

    async def _read_events(self) -> None:
        """One reader for every followed job: a blocking XREAD over all their streams."""
        while True:
            if not self._handles:
                await asyncio.sleep(self.read_block_ms / 1000)
                continue
            streams: Any = {f"{self.prefix}:ev:{uid}": last for uid, last in self._last.items()}
            try:
                answer: Any = await self.client.xread(streams, count=100, block=self.read_block_ms)
                if self._lost_since is not None:
                    await self._found_again()
            except aioredis.RedisError as error:
                await self._lost(error)
                continue
            for stream, entries in answer or ():
                uid = _text(stream).rsplit(":", 1)[1]
                handle = self._handles.get(uid)
                for entry_id, fields in entries:
                    if handle is None:
                        break
                    self._last[uid] = entry_id
                    event = await self._event(handle.job_id, uid, fields)
                    if event is None:
                        continue
                    handle.put(event)
                    if isinstance(event, Done | Failed | Cancelled):
                        del self._handles[uid], self._last[uid]
                        handle = None

    async def _event(self, job_id: int, uid: str, fields: dict[bytes, bytes]) -> JobEvent | None:
        """The job's event, or None for one that names another job (rejected, logged)."""
        named = _text(fields.get(b"uid", b""))
        if named != uid:
            log.warning("job %d ◆ rejected an event of job uid %r (this is %s)", job_id, named, uid)
            return None
        kind = _text(fields[b"type"])
        if kind == "started":
            return Started(int(fields[b"attempt"]), _text(fields[b"worker"]))
        if kind == "progress":
            return Progress(job_id, int(fields[b"step"]), int(fields[b"total"]))
        if kind == "done":
            stored: Any = await self.client.hgetall(f"{self.prefix}:result:{uid}")
            if not stored:
                return Failed("the worker's result expired before it was read")
            try:
                return Done(await asyncio.to_thread(decode_result, stored, uid))
            except ForeignResult as error:
                return Failed(f"rejected the result in Redis: {error}")
        if kind == "cancelled":
            return Cancelled(_text(fields[b"reason"]))
        return Failed(_text(fields.get(b"reason", b"the worker failed")))

    async def positions(self) -> dict[int, Queued]:
        """Every queued job's place in the fair order and its ETA, by job id."""
        places = await self.positions_by_uid()
        if not places:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for uid in places:
            pipe.hget(f"{self.prefix}:job:{uid}", "id")
        ids = await pipe.execute()
        return {int(job_id): place for job_id, place in zip(ids, places.values(), strict=True)}

    async def positions_by_uid(self) -> dict[str, Queued]:
        """Every queued job's place in the fair order and its ETA from the workers' pace."""
        p = self.prefix
        snapshot: Any = await self.scripts.snapshot(args=[p])  # one consistent read
        rings: deque[deque[deque[str]]] = deque()
        for users in snapshot:
            ring = deque(deque(_text(j) for j in jobs) for jobs in users if jobs)
            if ring:
                rings.append(ring)
        order: list[str] = []
        while rings:  # the round-robin of FairQueue.order, over what Redis holds
            ring = rings.popleft()
            jobs = ring.popleft()
            order.append(jobs.popleft())
            if jobs:
                ring.append(jobs)
            if ring:
                rings.append(ring)
        if not order:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for uid in order:
            pipe.hget(f"{p}:job:{uid}", "units")
        pipe.hget(f"{p}:stats", "seconds_per_unit")
        pipe.zcount(f"{p}:workers", time.time() - 60, "+inf")
        *units, pace, workers = await pipe.execute()
        throughput = Throughput(None if pace is None else float(pace))
        out, ahead_units = {}, 0.0
        for ahead, (uid, cost) in enumerate(zip(order, units, strict=True)):
            ahead_units += float(cost or 0)
            out[uid] = Queued(ahead, throughput.eta(ahead_units, int(workers)))
        return out

    async def _announce(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            if not self._handles:
                continue
            try:
                places = await self.positions_by_uid()
            except aioredis.RedisError as error:
                log.debug("could not read the queue's order: %s", error)
                continue
            for uid, place in places.items():
                handle = self._handles.get(uid)
                if handle is not None:
                    handle.put(place)


@dataclass(frozen=True)
class Claimed:
    entry: bytes
    request: WorkRequest
    deliveries: int
    previous: str = ""
    uid: str = ""  # the job's identity: names its keys and travels in its events


class RedisWorker:
    """``sdbot worker``: takes jobs from Redis in fair order and runs them on its model process.

    It heartbeats while a job runs; a worker silent for ``reclaim_after_s`` loses its job to
    the next worker that looks. Cancels are read between denoising steps.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        supervisor: WorkerSupervisor,
        *,
        prefix: str = "sdbot",
        name: str | None = None,
        reclaim_after_s: float = 60.0,
    ) -> None:
        self.client = client
        self.supervisor = supervisor
        self.prefix = prefix
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.reclaim_after_s = reclaim_after_s
        self.scripts = _Scripts(client)
        self.throughput = Throughput()
        self.jobs_done = 0  # ended here: done, failed or cancelled

    @classmethod
    async def connect(cls, url: str, supervisor: WorkerSupervisor, **options: Any) -> RedisWorker:
        client = await _connect(url)
        await _ensure_group(client, options.get("prefix", "sdbot"))
        return cls(client, supervisor, **options)

    async def close(self) -> None:
        await self.client.aclose()

    async def run(self, stop: asyncio.Event) -> None:
        await self.supervisor.start()
        await self._seen()
        log.info("worker %s ◆ waiting for jobs ◆ prefix %s", self.name, self.prefix)
        while not stop.is_set():
            try:
                await self._step()
            except ResponseError as error:
                if "NOGROUP" not in str(error):
                    log.warning("worker %s ◆ Redis: %s; retrying in 1 s", self.name, error)
                    await asyncio.sleep(1)
                    continue
                # Redis came back empty (restarted without its data): the stream and its
                # consumer group are made again, as at connect.
                await _ensure_group(self.client, self.prefix)
                log.warning("worker %s ◆ Redis lost the consumer group; made it again", self.name)
            except aioredis.RedisError as error:  # Redis restarting: try again in a moment
                log.warning("worker %s ◆ Redis: %s; retrying in 1 s", self.name, error)
                await asyncio.sleep(1)

    async def _step(self) -> None:
        """Takes and runs one job, or waits (at most about a second) for one."""
        claimed = await self.next_job()
        if claimed is None:
            await self._seen()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.client.blpop([f"{self.prefix}:wake"], timeout=1), 5)
            return
        await self.process(claimed)

    async def next_job(self) -> Claimed | None:
        """A job whose worker went silent first, else the next one in fair order."""
        idle_ms = int(self.reclaim_after_s * 1000)
        answer = await self.scripts.reclaim(args=[self.prefix, self.name, idle_ms])
        if not answer:
            answer = await self.scripts.claim(args=[self.prefix, self.name])
        if not answer:
            return None
        entry, _, payload, deliveries, *previous = answer
        request, uid = decode_payload(payload)
        return Claimed(entry, request, int(deliveries), _text(previous[0]) if previous else "", uid)

    async def _seen(self) -> None:
        await self.client.zadd(f"{self.prefix}:workers", {self.name: time.time()})

    async def _event(self, uid: str, **fields: Any) -> None:
        stream = f"{self.prefix}:ev:{uid}"
        values = {k: str(v) for k, v in fields.items()} | {"uid": uid}
        await self.client.xadd(stream, values, maxlen=1000)  # type: ignore[arg-type]
        await self.client.expire(stream, KEEP_S)

    async def _heartbeat(self, entry: bytes) -> None:
        while True:
            await asyncio.sleep(self.reclaim_after_s / 4)
            try:
                if not await self.scripts.heartbeat(args=[self.prefix, self.name, entry]):
                    log.warning("lost entry %s to another worker (this one was silent)", entry)
                    return
                await self._seen()
            except aioredis.RedisError as error:  # Redis away: the job goes on meanwhile
                log.warning("worker %s ◆ heartbeat: %s", self.name, error)

    async def process(self, claimed: Claimed) -> None:
        job_id = claimed.request.job_id
        ending: dict[str, Any] = {"type": "failed", "reason": "the worker stopped"}
        try:
            if claimed.deliveries > 2:
                reason = f"its worker went away twice (last: {claimed.previous}); not retried again"
                log.warning("job %d ◆ %s", job_id, reason)
                ending = {"type": "failed", "reason": reason}
                return
            if claimed.deliveries > 1:
                log.warning("job %d ◆ taken over from %s", job_id, claimed.previous)
            await self._event(
                claimed.uid, type="started", attempt=claimed.deliveries, worker=self.name
            )
            ending = await self._run(claimed)
        except asyncio.CancelledError:  # stopped at once: the entry stays for another worker
            raise
        finally:
            self.jobs_done += 1
            if not _being_cancelled():
                ending["uid"] = claimed.uid
                fields = [str(item) for pair in ending.items() for item in pair]
                await self.scripts.finish(
                    args=[self.prefix, claimed.entry, claimed.uid, KEEP_S, *fields]
                )

    async def _run(self, claimed: Claimed) -> dict[str, Any]:
        """Runs the job; returns its terminal event (its result is stored first)."""
        request, job_id = claimed.request, claimed.request.job_id
        cancel_key = f"{self.prefix}:cancel:{claimed.uid}"
        heartbeat = asyncio.create_task(self._heartbeat(claimed.entry))

        async def on_progress(progress: Progress) -> None:
            try:
                await self._event(
                    claimed.uid, type="progress", step=progress.step, total=progress.total
                )
                pipe = self.client.pipeline(transaction=False)
                pipe.exists(cancel_key)
                pipe.exists(f"{self.prefix}:job:{claimed.uid}")
                wanted_stop, known = await pipe.execute()
                if wanted_stop:
                    self.supervisor.cancel(job_id)
                elif not known:  # Redis restarted empty: nobody waits for this job any more
                    log.warning("job %d ◆ Redis no longer knows it; stopping it", job_id)
                    self.supervisor.cancel(job_id)
            except aioredis.RedisError as error:  # the job goes on; its end is told if it can be
                log.debug("job %d ◆ progress not sent: %s", job_id, error)

        started = time.perf_counter()
        try:
            result = await self.supervisor.run(request, on_progress)
        except JobCancelled as cancelled:
            return {"type": "cancelled", "reason": str(cancelled)}
        except GenerationError as error:  # failed, crashed or stalled: the worker restarts it
            return {"type": "failed", "reason": str(error)}
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        units = QueuedJob(request, None, None).units
        self.throughput.record(units, time.perf_counter() - started)
        result_key = f"{self.prefix}:result:{claimed.uid}"
        fields = encode_result(result, claimed.uid)
        await self.client.hset(result_key, mapping=fields)  # type: ignore[arg-type]
        await self.client.expire(result_key, KEEP_S)
        if self.throughput.seconds_per_unit is not None:
            await self.client.hset(
                f"{self.prefix}:stats", "seconds_per_unit", self.throughput.seconds_per_unit
            )
        log.info(
            "job %d done ◆ %d images ◆ %d steps", job_id, len(result.images), request.options.steps
        )
        return {"type": "done"}


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
