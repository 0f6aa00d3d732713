"""`sdbot bench queue`: what scheduling costs, how fair it is under skew, and its memory.

In-process: admission through the rate limiter and the fair queue, push and pop, per job; on
Redis (``--redis-url``): the same path through the Lua scripts and the stream, per job; a 10:1
load skew between two guilds on one simulated server (virtual time, so the figure is the
scheduler's, not this machine's); and the memory that 10,000 queued jobs hold, here and in Redis.
"""

from __future__ import annotations

import random
import statistics
import time
import tracemalloc
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from generation.limits import Limits, RateLimiter
from generation.queue.fair import FairQueue

_GENEROUS = Limits(
    user_units_per_hour=1e12,
    user_burst=1e12,
    guild_units_per_hour=1e12,
    guild_burst=1e12,
    max_jobs_per_user=10**9,
    max_queue_depth=10**9,
)


@dataclass(frozen=True)
class QueueReport:
    jobs: int
    overhead_us_per_job: float
    light_p95_wait_in_service_times: float
    heavy_p95_wait_in_service_times: float
    fifo_light_p95_wait_in_service_times: float
    queued: int
    bytes_per_queued_job: float
    redis: RedisFigures | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["redis"] = None if self.redis is None else asdict(self.redis)
        return out

    def to_text(self) -> str:
        return "\n".join(
            [
                f"scheduling overhead     {self.overhead_us_per_job:.1f} µs per job "
                f"(admit + push + pop + finish, {self.jobs:,} jobs; goal < 1 ms)",
                f"10:1 skew, light guild  p95 wait {self.light_p95_wait_in_service_times:.2f} "
                "service times (goal <= 2)",
                f"           heavy guild  p95 wait {self.heavy_p95_wait_in_service_times:.2f} "
                "service times",
                f"           plain FIFO   light guild p95 wait "
                f"{self.fifo_light_p95_wait_in_service_times:.2f} service times (for comparison)",
                f"memory                  {self.queued:,} queued jobs hold "
                f"{self.bytes_per_queued_job * self.queued / 1e6:.2f} MB "
                f"({self.bytes_per_queued_job:.0f} bytes a job)",
                *(
                    self.redis.lines()
                    if self.redis
                    else ["redis                   not measured (give --redis-url)"]
                ),
            ]
        )


@dataclass(frozen=True)
class RedisFigures:
    jobs: int
    mean_ms_per_job: float
    p95_ms_per_job: float
    queued: int
    bytes_per_queued_job: float

    def lines(self) -> list[str]:
        return [
            f"redis overhead          {self.mean_ms_per_job:.2f} ms per job mean, p95 "
            f"{self.p95_ms_per_job:.2f} ms (admit + submit + claim + start event + finish, "
            f"{self.jobs:,} jobs; goal < 5 ms)",
            f"redis memory            {self.queued:,} queued jobs hold "
            f"{self.bytes_per_queued_job * self.queued / 1e6:.2f} MB in Redis "
            f"({self.bytes_per_queued_job:.0f} bytes a job)",
        ]


async def measure_redis(url: str, jobs: int = 2000, queued: int = 10_000) -> RedisFigures:
    """The whole path of a job through Redis but the model, under a fresh key prefix."""
    import redis.asyncio as aioredis

    from generation.options import GenerationOptions
    from generation.protocol import WorkRequest
    from generation.queue import EventKind, QueuedJob, Started, encode_event
    from generation.queue.redis import KEEP_S, RedisQueue, batch_field, encode_request
    from generation.queue.redis.claims import Claims
    from moderation.policy import ImagePolicy

    prefix = f"sdbot-bench-{uuid.uuid4().hex[:8]}"
    queue = await RedisQueue.connect(url, prefix=prefix)
    claims = Claims(queue.client)
    await queue.client.zadd(f"{prefix}:workers", {"bench": time.time()})  # it claims, as one
    options = GenerationOptions("a red circle", "", (1, 2, 3, 4), 20, 3.0, 64, 64, "dpmpp")
    policy = ImagePolicy(threshold=0.5, strict_threshold=0.3)  # it travels with each request
    try:
        timings = []
        for n in range(1, jobs + 1):
            job = QueuedJob(WorkRequest(n, options, policy), n % 50, n % 1000)
            started = time.perf_counter()
            await queue.admit(job.guild_id, job.user_id, job.units, _GENEROUS)
            await queue.submit(job)
            [[entry, *_]] = await claims.claim(args=[prefix, "bench", 1, 16, 64])  # as a worker
            fields: Any = encode_event(Started(1, "bench")) | {"uid": job.uid}
            await queue.client.xadd(f"{prefix}:ev:{job.uid}", fields)
            done = ["type", EventKind.DONE, "uid", job.uid]  # as RedisWorker ends a job
            await queue.scripts.finish(args=[prefix, entry, job.uid, KEEP_S, *done])
            timings.append((time.perf_counter() - started) * 1000)
            queue._handles.clear()  # nobody follows these jobs
            queue._last.clear()
        info: Any = await queue.client.info("memory")
        before = int(info["used_memory"])
        for n in range(jobs + 1, jobs + queued + 1):
            job = QueuedJob(WorkRequest(n, options, policy), n % 100, n)
            await queue.scripts.push(  # as RedisQueue.submit pushes a new job
                args=[
                    prefix,
                    job.uid,
                    n % 100,
                    n,
                    encode_request(job.request, job.uid),
                    repr(job.units),
                    "1",
                    n,
                    "0",
                    batch_field(job.request),
                ]
            )
        info = await queue.client.info("memory")
        used = int(info["used_memory"]) - before
    finally:
        client = aioredis.Redis.from_url(url)
        keys = [key async for key in client.scan_iter(f"{prefix}:*", count=1000)]
        for start in range(0, len(keys), 1000):
            await client.delete(*keys[start : start + 1000])
        await client.aclose()
        await queue.close()
    return RedisFigures(
        jobs=jobs,
        mean_ms_per_job=statistics.fmean(timings),
        p95_ms_per_job=statistics.quantiles(timings, n=20)[-1],
        queued=queued,
        bytes_per_queued_job=used / queued,
    )


