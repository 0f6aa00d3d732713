"""A member's entries deleted from Redis: what their jobs leave there after they end, and the
keys that name the member.

A job keeps its hash (``job:UID``: the request's payload, with its prompts, and its pictures
while it waits), its events (``ev:UID``), its result (``result:UID``: the pictures) and a cancel
flag (``cancel:UID``) for ``KEEP_S`` after it ended; see ``scripts`` for the key layout. Cancel
a job still queued first (``RedisQueue.cancel``): a queued job's hash deleted under it would
leave its uid in the fair order. A running job whose hash is gone is stopped by its worker at
its next step, and its end writes nothing back.

The keys that name the member (``forget_member_keys``), once their jobs ended:

- ``active:G:U`` (their queued and running jobs: a count) goes when it is 0; one that a job
  which did not stop still holds stays, or its end could not release it and the member would
  be let past their job limit. It expires a day after their last job was admitted.
- ``q:lastuser:G`` (who the guild's ring served last) goes when it names the member and they
  wait in no ring: it is only ever compared with the ring's front, which is then never them,
  so the next newcomer is placed as it would have been.
- ``rl:u:G:U`` (their rate-limit bucket) stays: deleting it would let a member reset their own
  limits by asking for their deletion; it holds a level and a time, no content, and expires
  within a day.
"""

from __future__ import annotations

from collections.abc import Iterable

import redis.asyncio as aioredis

from generation.queue.redis.scripts import key

JOB_KEYS = ("job", "ev", "result", "cancel")  # every key named by a job's uid
_CHUNK = 500  # jobs a pipeline

# ARGV: prefix, guild key, user key. Deletes the member's active count when it is 0 and the
# guild's last-served mark when it names them and they are not in the ring.
_FORGET_MEMBER = """
local p, g, u = ARGV[1], ARGV[2], ARGV[3]
local active = p .. ':active:' .. g .. ':' .. u
if tonumber(redis.call('GET', active) or '0') <= 0 then redis.call('DEL', active) end
local last = p .. ':q:lastuser:' .. g
if redis.call('GET', last) == u then
  for _, waiting in ipairs(redis.call('LRANGE', p .. ':q:users:' .. g, 0, -1)) do
    if waiting == u then return 0 end
  end
  redis.call('DEL', last)
end
return 1
"""


def job_keys(prefix: str, uid: str) -> list[str]:
    """The keys a job's uid names under ``prefix``."""
    return [f"{prefix}:{kind}:{uid}" for kind in JOB_KEYS]


async def _per_job(client: aioredis.Redis, prefix: str, uids: Iterable[str], delete: bool) -> int:
    """How many of the jobs have any entry (``delete``: deleting them)."""
    ordered = list(uids)
    found = 0
    for start in range(0, len(ordered), _CHUNK):
        pipe = client.pipeline(transaction=False)
        for uid in ordered[start : start + _CHUNK]:
            keys = job_keys(prefix, uid)
            if delete:
                pipe.delete(*keys)
            else:
                pipe.exists(*keys)
        found += sum(int(answer) > 0 for answer in await pipe.execute())
    return found


async def forget_jobs(client: aioredis.Redis, prefix: str, uids: Iterable[str]) -> int:
    """Deletes every entry of the jobs ``uids`` under ``prefix``; returns how many of the jobs
    had any (0 the second time)."""
    return await _per_job(client, prefix, uids, delete=True)


async def count_jobs(client: aioredis.Redis, prefix: str, uids: Iterable[str]) -> int:
    """How many jobs ``forget_jobs`` would find entries of (nothing changes)."""
    return await _per_job(client, prefix, uids, delete=False)


async def forget_member_keys(
    client: aioredis.Redis, prefix: str, user_id: int, guild_id: int | None
) -> None:
    """Deletes the keys that name the member (in ``guild_id``, or in every guild, DMs and the
    command line when None) as far as that is safe: see the module's notes."""
    if guild_id is None:
        guilds = {
            _guild_of(name, prefix)
            async for name in client.scan_iter(f"{prefix}:active:*:{user_id}", count=1000)
        }
        guilds |= {
            _guild_of(name, prefix, last=True)
            async for name in client.scan_iter(f"{prefix}:q:lastuser:*", count=1000)
        }
    else:
        guilds = {key(guild_id)}
    script = client.register_script(_FORGET_MEMBER)
    for guild in sorted(guilds):
        await script(args=[prefix, guild, key(user_id)])


def _guild_of(name: bytes | str, prefix: str, *, last: bool = False) -> str:
    """The guild key in ``PREFIX:active:G:U`` or (``last``) ``PREFIX:q:lastuser:G``."""
    text = name.decode() if isinstance(name, bytes) else name
    rest = text.removeprefix(f"{prefix}:")
    return rest.removeprefix("q:lastuser:") if last else rest.split(":")[1]
