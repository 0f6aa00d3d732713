"""`sdbot bench queue`: what scheduling costs, how fair it is under skew, and its memory.

In-process (the Redis queue is measured separately when it exists): admission through the rate
limiter and the fair queue, push and pop, per job; a 10:1 load skew between two guilds on one
simulated server (virtual time, so the figure is the scheduler's, not this machine's); and the
memory that 10,000 queued jobs hold.
"""

from __future__ import annotations

import random
import statistics
import time
import tracemalloc
from dataclasses import dataclass
from typing import Any

from generation.fairqueue import FairQueue
from generation.limits import Limits, RateLimiter

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

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

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
            ]
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


def measure_queue(jobs: int = 100_000, queued: int = 10_000) -> QueueReport:
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
    )
