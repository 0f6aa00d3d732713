"""`sdbot bench ops`: what the operations layer costs, in the figures an operator asks about.

1. A scrape: ``/metrics`` on a real metrics port with a full registry (``bench.ops_http``), and
   ``/readyz`` with its database and Redis checks.
2. The instrumentation on the hot path: each metric call a job makes, how many it makes, the
   terminal write with and without them, a log line in text and JSON (``bench.ops_hot``).
3. Retention: ``purge_expired`` over N finished jobs with four images each, rows and files,
   in batches of 500: jobs a second and the longest transaction (``bench.ops_data``).
4. ``forget_member`` for a member with M jobs among N more.

All on a scratch SQLite file, or an empty PostgreSQL database (``--postgres URL``); Redis is
only pinged (``--redis-url``, or SDBOT_REDIS_URL). ``--quick`` shrinks every count for a test.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from bench.ops_data import PurgeFigures, expired, fill_finished, measure_forget, measure_purge
from bench.ops_hot import BOT_CALLS, MODEL_CALLS, HotFigures, measure_hot
from bench.ops_http import ScrapeFigures, measure_scrape
from bench.scratch import scratch_settings
from storage import migrations
from storage.models import Job, utcnow

if TYPE_CHECKING:
    from bot.settings import Settings


@dataclass(frozen=True)
class Sizes:
    jobs: int = 20_000  # finished jobs for retention, and as many for forget
    member_jobs: int = 2000  # of those, the forgotten member's
    scrapes: int = 200  # GETs of /metrics and of /readyz
    metric_calls: int = 100_000  # of each kind of metric call
    writes: int = 1000  # terminal writes each way

    @classmethod
    def quick(cls) -> Sizes:
        return cls(jobs=500, member_jobs=50, scrapes=20, metric_calls=4000, writes=50)


@dataclass(frozen=True)
class OpsReport:
    database: str
    redis: bool
    cores: int
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    sizes: Sizes
    scrape: ScrapeFigures
    hot: HotFigures
    purge: PurgeFigures
    forget: PurgeFigures
    member_jobs: int  # the member's jobs among forget's N, as filled

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["purge"]["jobs_per_s"] = self.purge.jobs_per_s
        out["forget"]["jobs_per_s"] = self.forget.jobs_per_s
        return out

    def to_text(self) -> str:
        s, h, p, f = self.scrape, self.hot, self.purge, self.forget
        calls = ", ".join(f"{kind} {us:.2f} µs" for kind, us in h.call_us.items())
        return "\n".join(
            [
                f"machine     {self.cores} cores; load average {_load(self.load_before)} "
                f"before, {_load(self.load_after)} after",
                f"database    {self.database}; Redis {'pinged' if self.redis else 'not given'}",
                f"/metrics    {s.series:,} series ({s.route_series} Discord route × status), "
                f"{s.body_bytes / 1024:.1f} KiB",
                f"            scrape over HTTP p50 {s.scrape_p50_ms:.2f} ms, p99 "
                f"{s.scrape_p99_ms:.2f} ms ({s.scrapes} scrapes; checks and refresh included)",
                f"            rendering alone p50 {s.render_p50_ms:.2f} ms, p99 "
                f"{s.render_p99_ms:.2f} ms",
                f"/readyz     p50 {s.readyz_p50_ms:.2f} ms, p99 {s.readyz_p99_ms:.2f} ms "
                f"(checks: {', '.join(s.readyz_checks)}; answered {s.readyz_status})",
                f"metrics     a call: {calls} ({h.metric_calls:,} each)",
                f"            a job: {h.bot_us_per_job:.1f} µs in the bot process "
                f"({sum(BOT_CALLS.values())} calls), {h.model_us_per_job:.1f} µs in the "
                f"model's ({sum(MODEL_CALLS.values())} calls at most)",
                f"            terminal write p50 {h.write_ms_with:.3f} ms with them, "
                f"{h.write_ms_without:.3f} ms without ({h.writes:,} each, alternating)",
                f"logs        a line {h.log_us_text:.1f} µs as text, {h.log_us_json:.1f} µs as "
                f"JSON (job fields bound, two secrets masked, to /dev/null)",
                f"retention   {p.jobs:,} jobs and {p.images:,} files purged in {p.seconds:.2f} s: "
                f"{p.jobs_per_s:,.0f} jobs/s ({p.files_s:.2f} s of it deleting files); "
                f"{p.transactions} transactions, longest "
                f"{p.longest_transaction_ms:.0f} ms (median {p.median_transaction_ms:.0f}); "
                f"event loop late {p.longest_loop_stall_ms:.0f} ms at most",
                f"forget      {f.jobs:,} jobs of one member among {self.sizes.jobs:,} and "
                f"{f.images:,} files in {f.seconds:.2f} s ({f.files_s:.2f} s deleting files); "
                f"{f.transactions} transactions, "
                f"longest {f.longest_transaction_ms:.0f} ms; loop late "
                f"{f.longest_loop_stall_ms:.0f} ms at most",
            ]
        )


def _load(load: tuple[float, float, float]) -> str:
    return " / ".join(f"{value:.2f}" for value in load)


async def measure_ops(
    settings: Settings,
    sizes: Sizes,
    *,
    postgres: str | None = None,
    redis_url: str | None = None,
) -> OpsReport:
    """Runs the four parts in order on a scratch database (or the empty one at ``postgres``)."""
    from bot.app import open_service, open_storage
    from bot.ops.health import RedisCheck, database_check
    from bot.ops.server import queue_depth

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="sdbot-bench-ops-") as folder:
        scratch = Path(folder)
        url = postgres or f"sqlite+aiosqlite:///{scratch / 'bench.db'}"
        await asyncio.to_thread(migrations.upgrade, url)
        local = scratch_settings(settings, scratch, database_url=url)
        output_dir = local.effective_output_dir()
        async with open_storage(local) as storage:
            async with storage.sessions() as session:
                if await session.scalar(select(func.count()).select_from(Job)):
                    raise ValueError(f"{postgres} already holds jobs; give an empty database")
            async with open_service(local, storage) as service:  # its worker never starts
                redis = RedisCheck(redis_url) if redis_url else None
                try:
                    checks = [database_check(storage), *([redis.check()] if redis else [])]
                    scrape = await measure_scrape(
                        checks, [queue_depth(service.queue)], sizes.scrapes
                    )
                finally:
                    if redis is not None:
                        await redis.close()
                hot = await measure_hot(storage, 1, calls=sizes.metric_calls, writes=sizes.writes)
                first = 2 * sizes.writes + 1
                await fill_finished(storage, output_dir, first, sizes.jobs, ended=expired())
                purge = await measure_purge(storage, output_dir)
                every = max(1, sizes.jobs // max(1, sizes.member_jobs))
                member = await fill_finished(
                    storage,
                    output_dir,
                    first + sizes.jobs,
                    sizes.jobs,
                    ended=utcnow(),
                    member_every=every,
                )
                forget = await measure_forget(service, output_dir)
    return OpsReport(
        database=url.split(":", 1)[0],
        redis=redis_url is not None,
        cores=os.cpu_count() or 1,
        load_before=load_before,
        load_after=os.getloadavg(),
        sizes=sizes,
        scrape=scrape,
        hot=hot,
        purge=purge,
        forget=forget,
        member_jobs=member,
    )
