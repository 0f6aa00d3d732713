"""`sdbot bench batching`: what running queued jobs of one shape in one pipeline call gains.

The real worker process and the real in-process queue: the same jobs, queued at once, run one
by one (batches of 1) and then together (one batch), after a warm-up; the figure is the
throughput ratio and what it does to the first job's latency.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

from bot.app import worker_spec
from bot.settings import Settings
from generation.models import model_defaults, resolve_model
from generation.options import RequestedOptions, validate
from generation.protocol import WorkRequest
from generation.queue import BatchPolicy, Done, LocalQueue, QueuedJob
from generation.supervisor import WorkerSupervisor
from moderation.policy import ImagePolicy


@dataclass(frozen=True)
class BatchingReport:
    device: str
    jobs: int
    variants: int
    steps: int
    side: int
    one_by_one_s: float
    batched_s: float
    first_job_alone_s: float
    first_job_batched_s: float

    @property
    def gain(self) -> float:
        return self.one_by_one_s / self.batched_s

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "gain": self.gain}

    def to_text(self) -> str:
        return "\n".join(
            [
                f"{self.jobs} jobs of {self.variants} × {self.side}² px, {self.steps} steps, "
                f"on {self.device} (median of the rounds)",
                f"  one by one   {self.one_by_one_s:.2f} s  (first job done after "
                f"{self.first_job_alone_s:.2f} s)",
                f"  one batch    {self.batched_s:.2f} s  (first job done after "
                f"{self.first_job_batched_s:.2f} s)",
                f"  throughput   ×{self.gain:.2f}",
            ]
        )


async def _round(queue: LocalQueue, jobs: list[QueuedJob]) -> tuple[float, float]:
    started = time.perf_counter()
    handles = [await queue.submit(job) for job in jobs]
    first = None
    for handle in handles:
        async for event in handle.events():
            if isinstance(event, Done) and first is None:
                first = time.perf_counter() - started
    assert first is not None
    return time.perf_counter() - started, first


async def measure_batching(
    settings: Settings, *, jobs: int, variants: int, steps: int | None, rounds: int
) -> BatchingReport:
    defaults = model_defaults(resolve_model(settings.model))
    supervisor = WorkerSupervisor(worker_spec(settings))
    ready = await supervisor.start()
    next_id = iter(range(1, 10**9))
    policy = ImagePolicy(settings.nsfw_threshold, settings.nsfw_strict_threshold)

    def make() -> list[QueuedJob]:
        out = []
        for n in range(jobs):
            requested = RequestedOptions(
                prompt=f"a red circle number {n}", seed=n, variants=variants, steps=steps
            )
            options = validate(requested, settings.limits(), defaults)
            out.append(QueuedJob(WorkRequest(next(next_id), options, policy), n, n))
        return out

    try:
        alone = LocalQueue(supervisor, BatchPolicy(max_jobs=1))
        together = LocalQueue(supervisor, BatchPolicy(max_jobs=jobs, max_images=jobs * variants))
        await _round(alone, make()[:1])  # warm-up
        await _round(together, make())
        singles, batches = [], []
        for _ in range(rounds):
            singles.append(await _round(alone, make()))
            batches.append(await _round(together, make()))
        await alone.close()
        await together.close()
    finally:
        await supervisor.close()
    options = make()[0].request.options
    return BatchingReport(
        device=ready.device,
        jobs=jobs,
        variants=variants,
        steps=options.steps,
        side=options.width,
        one_by_one_s=statistics.median(total for total, _ in singles),
        batched_s=statistics.median(total for total, _ in batches),
        first_job_alone_s=statistics.median(first for _, first in singles),
        first_job_batched_s=statistics.median(first for _, first in batches),
    )
