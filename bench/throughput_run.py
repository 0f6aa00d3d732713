"""The measurement behind `sdbot bench throughput` (see ``bench.throughput``): the whole path
with the queue full, then the raw loop of the same pipeline calls once the worker is gone."""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from bench.scratch import scratch_settings
from bench.throughput import Interval, ThroughputReport, report_from
from bot.app import open_service, open_storage, worker_spec
from bot.cli import CommandError, CommandFailed
from bot.imagine.outcomes import ImagineOutcome, Submitted
from bot.imagine.service import ImagineService
from bot.imagine.types import Requester
from bot.settings import Settings
from generation.errors import InvalidOption, ModelLoadError
from generation.options import GenerationOptions, RequestedOptions
from generation.protocol import WorkRequest, WorkResult
from generation.queue import Done, JobEvent, JobHandle
from storage.migrations import upgrade
from storage.models import JobStatus

# Prompts the embedded model draws; any model takes them.
PROMPTS = (
    "a red circle on a blue background",
    "a green square on a yellow background",
    "a blue triangle on a white background",
)


class RecordedHandle(JobHandle):
    """A job's events as the service follows them, keeping the result its ``Done`` brings: the
    drawing interval is the result's, and the outcome the service returns does not carry it."""

    def __init__(self, inner: JobHandle) -> None:
        super().__init__(inner.job_id)
        self.inner = inner
        self.result: WorkResult | None = None

    async def events(self) -> AsyncIterator[JobEvent]:
        async for event in self.inner.events():
            if isinstance(event, Done):
                self.result = event.result
            yield event


def bench_settings(settings: Settings, model: str | None, scratch: Path) -> tuple[Settings, str]:
    """The settings of the run: a scratch database and folder, the queue in this process, no
    limit in the way (the device is measured, not the rates); and the model the jobs name
    ("": the default). ``model`` is a name in the model list, or a folder or file that becomes
    the only model."""
    updates: dict[str, object] = {}
    name = ""
    if model is not None:
        try:
            names = [entry.name for entry in settings.catalog().models]
        except ModelLoadError:  # the configured list is broken; a folder may still do
            names = []
        if model in names:
            name = model
        elif Path(model).expanduser().exists():
            updates |= {"model": str(Path(model).expanduser()), "models_file": None}
        else:
            raise CommandError(
                f"--model {model!r} is neither a model in the list ({', '.join(names)}) "
                "nor a model folder or file"
            )
    local = scratch_settings(settings, scratch, **updates)
    try:
        local.catalog()
    except ModelLoadError as error:
        raise CommandError(f"--model {model}: {error}") from error
    return local, name


def requests_of(
    settings: Settings, count: int, variants: int, steps: int | None, model: str
) -> tuple[list[RequestedOptions], GenerationOptions]:
    """``count`` requests (different seeds, no seed twice) and their validated options."""
    requested = [
        RequestedOptions(
            prompt=PROMPTS[n % len(PROMPTS)],
            seed=1 + n * variants,
            variants=variants,
            steps=steps,
            model=model or None,
        )
        for n in range(count)
    ]
    try:
        options = settings.catalog().validate(requested[0], settings.catalog_limits())
    except InvalidOption as error:
        raise CommandError(f"--{error.option}: {error}") from error
    return requested, options


def requester(n: int, guilds: int) -> Requester:
    guild = 1 + n % guilds
    return Requester(source="bench", guild_id=guild, channel_id=100 + guild, user_id=1000 + n)


def check_outcome(outcome: ImagineOutcome, what: str) -> None:
    """A job that did not succeed stops the run: its figures would not be the path's."""
    if outcome.status is not JobStatus.SUCCEEDED:
        why = outcome.error or (f"refused ({outcome.refusal})" if outcome.refusal else "blocked")
        raise CommandFailed(f"{what} (job {outcome.job_id}) {outcome.status.value}: {why}")


@dataclasses.dataclass(frozen=True)
class Burst:
    """Jobs submitted at once and followed to their outcomes; each one's result's drawing."""

    submitted_at: float
    last_outcome_at: float
    requests: tuple[WorkRequest, ...]
    intervals: tuple[Interval, ...]  # each job's call, in the same order


