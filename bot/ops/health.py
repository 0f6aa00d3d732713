"""Readiness checks for /readyz: what this process needs to do its work, and nothing further.

Every check is node-local, as AI Horde's worker heartbeat is: this process's model, its own
connections to the database and Redis, its own gateway session. None asks a shared service
about the other processes (no queue depth, no other worker's state), so one worker's trouble
never makes the others unready. A shared service that is down makes every process that needs it
unready at once, which is the truth (none of them can work); that is why the image's own
HEALTHCHECK, which an orchestrator may restart on, asks /livez and not this. Each check gets
``CHECK_TIMEOUT_S``: a database or Redis that hangs reads as not ready, never as a /readyz that
hangs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.masking import mask_text
from common.metrics import READY

if TYPE_CHECKING:
    import discord

    from generation.supervisor import WorkerSupervisor
    from storage.repositories import Storage

CHECK_TIMEOUT_S = 2.0
OK = "ok"


class NotReady(Exception):
    """A check failed; its text is the reason /readyz shows."""


@dataclass(frozen=True)
class Check:
    """One readiness check: ``probe()`` returns when ready, raises (NotReady, or whatever the
    service raised) when not."""

    name: str
    probe: Callable[[], Awaitable[None]]


async def run_checks(checks: Sequence[Check], timeout_s: float = CHECK_TIMEOUT_S) -> dict[str, str]:
    """Every check at once; each name maps to "ok" or why not. Sets ``sdbot_ready{check}``."""
    results = await asyncio.gather(*(_run(check, timeout_s) for check in checks))
    verdicts = {check.name: result for check, result in zip(checks, results, strict=True)}
    for name, verdict in verdicts.items():
        READY.labels(name).set(1 if verdict == OK else 0)
    return verdicts


async def _run(check: Check, timeout_s: float) -> str:
    try:
        await asyncio.wait_for(check.probe(), timeout_s)
    except TimeoutError:
        return f"no answer within {timeout_s:g} s"
    except NotReady as error:
        return str(error)
    except Exception as error:  # the service's own error, as it said it (a URL masked)
        return mask_text(f"{type(error).__name__}: {error}".strip().rstrip(":"))
    return OK


def model_check(supervisor: WorkerSupervisor) -> Check:
    """The model process has loaded its model once, and is not loading it again now.

    A model process that died after it had loaded is started again by the next job (the
    supervisor's way): the process can still serve, so it stays ready. Were it not, every
    worker whose model crashed would leave the balancer until a job came, and none would come.
    Jobs that keep failing are the failure alert's to tell."""
    loaded = False

    async def probe() -> None:
        nonlocal loaded
        alive, ready = supervisor.alive, supervisor.ready_info is not None
        if alive and ready:
            loaded = True
        elif alive:
            raise NotReady("the model process is loading the model")
        elif not loaded:
            raise NotReady("the model process is not running (it starts with the next job)")

    return Check("model", probe)


def database_check(storage: Storage) -> Check:
    """``SELECT 1`` through the storage's engine (its pool: a dropped connection is replaced)."""
    from sqlalchemy import text

    async def probe() -> None:
        async with storage.sessions() as session:
            await session.execute(text("SELECT 1"))

    return Check("database", probe)


class RedisCheck:
    """PING on a connection of this check's own (not the queue's pool, whose commands may be
    blocked reads); ``close`` it with the server."""

    def __init__(self, url: str, timeout_s: float = CHECK_TIMEOUT_S) -> None:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.client = aioredis.Redis.from_url(
            url,
            socket_connect_timeout=timeout_s,
            socket_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),  # one try: a Redis that is down says so at once
        )

    def check(self) -> Check:
        async def probe() -> None:
            await self.client.ping()

        return Check("redis", probe)

    async def close(self) -> None:
        await self.client.aclose()


def gateway_check(current: Callable[[], discord.Client | None]) -> Check:
    """The bot's Discord client (``current()``: `sdbot run` replaces it after a failure) is
    logged in, ready, and each of its shards' gateway connections is open."""

    async def probe() -> None:
        import discord

        client = current()
        if client is None or client.is_closed():
            raise NotReady("no Discord client is running (sdbot run is starting or restarting)")
        if not client.is_ready():
            raise NotReady("the Discord client has not connected to the gateway yet")
        if isinstance(client, discord.AutoShardedClient):
            down = sorted(shard_id for shard_id, info in client.shards.items() if info.is_closed())
            if down:
                raise NotReady(f"gateway shards {down} are not connected")

    return Check("gateway", probe)
