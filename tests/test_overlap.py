"""The device never waits for post-processing: the real worker process draws the next batch
while the last one's pictures are upscaled, checked, marked and encoded on its pool.

Post-processing is made long (pictures upscaled to 1024 px: open_nsfw and two watermark layers
on a million pixels each), so that what is checked is an order of events, never a duration.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from generation.errors import WorkerCrashed
from generation.options import GenerationOptions
from generation.protocol import (
    Progress,
    WorkBatch,
    WorkCancelled,
    WorkerSpec,
    WorkRequest,
    WorkResult,
)
from generation.queue import (
    BatchPolicy,
    Done,
    JobEvent,
    JobHandle,
    LocalQueue,
    QueuedJob,
)
from generation.supervisor import WorkerSupervisor
from moderation.policy import ImagePolicy

WITHIN_S = 300  # a ceiling for a shared, busy machine, never a measure
SLOW_SIDE = 1024  # post-processing on 1024 px pictures: far longer than a message's way


def request(job_id: int, *, steps: int = 3, seeds: tuple[int, ...] = (1, 2)) -> WorkRequest:
    options = GenerationOptions(
        prompt=f"a red circle number {job_id}",
        negative_prompt="",
        seeds=seeds,
        steps=steps,
        guidance_scale=3.0,
        width=64,
        height=64,
        scheduler="dpmpp",
    )
    return WorkRequest(job_id, options, ImagePolicy(threshold=1.0, strict_threshold=1.0))


def queued(job_id: int, guild: int, **options: int) -> QueuedJob:
    return QueuedJob(request(job_id, **options), guild, 100 + job_id)  # type: ignore[arg-type]


async def events_of(handle: JobHandle) -> list[JobEvent]:
    async def read() -> list[JobEvent]:
        return [event async for event in handle.events()]

    return await asyncio.wait_for(read(), WITHIN_S)


@pytest.fixture
async def supervisor(model_dir: Path) -> AsyncIterator[WorkerSupervisor]:
    spec = WorkerSpec(
        model=str(model_dir), device="cpu", torch_threads=1, min_output_side=SLOW_SIDE
    )
    supervisor = WorkerSupervisor(spec)
    await supervisor.start()
    try:
        yield supervisor
    finally:
        await supervisor.close()


def hashes(result: WorkResult) -> list[str]:
    grid = [] if result.post.grid is None else [result.post.grid.sha256]
    return [image.sha256 for image in result.post.images] + grid


async def test_the_next_batch_is_drawn_while_the_last_is_post_processed_with_the_same_pixels(
    supervisor: WorkerSupervisor,
) -> None:
    queue = LocalQueue(supervisor, BatchPolicy(max_jobs=1))
    try:
        handles = [await queue.submit(queued(job_id, guild=job_id)) for job_id in (1, 2)]
        first, second = [(await events_of(handle))[-1] for handle in handles]
    finally:
        await queue.close()
    assert isinstance(first, Done), first
    assert isinstance(second, Done), second
    one, two = first.result, second.result
    # The device started the second batch before the first one's pictures were post-ready.
    assert one.drawn_until <= two.drawn_from < one.finished_at
    assert two.drawn_from < two.drawn_until < two.finished_at

    # One batch at a time, the same jobs make the same files, byte for byte.
    for job_id, overlapped in ((1, one), (2, two)):
        [alone] = (await supervisor.run_batch(WorkBatch((request(job_id),)))).values()
        assert isinstance(alone, WorkResult), alone
        assert hashes(alone) == hashes(overlapped)


async def test_a_cancel_stops_a_drawing_job_a_waiting_one_and_drops_a_drawn_one(
    supervisor: WorkerSupervisor,
) -> None:
    drawing = asyncio.Event()
    # 1: drawn, being post-processed, when it is cancelled: its pictures are dropped.
    drawn = await supervisor.draw_batch(WorkBatch((request(1),)))
    assert supervisor.cancel(1)
    # 2: drawing (40 steps) when it is cancelled; 3: waiting for the device behind it.
    long = asyncio.ensure_future(
        supervisor.run_batch(WorkBatch((request(2, steps=40),)), lambda _: drawing.set())
    )
    await asyncio.wait_for(drawing.wait(), WITHIN_S)
    waiting = asyncio.ensure_future(supervisor.run_batch(WorkBatch((request(3, steps=40),))))
    await asyncio.sleep(0)  # one turn of the loop: it waits for the device
    assert supervisor.cancel(3)
    assert supervisor.cancel(2)
    [stopped] = (await asyncio.wait_for(long, WITHIN_S)).values()
    [never] = (await asyncio.wait_for(waiting, WITHIN_S)).values()
    [dropped] = (await asyncio.wait_for(drawn, WITHIN_S)).values()

    assert isinstance(stopped, WorkCancelled), stopped
    assert (stopped.job_id, stopped.total) == (2, 40)
    assert 1 <= stopped.step < 40
    assert never == WorkCancelled(3, 0, 40)  # never drawn
    assert dropped == WorkCancelled(1, 3, 3)
    assert not supervisor.cancel(1)  # answered: nothing left to cancel
    # The worker went on: the next job is drawn by the same process.
    pid = supervisor.pid
    [after] = (await supervisor.run_batch(WorkBatch((request(4),)))).values()
    assert isinstance(after, WorkResult), after
    assert supervisor.pid == pid


async def test_a_killed_worker_fails_the_drawing_and_the_drawn_batch_and_the_next_starts_afresh(
    supervisor: WorkerSupervisor,
) -> None:
    drawing = asyncio.Event()
    post_processed = await supervisor.draw_batch(WorkBatch((request(1),)))
    second = asyncio.ensure_future(
        supervisor.draw_batch(WorkBatch((request(2, steps=40),)), lambda progress: drawing.set())
    )
    await asyncio.wait_for(drawing.wait(), WITHIN_S)
    assert not post_processed.done()  # job 1 is still post-processed while job 2 draws
    killed = supervisor.pid
    assert killed is not None
    os.kill(killed, signal.SIGKILL)

    with pytest.raises(WorkerCrashed) as drawing_error:
        await asyncio.wait_for(second, WITHIN_S)
    crashed = "the worker process was killed by SIGKILL while running"
    assert str(drawing_error.value) == f"{crashed} job 2"
    with pytest.raises(WorkerCrashed) as drawn_error:
        await asyncio.wait_for(post_processed, WITHIN_S)
    assert str(drawn_error.value) == f"{crashed} job 1"

    [after] = (await supervisor.run_batch(WorkBatch((request(3),)))).values()
    assert isinstance(after, WorkResult), after
    assert supervisor.pid not in (None, killed)


async def test_hold_counts_post_processed_jobs_and_close_lets_them_end(
    supervisor: WorkerSupervisor,
) -> None:
    queue = LocalQueue(supervisor, BatchPolicy(max_jobs=1))
    drawn = await queue.submit(queued(1, guild=1))
    drawing = await queue.submit(queued(2, guild=2, steps=40))
    seen: list[JobEvent] = []

    async def until_progress() -> None:
        async for event in drawing.events():
            seen.append(event)
            if isinstance(event, Progress):
                return

    await asyncio.wait_for(until_progress(), WITHIN_S)
    # Job 2 draws, so job 1 was drawn: it is post-processed, and it counts as running.
    assert await queue.hold() == {1, 2}
    await queue.close()  # gives up the drawing batch; the drawn one ends first
    assert isinstance((await events_of(drawn))[-1], Done)
    assert not any(isinstance(event, Done) for event in seen)
    assert await queue.hold() == {2}  # left open, for the next start to resume