async def burst(
    service: ImagineService, requested: Sequence[RequestedOptions], first: int, guilds: int
) -> Burst:
    """Submits every request at once (job ``first + n`` from guild ``n % guilds``, each from
    its own member), then follows them all to their outcomes."""
    submitted_at = time.monotonic()
    followed: list[tuple[Submitted, RecordedHandle]] = []
    for n, request in enumerate(requested, start=first):
        submitted = await service.submit(request, requester(n, guilds))
        if isinstance(submitted, ImagineOutcome):  # refused or blocked
            check_outcome(submitted, f"job {n + 1}")
            raise CommandFailed(f"job {n + 1} was not queued")
        followed.append((submitted, RecordedHandle(submitted.handle)))
    outcomes = await asyncio.gather(
        *(
            service.follow_submitted(dataclasses.replace(submitted, handle=handle))
            for submitted, handle in followed
        )
    )
    last_outcome_at = time.monotonic()
    intervals = []
    for n, (outcome, (_, handle)) in enumerate(zip(outcomes, followed, strict=True), start=first):
        check_outcome(outcome, f"job {n + 1}")
        assert handle.result is not None, "a succeeded job's events brought its result"
        intervals.append((handle.result.drawn_from, handle.result.drawn_until))
    return Burst(
        submitted_at,
        last_outcome_at,
        tuple(submitted.job.request for submitted, _ in followed),
        tuple(intervals),
    )


def calls_of(path: Burst) -> list[list[WorkRequest]]:
    """The pipeline calls the worker made, in order: the jobs that share a drawing interval."""
    drawn: dict[Interval, list[WorkRequest]] = {}
    for interval, request in zip(path.intervals, path.requests, strict=True):
        drawn.setdefault(interval, []).append(request)
    return [drawn[interval] for interval in sorted(drawn)]


def raw_loop(
    settings: Settings, device: str, threads: int, calls: Sequence[Sequence[WorkRequest]]
) -> float:
    """Seconds for ``calls`` back to back through the worker's loader (its fast path too) and
    runner, with the worker's torch thread count (set in this thread, which runs them); warm:
    one untimed call of each size first (a compiled UNet compiles each padded size once)."""
    import torch

    from generation.model_pool import ModelPool, memory_budget
    from generation.pipeline import resolve_dtype

    torch.set_num_threads(threads)
    dtype = resolve_dtype(settings.dtype, device)
    budget = memory_budget(settings.model_memory_gb, device)
    pool = ModelPool(settings.catalog(), device, dtype, budget, fast=worker_spec(settings).fast)
    first = calls[0][0].options
    loaded, _ = pool.prepare(first.model, first.loras, first.control)
    sizes = {len(call): call for call in reversed(calls)}  # the first call of each size
    for call in sizes.values():
        loaded.runner.generate([dataclasses.replace(r, job_id=0) for r in call])
    started = time.monotonic()
    for call in calls:
        loaded.runner.generate(list(call))  # the arrays come back: the device is done
    return time.monotonic() - started


async def measure_throughput(
    settings: Settings,
    *,
    jobs: int,
    variants: int,
    steps: int | None,
    model: str | None,
    guilds: int,
) -> ThroughputReport:
    with tempfile.TemporaryDirectory(prefix="sdbot-bench-") as folder:
        scratch = Path(folder)
        local, name = bench_settings(settings, model, scratch)
        # The warm-up is a burst too: one job drawn alone, then a full batch (each size once).
        warm_ups = min(jobs, local.batch_max_jobs + 1)
        requested, options = requests_of(local, warm_ups + jobs, variants, steps, name)
        await asyncio.to_thread(upgrade, local.effective_database_url())

        # 1. The whole path, warm, with every job submitted at once.
        async with open_storage(local) as storage, open_service(local, storage) as service:
            ready = await service.queue.start_workers()
            assert ready is not None, "without SDBOT_REDIS_URL the worker runs here"
            await burst(service, requested[:warm_ups], 0, guilds)
            path = await burst(service, requested[warm_ups:], warm_ups, guilds)

        # 2. The raw loop: the worker's calls, as it made them, with the worker gone.
        raw_s = await asyncio.to_thread(
            raw_loop, local, ready.device, ready.cpu_threads, calls_of(path)
        )

    return report_from(
        intervals=path.intervals,
        submitted_at=path.submitted_at,
        last_outcome_at=path.last_outcome_at,
        raw_s=raw_s,
        model=options.model,
        device=ready.device,
        torch_threads=ready.cpu_threads,
        jobs=jobs,
        guilds=guilds,
        variants=variants,
        steps=options.steps,
        size=f"{options.width}x{options.height}",
        batch_max_jobs=local.batch_max_jobs,
    )
