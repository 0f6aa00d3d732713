"""A member's job entries deleted from Redis: what a job leaves there after it ends.

A job keeps its hash (``job:UID``: the request's payload, with its prompts, and its pictures
while it waits), its events (``ev:UID``), its result (``result:UID``: the pictures) and a cancel
flag (``cancel:UID``) for ``KEEP_S`` after it ended; see ``scripts`` for the key layout. Cancel
a job still queued first (``RedisQueue.cancel``): a queued job's hash deleted under it would
leave its uid in the fair order. A running job whose hash is gone is stopped by its worker at
its next step, and its end writes nothing back.
"""

from __future__ import annotations

from collections.abc import Iterable

import redis.asyncio as aioredis

JOB_KEYS = ("job", "ev", "result", "cancel")  # every key named by a job's uid
_CHUNK = 500  # keys a DEL


def job_keys(prefix: str, uid: str) -> list[str]:
    """The keys a job's uid names under ``prefix``."""
    return [f"{prefix}:{kind}:{uid}" for kind in JOB_KEYS]


async def forget_jobs(client: aioredis.Redis, prefix: str, uids: Iterable[str]) -> int:
    """Deletes every entry of the jobs ``uids`` under ``prefix``; returns how many keys there
    were (0 the second time)."""
    keys = [name for uid in uids for name in job_keys(prefix, uid)]
    deleted = 0
    for start in range(0, len(keys), _CHUNK):
        deleted += int(await client.delete(*keys[start : start + _CHUNK]))
    return deleted


async def count_jobs(client: aioredis.Redis, prefix: str, uids: Iterable[str]) -> int:
    """How many entries ``forget_jobs`` would delete (nothing changes)."""
    keys = [name for uid in uids for name in job_keys(prefix, uid)]
    found = 0
    for start in range(0, len(keys), _CHUNK):
        found += int(await client.exists(*keys[start : start + _CHUNK]))
    return found
