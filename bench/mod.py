"""`sdbot bench mod`: what moderation costs the request path, and how the admin reads scale.

A scratch database (SQLite, or an empty one at ``--database-url``) is filled with N prompts over
G guilds as the bot leaves them: one in ten blocked, the others with four images each, one image
in a hundred flagged; a moderation action every hundred prompts; bans in the first guild. Then:

- ``gate``: the check every request now passes (ban, pause, channels), per call;
- ``/mod history``, ``/mod review``: the reads behind them, for the busiest guild;
- ``/mod export``: time and size of both CSV files, and how many prompts fit in Discord's
  10 MiB upload limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select

from bot.settings import Settings
from storage import migrations
from storage.models import Ban, Image, Job, ModerationAction, utcnow

UPLOAD_LIMIT = 10 * 2**20  # bytes: Discord's attachment limit without boosts


@dataclass(frozen=True)
class ModReport:
    database: str
    jobs: int
    guilds: int
    guild_jobs: int
    gate_p50_us: float
    gate_p99_us: float
    history_ms: float
    review_ms: float
    export_s: float
    export_loop_stall_ms: float
    export_mib: float
    prompts_per_upload: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_text(self) -> str:
        return "\n".join(
            [
                f"data          {self.jobs:,} prompts over {self.guilds} guilds on "
                f"{self.database}; the busiest guild has {self.guild_jobs:,}",
                f"gate          p50 {self.gate_p50_us:.0f} µs, p99 {self.gate_p99_us:.0f} µs a "
                "request (ban, pause, channels: added to every /imagine)",
                f"/mod history  {self.history_ms:.1f} ms (50 entries)",
                f"/mod review   {self.review_ms:.1f} ms (10 blocked prompts, 10 flagged images)",
                f"/mod export   {self.export_s:.2f} s, {self.export_mib:.2f} MiB of CSV; "
                f"about {self.prompts_per_upload:,} prompts fit in a 10 MiB upload",
                f"              the bot's event loop stalled {self.export_loop_stall_ms:.0f} ms "
                "at most meanwhile (other members' commands wait that long)",
            ]
        )


_stalls: list[float] = []


async def _longest_stall(tick_s: float = 0.005) -> None:
    """Records how much later than asked the loop woke this task, the longest so far last."""
    _stalls.clear()
    longest = 0.0
    while True:
        asked = time.perf_counter()
        await asyncio.sleep(tick_s)
        late = (time.perf_counter() - asked - tick_s) * 1000
        if late > longest:
            longest = late
            _stalls.append(longest)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _fill(sessions: Any, jobs: int, guilds: int) -> None:
    now = utcnow()
    job_rows: list[dict[str, Any]] = []
    image_rows: list[dict[str, Any]] = []
    for job_id in range(1, jobs + 1):
        guild = 1 + job_id % guilds
        blocked = job_id % 10 == 0
        created = now - timedelta(seconds=jobs - job_id)
        job_rows.append(
            {
                "id": job_id,
                "kind": "imagine",
                "source": "discord",
                "guild_id": guild,
                "channel_id": 10 * guild,
                "user_id": 1000 + job_id % 97,
                "prompt": f"a lighthouse at dusk, oil painting, number {job_id}",
                "negative_prompt": "blurry",
                "steps": 20,
                "guidance_scale": 7.0,
                "width": 512,
                "height": 512,
                "variants": 4,
                "scheduler": "default",
                "model": "bench",
                "seeds": [job_id, job_id + 1, job_id + 2, job_id + 3],
                "verdict": "blocked" if blocked else "allowed",
                "verdict_reasons": ["contains the blocked term 'x'"] if blocked else [],
                "status": "blocked" if blocked else "succeeded",
                "attempts": 0 if blocked else 1,
                "channel_nsfw": False,
                "created_at": created,
                "finished_at": created,
                "total_ms": 9000.0,
            }
        )
        if blocked:
            continue
        for variant in range(5):  # the grid and four images
            flagged = variant == 1 and job_id % 100 == 1
            image_rows.append(
                {
                    "job_id": job_id,
                    "variant": variant,
                    "seed": job_id + max(variant - 1, 0),
                    "sha256": f"{job_id:032x}{variant:032x}",
                    "watermark_id": job_id * 8 + variant,
                    "watermark_verified": True,
                    "safety_score": 0.9 if flagged else 0.02,
                    "safety_verdict": "flagged" if flagged else "safe",
                    "safety_threshold": 0.6,
                    "disposition": "withheld" if flagged else "shown",
                    "width": 512,
                    "height": 512,
                    "path": None,
                    "created_at": created,
                }
            )
    actions = [
        {
            "guild_id": 1 + index % guilds,
            "actor_id": 7,
            "action": "block_term_add",
            "details": {"term": f"word{index}"},
            "reason": "",
            "created_at": now,
        }
        for index in range(jobs // 100)
    ]
    bans = [
        {"guild_id": 1, "user_id": 5000 + index, "banned_by": 7, "reason": "", "created_at": now}
        for index in range(100)
    ]
    async with sessions.begin() as session:
        for table, rows in ((Job, job_rows), (Image, image_rows)):
            for start in range(0, len(rows), 5000):
                await session.execute(insert(table), rows[start : start + 5000])
        if actions:
            await session.execute(insert(ModerationAction), actions)
        await session.execute(insert(Ban), bans)


async def measure_mod(
    settings: Settings, *, jobs: int, guilds: int, database_url: str | None = None
) -> ModReport:
    from bot.app import open_service, open_storage
    from bot.guild_admin import GuildAdmin
    from bot.imagine.types import Requester

    with tempfile.TemporaryDirectory(prefix="sdbot-bench-mod-") as scratch:
        url = database_url or f"sqlite+aiosqlite:///{Path(scratch) / 'bench.db'}"
        await asyncio.to_thread(migrations.upgrade, url)
        local = settings.model_copy(update={"database_url": url, "data_dir": Path(scratch)})
        async with open_storage(local) as storage:
            async with storage.sessions() as session:
                if await session.scalar(select(func.count()).select_from(Job)):
                    raise ValueError(f"{url} already holds jobs; give an empty database")
            await _fill(storage.sessions, jobs, guilds)
            # The queue is never used here: its worker never starts.
            async with open_service(local, storage) as service:
                admin = GuildAdmin.for_service(service)
                busiest = 1 + 1 % guilds  # guild of job 1: gets the most prompts
                requester = Requester("discord", busiest, 10 * busiest, 1000)
                settings_here = (await service.limits_here(busiest)).settings  # read anyway
                timings = []
                for _ in range(500):
                    started = time.perf_counter()
                    await service.gate(requester, settings_here)
                    timings.append((time.perf_counter() - started) * 1e6)

                started = time.perf_counter()
                await admin.history(busiest, limit=50)
                history_ms = (time.perf_counter() - started) * 1000
                started = time.perf_counter()
                await admin.review(busiest, limit=10)
                review_ms = (time.perf_counter() - started) * 1000
                watching = asyncio.create_task(_longest_stall())
                started = time.perf_counter()
                prompts, actions, count, _ = await admin.export(busiest, 7)
                export_s = time.perf_counter() - started
                watching.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watching
                stall_ms = _stalls[-1] if _stalls else 0.0
    size = len(prompts) + len(actions)
    return ModReport(
        database=url.split(":", 1)[0],
        jobs=jobs,
        guilds=guilds,
        guild_jobs=count,
        gate_p50_us=statistics.median(timings),
        gate_p99_us=_percentile(timings, 0.99),
        history_ms=history_ms,
        review_ms=review_ms,
        export_s=export_s,
        export_loop_stall_ms=stall_ms,
        export_mib=size / 2**20,
        prompts_per_upload=int(UPLOAD_LIMIT / (len(prompts) / max(count, 1))),
    )
