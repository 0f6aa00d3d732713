"""One contract, two queues: every test here runs on the in-process ``LocalQueue`` and on
``RedisQueue`` with a ``RedisWorker`` (real Redis), both in front of the real worker process on
the embedded model (one process for the module, so that the model loads once).

The contract: a job's events come in order and end with exactly one terminal event from one
vocabulary; a queued job cancels before it runs (and gives back its rate budget), a running one
stops between steps; attach finds a followed job; positions follow the fair order across
guilds; hold lets the running job finish and starts no queued one.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio

from generation.images import from_image_file
from generation.limits import Limits, RateLimited
from generation.options import GenerationOptions
from generation.protocol import Progress, WorkerSpec, WorkRequest
from generation.queue import (
    CANCELLED_WHILE_QUEUED,
    TERMINAL_EVENTS,
    BatchPolicy,
    Cancelled,
    CancelOutcome,
    Done,
    Failed,
    JobEvent,
    JobHandle,
    JobQueue,
    LocalQueue,
    Queued,
    QueuedJob,
    Started,
)
from generation.supervisor import WorkerSupervisor
from moderation.policy import ImagePolicy
from tests.conftest import REDIS_URL

pytestmark = pytest.mark.asyncio(loop_scope="module")

POLICY = ImagePolicy(threshold=0.5, strict_threshold=0.3)  # the bot's defaults


def job(job_id: int, guild: int | None, user: int | None = None, *, steps: int = 4) -> QueuedJob:
    options = GenerationOptions(
        f"a red circle number {job_id}", "", (job_id,), steps, 3.0, 64, 64, "dpmpp"
    )
    request = WorkRequest(job_id, options, POLICY)
    return QueuedJob(request, guild, 100 + job_id if user is None else user)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def supervisor(model_dir: Path) -> AsyncIterator[WorkerSupervisor]:
    supervisor = WorkerSupervisor(WorkerSpec(model=str(model_dir), device="cpu", torch_threads=2))
    await supervisor.start()
    try:
        yield supervisor
    finally:
        await supervisor.close()


@dataclass
class Rig:
    kind: str
    queue: JobQueue
    supervisor: WorkerSupervisor
    cleanup: list[object] = field(default_factory=list)

    async def depth(self) -> int:
        """Jobs admitted and not ended, as the queue counts them."""
        if isinstance(self.queue, LocalQueue):
            return self.queue.limiter.depth
        from generation.queue.redis import RedisQueue

        assert isinstance(self.queue, RedisQueue)
        return int(await self.queue.client.get(f"{self.queue.prefix}:depth") or 0)


BACKENDS = ["local", pytest.param("redis", marks=pytest.mark.redis)]


@pytest.fixture(params=BACKENDS)
def prefix(request: pytest.FixtureRequest) -> str | None:
    """The Redis key prefix of this test (conftest's ``redis_prefix``), None for LocalQueue."""
    if request.param == "local":
        return None
    return str(request.getfixturevalue("redis_prefix"))


@pytest_asyncio.fixture(loop_scope="module")
async def rig(prefix: str | None, supervisor: WorkerSupervisor) -> AsyncIterator[Rig]:
    if prefix is None:
        queue = LocalQueue(supervisor, BatchPolicy(max_jobs=1))
        yield Rig("local", queue, supervisor)
        await queue.close()
        return
    from generation.queue.redis import RedisQueue, RedisWorker

    redis_queue = await RedisQueue.connect(REDIS_URL, prefix=prefix)
    redis_queue.poll_s = 0.2
    worker = await RedisWorker.connect(REDIS_URL, supervisor, prefix=prefix, name="contract")
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        yield Rig("redis", redis_queue, supervisor)
    finally:
        stop.set()
        await asyncio.wait_for(running, 60)
        await worker.close()
        await redis_queue.close()


WITHIN_S = 120  # a job that never ends fails its test instead of hanging the suite


async def events_of(handle: JobHandle) -> list[JobEvent]:
    async def read() -> list[JobEvent]:
        return [event async for event in handle.events()]

    return await asyncio.wait_for(read(), WITHIN_S)


async def until_progress(handle: JobHandle) -> list[JobEvent]:
    async def read() -> list[JobEvent]:
        seen: list[JobEvent] = []
        async for event in handle.events():
            seen.append(event)
            if isinstance(event, Progress):
                break
        return seen

    return await asyncio.wait_for(read(), WITHIN_S)


async def test_a_job_reads_queued_started_progress_then_done(rig: Rig) -> None:
    handle = await rig.queue.submit(job(1, guild=1))
    events = await events_of(handle)
    kinds = [type(event) for event in events]
    assert kinds.index(Started) == kinds.count(Queued)  # its places come before it starts
    events = [event for event in events if not isinstance(event, Queued)]
    kinds = [type(event) for event in events]
    assert kinds == [Started] + [Progress] * (len(kinds) - 2) + [Done]
    started = events[0]
    assert isinstance(started, Started)
    assert started.attempt in (None, 1)
    steps = [event.step for event in events if isinstance(event, Progress)]
    assert steps == sorted(steps)
    assert steps[-1] == 4
    done = events[-1]
    assert isinstance(done, Done)
    assert done.result.job_id == 1
    assert [image.seed for image in done.result.post.images] == [1]
    image = done.result.post.images[0]
    assert from_image_file(image.png).shape == (image.height, image.width, 3)
    assert done.result.post.grid is not None
    if rig.kind == "redis":  # each picture is held once in Redis: the variant and the grid
        from generation.queue.redis import RedisQueue

        assert isinstance(rig.queue, RedisQueue)
        uid = rig.queue._uids[1]
        stored = await rig.queue.client.hkeys(f"{rig.queue.prefix}:result:{uid}")
        assert sorted(stored) == [b"blob:0", b"blob:1", b"meta"]


async def test_queued_and_running_jobs_cancel_and_end_in_the_one_vocabulary(rig: Rig) -> None:
    running = await rig.queue.submit(job(1, guild=1, steps=40))
    await until_progress(running)
    waiting = await rig.queue.submit(job(2, guild=1))

    assert await rig.queue.cancel(2) == CancelOutcome.DEQUEUED
    assert await rig.queue.cancel(1) == CancelOutcome.STOPPING
    assert (await events_of(waiting))[-1] == Cancelled(CANCELLED_WHILE_QUEUED)
    ended = (await events_of(running))[-1]
    assert isinstance(ended, Cancelled)
    step = int(ended.reason.split()[3])
    assert ended.reason == f"cancelled at step {step} of 40"
    assert await rig.queue.cancel(1) == CancelOutcome.UNKNOWN  # over: nothing to cancel
    assert await rig.queue.cancel(2) == CancelOutcome.UNKNOWN
    assert await rig.queue.cancel(99) == CancelOutcome.UNKNOWN  # never submitted

    # The worker process was not restarted for it, and the next job runs.
    pid = rig.supervisor.pid
    assert isinstance((await events_of(await rig.queue.submit(job(3, guild=1))))[-1], Done)
    assert rig.supervisor.pid == pid
    assert await rig.depth() == 0


async def test_a_crashed_worker_fails_its_job_with_the_reason(rig: Rig) -> None:
    handle = await rig.queue.submit(job(1, guild=1, steps=40))
    await until_progress(handle)
    assert rig.supervisor.pid is not None
    os.kill(rig.supervisor.pid, signal.SIGKILL)
    ended = (await events_of(handle))[-1]
    assert isinstance(ended, TERMINAL_EVENTS)
    assert ended == Failed("the worker process was killed by SIGKILL while running job 1")


async def test_attach_follows_a_submitted_job_and_knows_no_other(rig: Rig) -> None:
    queued = job(1, guild=1)
    handle = await rig.queue.submit(queued)
    assert await rig.queue.attach(1, queued.uid) is handle
    assert await rig.queue.attach(2) is None
    assert await rig.queue.attach(2, "0" * 32) is None
    assert isinstance((await events_of(handle))[-1], Done)


async def test_positions_follow_the_fair_order_across_guilds(rig: Rig) -> None:
    blocker = await rig.queue.submit(job(1, guild=9, steps=40))
    await until_progress(blocker)
    for job_id, guild in ((2, 1), (3, 1), (4, 1), (5, 2)):
        await rig.queue.submit(job(job_id, guild=guild, user=10 * guild))
    places = await rig.queue.positions()
    # The quiet guild's one job goes right after the busy guild's first, not after all three.
    assert {job_id: place.ahead for job_id, place in places.items()} == {2: 0, 5: 1, 3: 2, 4: 3}
    for job_id in (2, 3, 4, 5):
        assert await rig.queue.cancel(job_id) == CancelOutcome.DEQUEUED
    assert await rig.queue.positions() == {}
    assert await rig.queue.cancel(1) == CancelOutcome.STOPPING
    assert isinstance((await events_of(blocker))[-1], Cancelled)


async def test_hold_lets_the_running_job_finish_and_starts_no_queued_one(rig: Rig) -> None:
    running = await rig.queue.submit(job(1, guild=1, steps=12))
    await until_progress(running)
    waiting = await rig.queue.submit(job(2, guild=1))
    assert await rig.queue.hold() == {1}
    later = await rig.queue.submit(job(3, guild=2))  # submitted while held: held too
    assert isinstance((await events_of(running))[-1], Done)

    async def started(handle: JobHandle) -> None:
        async for event in handle.events():
            if isinstance(event, Started):
                return

    for handle in (waiting, later):
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(started(handle), 1.5)
    # They stay queued: a cancel takes them out as waiting jobs.
    assert await rig.queue.cancel(2) == CancelOutcome.DEQUEUED
    assert await rig.queue.cancel(3) == CancelOutcome.DEQUEUED
    assert (await events_of(waiting))[-1] == Cancelled(CANCELLED_WHILE_QUEUED)
    assert (await events_of(later))[-1] == Cancelled(CANCELLED_WHILE_QUEUED)
    assert await rig.queue.hold() == set()


async def test_a_job_cancelled_before_it_started_gives_back_its_rate_budget(rig: Rig) -> None:
    running, waiting = job(1, guild=1, steps=40), job(2, guild=1)
    units = running.units  # the same for both: a budget of two such jobs, one an hour
    limits = Limits(
        user_units_per_hour=units, user_burst=2 * units, guild_units_per_hour=units,
        guild_burst=2 * units, max_jobs_per_user=10,
    )  # fmt: skip

    async def submit(queued: QueuedJob) -> JobHandle:
        await rig.queue.admit(1, 7, queued.units, limits)
        return await rig.queue.submit(QueuedJob(queued.request, 1, 7))

    first = await submit(running)
    await until_progress(first)
    second = await submit(waiting)
    with pytest.raises(RateLimited, match="you can make this in "):
        await rig.queue.admit(1, 7, units, limits)

    assert await rig.queue.cancel(2) == CancelOutcome.DEQUEUED
    assert (await events_of(second))[-1] == Cancelled(CANCELLED_WHILE_QUEUED)
    await rig.queue.admit(1, 7, units, limits)  # the queued job never ran: its budget came back
    await rig.queue.release(1, 7)
    # A job the worker started keeps its cost, cancelled or not.
    assert await rig.queue.cancel(1) == CancelOutcome.STOPPING
    assert isinstance((await events_of(first))[-1], Cancelled)
    with pytest.raises(RateLimited):
        await rig.queue.admit(1, 7, units, limits)

    # A job readmitted after a restart was not charged by this queue: it gives nothing back.
    blocker = await rig.queue.submit(job(3, guild=2, steps=40))
    await until_progress(blocker)
    readmitted = await rig.queue.submit(QueuedJob(waiting.request, 1, 7), readmit=True)
    assert await rig.queue.cancel(2) == CancelOutcome.DEQUEUED
    await events_of(readmitted)
    with pytest.raises(RateLimited):
        await rig.queue.admit(1, 7, units, limits)
    assert await rig.queue.cancel(3) == CancelOutcome.STOPPING
    await events_of(blocker)
    assert await rig.depth() == 0
