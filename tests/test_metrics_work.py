"""The metrics of the process that runs the model, moved by real jobs in the real worker process:
the stages it measured per job, images and standard images, the NSFW check's flags, pipeline
calls (drawn or cancelled) and their device-seconds by model, one model load per switch,
restarts after a death; the queue's depth in this process and on the real Redis, a take-over
from a silent worker, and the Redis worker's log lines naming the worker, the job and its
guild.

Counters are read before and after (other tests in this process move them too); every wait has
a generous ceiling, never a measure."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from prometheus_client import REGISTRY

from common import logs
from generation.catalog import Catalog, ModelEntry, Size
from generation.catalog_files import single_model
from generation.errors import WorkerCrashed
from generation.families import Family
from generation.limits import options_units
from generation.models import model_defaults, resolve_model
from generation.options import GenerationOptions
from generation.protocol import WorkBatch, WorkCancelled, WorkerSpec, WorkRequest, WorkResult
from generation.queue import (
    BatchPolicy,
    Done,
    Failed,
    JobEvent,
    JobHandle,
    LocalQueue,
    Progress,
    QueuedJob,
)
from generation.queue.contract import QueueDepth
from generation.queue.redis import RedisQueue, RedisWorker
from generation.supervisor import WorkerSupervisor
from moderation.policy import ImagePolicy
from tests.conftest import REDIS_URL

WITHIN_S = 300  # a ceiling for a shared, busy machine, never a measure
STAGES = ("diffusion", "safety", "watermark", "model_load")


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def request(
    job_id: int,
    *,
    steps: int = 3,
    seeds: tuple[int, ...] = (1,),
    threshold: float = 1.0,
    model: str = "",
) -> WorkRequest:
    options = GenerationOptions(
        prompt=f"a red circle number {job_id}",
        negative_prompt="",
        seeds=seeds,
        steps=steps,
        guidance_scale=3.0,
        width=64,
        height=64,
        scheduler="dpmpp",
        model=model,
    )
    policy = ImagePolicy(threshold=threshold, strict_threshold=threshold)
    return WorkRequest(job_id, options, policy)


def spec(model_dir: Path) -> WorkerSpec:
    return WorkerSpec(model=str(model_dir), device="cpu", torch_threads=1)


@pytest.fixture
async def supervisor(model_dir: Path) -> AsyncIterator[WorkerSupervisor]:
    supervisor = WorkerSupervisor(spec(model_dir))
    try:
        yield supervisor
    finally:
        await supervisor.close()


class Work:
    """The work metrics of one model, read now: ``since`` gives what moved from here on."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.values = self.read()

    def read(self) -> dict[str, float]:
        by_model = {
            name: value(f"sdbot_{name}_total", model=self.model)
            for name in ("images", "standard_images", "images_flagged", "batches", "device_seconds")
        }
        stages = {
            f"{stage}_{part}": value(f"sdbot_stage_seconds_{part}", stage=stage)
            for stage in STAGES
            for part in ("count", "sum")
        }
        restarts = {"restarts": value("sdbot_worker_restarts_total")}
        return by_model | stages | restarts

    def since(self) -> dict[str, float]:
        now = self.read()
        return {name: now[name] - before for name, before in self.values.items()}


