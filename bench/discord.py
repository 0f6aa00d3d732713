"""`sdbot bench discord`: the bot as members meet it, on the fake Discord.

The real discord.py client, the real service and worker process, a scratch SQLite database: N
guilds × M members each send /imagine, all at once or spread evenly over ``spread_s`` seconds (a
long queue forms either way), and every interaction's
acknowledgement latency (command sent → the bot's first response) and end-to-end time (command
sent → the grid posted with its controls) is recorded. The fake Discord lives in ``tests/``, so
this runs from a source checkout; it is imported in one place, inside ``measure_discord``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.scratch import scratch_settings
from bot.settings import Settings
from storage import migrations


@dataclass(frozen=True)
class DiscordReport:
    guilds: int
    members_per_guild: int
    jobs: int
    steps: int
    spread_s: float
    ack_p50_ms: float
    ack_p99_ms: float
    ack_max_ms: float
    e2e_p50_s: float
    e2e_p99_s: float
    e2e_max_s: float
    unanswered: int
    failed: int
    wall_s: float
    worker_threads: int  # the worker's CPU threads: on 2 cores, 1 leaves the bot a core

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_text(self) -> str:
        return "\n".join(
            [
                f"load             {self.guilds} guilds × {self.members_per_guild} members, "
                f"{self.jobs} /imagine "
                + (f"over {self.spread_s:g} s" if self.spread_s else "at once")
                + f" ({self.steps} steps each; the worker on {self.worker_threads} CPU "
                + f"thread{'s' if self.worker_threads != 1 else ''})",
                f"acknowledgement  p50 {self.ack_p50_ms:.1f} ms, p99 {self.ack_p99_ms:.1f} ms, "
                f"max {self.ack_max_ms:.1f} ms (goal: p99 < 500 ms)",
                f"end to end       p50 {self.e2e_p50_s:.1f} s, p99 {self.e2e_p99_s:.1f} s, "
                f"max {self.e2e_max_s:.1f} s (command → grid with its controls)",
                f"answers          {self.unanswered} unanswered, {self.failed} without a grid; "
                f"all posted in {self.wall_s:.1f} s",
            ]
        )


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def measure_discord(
    settings: Settings,
    *,
    guilds: int,
    members: int,
    steps: int | None,
    timeout_s: float,
    spread_s: float = 0.0,
) -> DiscordReport:
    from bot.app import open_service, open_storage
    from bot.discord import endpoints as discord_endpoints
    from bot.discord.client import ImagineBot
    from bot.discord.render import CONTROLS

    # The one place the fake Discord is imported.
    from fake_discord import FakeDiscord
    from fake_discord.client import running, with_controls

    with tempfile.TemporaryDirectory(prefix="sdbot-bench-") as scratch:
        data = Path(scratch)
        # Members here make as much as they like: the queue, not the limits, is measured.
        local = scratch_settings(settings, data)
        await asyncio.to_thread(migrations.upgrade, local.effective_database_url())
        server = await FakeDiscord().start()
        before = discord_endpoints.use(
            discord_endpoints.Endpoints(server.api_url, server.gateway_url)
        )
        try:
            async with open_storage(local) as storage, open_service(local, storage) as service:
                ready = await service.queue.start_workers()
                assert ready is not None, "without SDBOT_REDIS_URL the worker runs here"
                places = []
                for g in range(guilds):
                    guild = server.create_guild(f"guild {g}")
                    channel = server.create_channel(guild, "images")
                    for m in range(members):
                        user = server.create_user(f"member {g}.{m}")
                        server.add_member(guild, user)
                        places.append((user, channel))
                client = ImagineBot(service, guild_ready_timeout=0.05)
                async with running(server, client):
                    options: dict[str, Any] = {} if steps is None else {"steps": steps}
                    started = time.perf_counter()

                    async def send(index: int, user: Any, channel: Any) -> Any:
                        await asyncio.sleep(spread_s * index / len(places))
                        return await server.slash(
                            user, channel, "imagine", prompt=f"a red circle {index}",
                            seed=index, **options,
                        )  # fmt: skip

                    sent = await asyncio.gather(
                        *(send(i, user, channel) for i, (user, channel) in enumerate(places))
                    )
                    posted: dict[int, float] = {}

                    def delivered(interaction: Any) -> Any:
                        """Its answer; for one answered too late (past the 3 s), the channel
                        message its result went to, which mentions its member."""
                        if interaction.responded:
                            return interaction.original
                        mention = f"<@{interaction.user.id}>"
                        channel = server.channels[interaction.channel_id]
                        return next(
                            (m for m in server.channel_messages(channel) if mention in m.content),
                            None,
                        )

                    def all_posted() -> bool:
                        for interaction in sent:
                            if interaction.id in posted:
                                continue
                            message = delivered(interaction)
                            if with_controls(message, len(CONTROLS)) or (
                                message is not None and "❌" in message.content.split("\n")[-1]
                            ):
                                posted[interaction.id] = time.perf_counter()
                        return len(posted) == len(sent)

                    await server.wait_for(all_posted, within=timeout_s)
                    wall = time.perf_counter() - started
        finally:
            discord_endpoints.use(before)
            await server.close()

    acks = [i.ack_latency * 1000 for i in sent if i.ack_latency is not None]
    ends = [posted[i.id] - i.sent_at for i in sent]
    failed = sum(1 for i in sent if not with_controls(delivered(i), len(CONTROLS)))
    used_steps = steps if steps is not None else service.bot_limits.defaults.steps
    return DiscordReport(
        guilds=guilds,
        members_per_guild=members,
        jobs=len(sent),
        steps=used_steps,
        spread_s=spread_s,
        ack_p50_ms=statistics.median(acks),
        ack_p99_ms=_percentile(acks, 0.99),
        ack_max_ms=max(acks),
        e2e_p50_s=statistics.median(ends),
        e2e_p99_s=_percentile(ends, 0.99),
        e2e_max_s=max(ends),
        unanswered=sum(1 for i in sent if not i.responded),
        failed=failed,
        wall_s=wall,
        worker_threads=ready.cpu_threads,
    )