def _overhead(jobs: int) -> float:
    limiter = RateLimiter(time.monotonic, lambda guild: _GENEROUS)
    queue: FairQueue[int] = FairQueue()
    started = time.perf_counter()
    for n in range(jobs):
        guild, user = n % 50, n % 1000
        limiter.admit(guild, user, 0.0625)
        queue.push(n, guild=guild, user=user)
        if n % 2:  # keep a standing queue of about half the jobs
            popped = queue.pop()
            assert popped is not None
            limiter.finished(popped[0].guild, popped[0].user)
    while (popped := queue.pop()) is not None:
        limiter.finished(popped[0].guild, popped[0].user)
    return (time.perf_counter() - started) / jobs * 1e6


def _skew(fair: bool, seed: int = 0) -> tuple[float, float]:
    """p95 waits (in service times) of the light and the heavy guild: one server, service
    time 1, heavy arrivals 10× the light ones, 90 % load, Poisson arrivals."""
    rng = random.Random(seed)
    arrivals: list[tuple[float, str]] = []
    for guild, rate in (("heavy", 0.9 * 10 / 11), ("light", 0.9 / 11)):
        now = 0.0
        while now < 20_000:
            now += rng.expovariate(rate)
            arrivals.append((now, guild))
    arrivals.sort()
    queue: FairQueue[tuple[float, str]] = FairQueue()
    waits: dict[str, list[float]] = {"heavy": [], "light": []}
    now, index = 0.0, 0
    while index < len(arrivals) or len(queue):
        while index < len(arrivals) and arrivals[index][0] <= now:
            arrived, guild = arrivals[index]
            user = rng.randrange(20)
            queue.push(
                (arrived, guild),
                guild=(1 if guild == "heavy" else 2) if fair else 0,
                user=user if fair else 0,
            )
            index += 1
        popped = queue.pop()
        if popped is None:
            now = arrivals[index][0]
            continue
        arrived, guild = popped[1]
        waits[guild].append(now - arrived)
        now += 1.0

    def p95(values: list[float]) -> float:
        return statistics.quantiles(values, n=20)[-1]

    return p95(waits["light"]), p95(waits["heavy"])


def _memory(jobs: int) -> float:
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    queue: FairQueue[dict[str, Any]] = FairQueue()
    for n in range(jobs):  # what a queued job carries: its id and options, not its pictures
        queue.push({"job_id": n, "steps": 20, "width": 512, "height": 512}, guild=n % 100, user=n)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return used / jobs


def measure_queue(
    jobs: int = 100_000, queued: int = 10_000, redis: RedisFigures | None = None
) -> QueueReport:
    light, heavy = _skew(fair=True)
    fifo_light, _ = _skew(fair=False)
    return QueueReport(
        jobs=jobs,
        overhead_us_per_job=_overhead(jobs),
        light_p95_wait_in_service_times=light,
        heavy_p95_wait_in_service_times=heavy,
        fifo_light_p95_wait_in_service_times=fifo_light,
        queued=queued,
        bytes_per_queued_job=_memory(queued),
        redis=redis,
    )