async def test_a_batchs_answers_move_the_work_metrics_by_what_it_drew(
    supervisor: WorkerSupervisor, model_dir: Path
) -> None:
    """Two jobs of one shape in one pipeline call: one held to a threshold every picture
    passes (flagged), one to the laxest (none). Then the worker is killed while it draws: the
    next batch starts it again, and that start alone counts as a restart (the killed batch
    drew nothing to count)."""
    model = single_model(str(model_dir)).name  # the catalog's name of the embedded model
    work = Work(model)
    await supervisor.start()
    assert work.since()["restarts"] == 0  # the first start is no restart

    flagged, shown = request(1, seeds=(1, 2), threshold=1e-6), request(2, seeds=(3,))
    answers = await asyncio.wait_for(supervisor.run_batch(WorkBatch((flagged, shown))), WITHIN_S)
    one, two = answers[1], answers[2]
    assert isinstance(one, WorkResult), one
    assert isinstance(two, WorkResult), two
    assert (one.drawn_from, one.drawn_until) == (two.drawn_from, two.drawn_until)  # one call
    assert all(image.decision.flagged for image in one.post.images)
    n_flagged = sum(image.decision.flagged for r in (one, two) for image in r.post.images)
    assert min(one.safety_ms, one.watermark_ms, two.safety_ms, two.watermark_ms) > 0

    moved = work.since()
    assert moved["images"] == 3
    assert moved["standard_images"] == pytest.approx(
        options_units(flagged.options) + options_units(shown.options)
    )
    assert moved["images_flagged"] == n_flagged >= 2
    assert moved["batches"] == 1
    assert moved["device_seconds"] == pytest.approx(one.drawn_until - one.drawn_from)
    for stage in ("diffusion", "safety", "watermark"):
        assert moved[f"{stage}_count"] == 2, stage
    assert moved["model_load_count"] == 0  # the default model was loaded at the start
    assert moved["diffusion_sum"] == pytest.approx((one.diffusion_ms + two.diffusion_ms) / 1000)
    assert moved["safety_sum"] == pytest.approx((one.safety_ms + two.safety_ms) / 1000)
    assert moved["watermark_sum"] == pytest.approx((one.watermark_ms + two.watermark_ms) / 1000)

    drawing = asyncio.Event()
    dying = asyncio.ensure_future(
        supervisor.run_batch(WorkBatch((request(3, steps=40),)), lambda _: drawing.set())
    )
    await asyncio.wait_for(drawing.wait(), WITHIN_S)
    killed = supervisor.pid
    assert killed is not None
    os.kill(killed, signal.SIGKILL)
    with pytest.raises(WorkerCrashed):
        await asyncio.wait_for(dying, WITHIN_S)
    [after] = (
        await asyncio.wait_for(supervisor.run_batch(WorkBatch((request(4),))), WITHIN_S)
    ).values()
    assert isinstance(after, WorkResult), after
    assert supervisor.pid not in (None, killed)
    moved = work.since()
    assert moved["restarts"] == 1
    assert (moved["images"], moved["batches"]) == (4, 2)


def two_models(model_dir: Path) -> Catalog:
    """The embedded model twice, as "embedded" (the default) and "copy": a batch on "copy"
    makes the worker load it."""
    source = resolve_model(str(model_dir))
    entries = tuple(
        ModelEntry(name, source, Family.SD1, model_defaults(source), (Size("1:1", 64, 64),))
        for name in ("embedded", "copy")
    )
    return Catalog(entries, "embedded")


async def test_a_model_switch_counts_one_load_and_every_call_its_device_time(
    model_dir: Path,
) -> None:
    """Four jobs in one batch wait for one model switch: the model_load stage counts one load
    (not one per job). Then a call whose jobs are all cancelled while it draws yields no
    result, yet its device time is counted (what an image costs includes it)."""
    supervisor = WorkerSupervisor(
        WorkerSpec(
            model=str(model_dir), device="cpu", torch_threads=1, catalog=two_models(model_dir)
        )
    )
    copy = Work("copy")
    try:
        await supervisor.start()
        batch = WorkBatch(tuple(request(n, model="copy") for n in (1, 2, 3, 4)))
        answers = await asyncio.wait_for(supervisor.run_batch(batch), WITHIN_S)
        results = [answers[n] for n in (1, 2, 3, 4)]
        assert all(isinstance(result, WorkResult) for result in results), results
        first = cast(WorkResult, results[0])
        assert first.model_load_ms > 0  # each job still says what it waited for
        moved = copy.since()
        assert moved["model_load_count"] == 1
        assert moved["model_load_sum"] == pytest.approx(first.model_load_ms / 1000)
        assert (moved["images"], moved["batches"], moved["diffusion_count"]) == (4, 1, 4)
        assert moved["device_seconds"] == pytest.approx(first.drawn_until - first.drawn_from)

        copy = Work("copy")
        doomed = (request(5, steps=40, model="copy"), request(6, steps=40, model="copy"))

        def cancel_all(_: object) -> None:
            for job in doomed:
                supervisor.cancel(job.job_id)

        answers = await asyncio.wait_for(
            supervisor.run_batch(WorkBatch(doomed), cancel_all), WITHIN_S
        )
        assert all(isinstance(answer, WorkCancelled) for answer in answers.values()), answers
        moved = copy.since()
        assert (moved["images"], moved["model_load_count"], moved["batches"]) == (0, 0, 1)
        assert moved["device_seconds"] > 0
    finally:
        await supervisor.close()


async def events_of(handle: JobHandle) -> list[JobEvent]:
    async def read() -> list[JobEvent]:
        return [event async for event in handle.events()]

    return await asyncio.wait_for(read(), WITHIN_S)


async def test_the_local_queue_depth_counts_waiting_and_drawing_jobs(
    supervisor: WorkerSupervisor,
) -> None:
    queue = LocalQueue(supervisor, BatchPolicy(max_jobs=1))
    try:
        assert await queue.depth() == QueueDepth(queued=0, running=0)
        drawing = await queue.submit(QueuedJob(request(1, steps=40), 1, 11))
        waiting = await queue.submit(QueuedJob(request(2), 2, 12))

        async def until_progress() -> None:
            async for event in drawing.events():
                if isinstance(event, Progress):
                    return

        await asyncio.wait_for(until_progress(), WITHIN_S)
        assert await queue.depth() == QueueDepth(queued=1, running=1)
        await queue.cancel(1)  # it stops at its next step; the waiting one runs
        ends = [(await events_of(handle))[-1] for handle in (drawing, waiting)]
        assert isinstance(ends[1], Done), ends
        assert await queue.depth() == QueueDepth(queued=0, running=0)
    finally:
        await queue.close()


