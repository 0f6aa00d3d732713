"""A load scenario: N guilds × M members sending slash commands at once for a bounded time,
with the acknowledgement latency of every interaction recorded."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from fake_discord.server import FakeDiscord, Interaction


@dataclass
class LoadReport:
    guilds: int
    users_per_guild: int
    seconds: float
    interactions: list[Interaction] = field(default_factory=list)

    @property
    def latencies(self) -> list[float]:
        return sorted(i.ack_latency for i in self.interactions if i.ack_latency is not None)

    @property
    def unanswered(self) -> list[Interaction]:
        return [i for i in self.interactions if not i.responded]

    def percentile(self, q: float) -> float:
        values = self.latencies
        return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")

    def summary(self) -> dict[str, Any]:
        values = self.latencies
        return {
            "guilds": self.guilds,
            "users_per_guild": self.users_per_guild,
            "seconds": self.seconds,
            "interactions": len(self.interactions),
            "unanswered": len(self.unanswered),
            "ack_p50_ms": round(statistics.median(values) * 1000, 2) if values else None,
            "ack_p99_ms": round(self.percentile(0.99) * 1000, 2) if values else None,
            "ack_max_ms": round(values[-1] * 1000, 2) if values else None,
        }


async def run_load(
    fake: FakeDiscord,
    *,
    guilds: int,
    users_per_guild: int,
    seconds: float,
    command: str,
    think_time: tuple[float, float] = (0.05, 0.2),
    ack_timeout: float = 5.0,
    seed: int = 0,
    **options: Any,
) -> LoadReport:
    """Every member sends ``/command`` and waits for its acknowledgement (or ``ack_timeout``),
    thinks for a moment, and sends again, until ``seconds`` have passed."""
    rng = random.Random(seed)
    report = LoadReport(guilds, users_per_guild, seconds)
    members = []
    for g in range(guilds):
        guild = fake.create_guild(f"load-{g}")
        channel = fake.create_channel(guild, "images")
        for u in range(users_per_guild):
            user = fake.create_user(f"user-{g}-{u}")
            fake.add_member(guild, user)
            members.append((user, channel))
    deadline = time.monotonic() + seconds

    async def member(user: Any, channel: Any, pause: float) -> None:
        await asyncio.sleep(pause)
        while time.monotonic() < deadline:
            interaction = await fake.slash(user, channel, command, **options)
            report.interactions.append(interaction)
            with contextlib.suppress(TimeoutError):  # an unanswered one stays in the report
                await asyncio.wait_for(interaction.acknowledged.wait(), ack_timeout)
            await asyncio.sleep(rng.uniform(*think_time))

    await asyncio.gather(
        *(member(user, channel, rng.uniform(0, think_time[1])) for user, channel in members)
    )
    return report


async def _main(guilds: int, users: int, seconds: float) -> None:
    """The load scenario against the probe bot (the harness's own ceiling; the real bot's figures
    come from `sdbot bench discord`)."""
    from bot.discord import endpoints
    from bot.discord.endpoints import Endpoints
    from fake_discord.probe import ProbeBot

    fake = await FakeDiscord().start()
    before = endpoints.use(Endpoints(fake.api_url, fake.gateway_url))
    client = ProbeBot()
    task = asyncio.create_task(client.start(fake.token))
    try:
        await asyncio.wait_for(client.wait_until_ready(), 60)
        report = await run_load(
            fake, guilds=guilds, users_per_guild=users, seconds=seconds, command="echo", text="hi"
        )
        print(json.dumps(report.summary()))
    finally:
        await client.close()
        await task
        endpoints.use(before)
        await fake.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="the fake Discord's load scenario")
    parser.add_argument("--guilds", type=int, default=10)
    parser.add_argument("--users", type=int, default=10, help="members per guild")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    asyncio.run(_main(args.guilds, args.users, args.seconds))