@pytest.fixture
async def redis_queue(redis_prefix: str) -> AsyncIterator[RedisQueue]:
    queue = await RedisQueue.connect(REDIS_URL, prefix=redis_prefix)
    yield queue
    await queue.close()


async def idle_worker(prefix: str, name: str, **options: Any) -> RedisWorker:
    """A worker that claims but never draws (no model process): it holds what it claims."""
    return await RedisWorker.connect(
        REDIS_URL, cast(Any, None), prefix=prefix, name=name, batch=BatchPolicy(1), **options
    )


@pytest.mark.redis
async def test_redis_depth_and_a_take_over_from_a_silent_worker(
    redis_queue: RedisQueue, redis_prefix: str
) -> None:
    """Depth counts the fair order's jobs and the jobs workers hold, whoever holds them; a job
    taken from a silent worker counts as one take-over, a fresh claim as none."""
    jobs = [QueuedJob(request(n), n, 10 + n) for n in (1, 2, 3)]
    for job in jobs:
        await redis_queue.submit(job)
    assert await redis_queue.depth() == QueueDepth(queued=3, running=0)

    silent = await idle_worker(redis_prefix, "silent")
    taker = await idle_worker(redis_prefix, "taker", reclaim_after_s=0.001)
    takeovers = value("sdbot_worker_takeovers_total")
    try:
        [first] = await silent.next_batch()
        assert (first.request.job_id, first.guild) == (1, 1)
        assert await redis_queue.depth() == QueueDepth(queued=2, running=1)
        assert value("sdbot_worker_takeovers_total") == takeovers  # a claim is no take-over

        await asyncio.sleep(0.05)  # idle past the taker's 1 ms
        [taken] = await taker.next_batch()
        assert (taken.request.job_id, taken.previous, taken.deliveries) == (1, "silent", 2)
        assert value("sdbot_worker_takeovers_total") - takeovers == 1
        assert await redis_queue.depth() == QueueDepth(queued=2, running=1)

        [second] = await silent.next_batch()  # nothing idle for it: the next in fair order
        assert second.deliveries == 1
        assert value("sdbot_worker_takeovers_total") - takeovers == 1
        assert await redis_queue.depth() == QueueDepth(queued=1, running=2)

        await taker._finish(taken.entry, taken.uid, Failed("checked"))
        assert await redis_queue.depth() == QueueDepth(queued=1, running=1)
        await redis_queue.hold()  # held jobs leave the fair order: not waiting in it
        assert await redis_queue.depth() == QueueDepth(queued=0, running=1)
    finally:
        await silent.close()
        await taker.close()


class Lines(logging.Handler):
    """Every line logged, with the job fields bound where it was logged."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.getMessage(), logs.fields_of(record)))


@pytest.fixture
def lines() -> Iterator[Lines]:
    handler = Lines()
    logger = logging.getLogger("generation")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.mark.redis
async def test_a_redis_worker_counts_its_work_and_names_worker_job_and_guild_in_its_lines(
    redis_queue: RedisQueue, redis_prefix: str, model_dir: Path, lines: Lines
) -> None:
    supervisor = WorkerSupervisor(spec(model_dir))
    worker = await RedisWorker.connect(REDIS_URL, supervisor, prefix=redis_prefix, name="w-metrics")
    work = Work(single_model(str(model_dir)).name)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        job = QueuedJob(request(7, seeds=(1, 2)), 42, 420)
        handle = await redis_queue.submit(job)
        end = (await events_of(handle))[-1]
        assert isinstance(end, Done), end
        stop.set()
        await asyncio.wait_for(running, WITHIN_S)
    finally:
        stop.set()
        if not running.done():
            running.cancel()
        await worker.close()
        await supervisor.close()
    moved = work.since()
    assert (moved["images"], moved["batches"], moved["diffusion_count"]) == (2, 1, 1)
    assert await redis_queue.depth() == QueueDepth(queued=0, running=0)

    done = [fields for text, fields in lines.lines if text.startswith("job 7 done")]
    assert done == [{"job": 7, "guild": 42, "worker": "w-metrics"}]
    waiting = [fields for text, fields in lines.lines if "waiting for jobs" in text]
    assert waiting == [{"worker": "w-metrics"}]
