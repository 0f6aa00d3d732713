"""Batches on Redis workers: the batch claim against the in-process ``take_batch`` on random
queues, jobs queued by a version without batch keys, a silent worker's batch taken over as one,
and real ``sdbot worker`` processes: two of them drawing batches formed across guilds in fair
order with the pixels of the same jobs run one by one, and one killed holding a batch that the
next one takes over."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from bot.settings import Settings
from generation.images import from_image_file
from generation.options import GenerationOptions
from generation.protocol import WorkerSpec, WorkRequest
from generation.queue import BatchPolicy, Cancelled, Done, JobEvent, JobHandle, QueuedJob
from generation.queue.batch import take_batch
from generation.queue.fair import FairQueue, Ticket
from generation.queue.redis import (
    Claimed,
    RedisQueue,
    RedisWorker,
    batch_digest,
    batches_of,
    encode_request,
)
from generation.queue.redis.scripts import connect
from generation.supervisor import WorkerSupervisor
from moderation.policy import ImagePolicy
from tests.conftest import REDIS_URL
from tests.processes import read_log, wait_for_line

pytestmark = pytest.mark.redis


@pytest.fixture
async def queue(redis_prefix: str) -> AsyncIterator[RedisQueue]:
    queue = await RedisQueue.connect(REDIS_URL, prefix=redis_prefix)
    yield queue
    await queue.close()


def job(
    job_id: int, guild: int, user: int, *, steps: int = 2, seeds: tuple[int, ...] = (1,)
) -> QueuedJob:
    options = GenerationOptions(
        f"a red circle number {job_id}", "", seeds, steps, 3.0, 64, 64, "dpmpp"
    )
    policy = ImagePolicy(threshold=1.0, strict_threshold=1.0)  # every picture shown
    return QueuedJob(WorkRequest(job_id, options, policy), guild, user)


async def idle_worker(prefix: str, name: str, policy: BatchPolicy, **options: Any) -> RedisWorker:
    """A worker that claims but never draws (no model process): it holds what it claims."""
    return await RedisWorker.connect(
        REDIS_URL, cast(Any, None), prefix=prefix, name=name, batch=policy, **options
    )


@pytest.mark.parametrize("seed", [20, 21, 22])
async def test_the_batch_claim_takes_companions_in_fair_order_like_take_batch(
    queue: RedisQueue, redis_prefix: str, seed: int
) -> None:
    """Random pushes from three guilds (two shapes, one to three images), cancels and claims:
    each claim on Redis takes the batch ``take_batch`` takes from the in-process queue."""
    policy = BatchPolicy(max_jobs=3, max_images=4)
    worker = await idle_worker(redis_prefix, "probe", policy)
    local: FairQueue[QueuedJob] = FairQueue()
    tickets: dict[int, Ticket] = {}
    rng = random.Random(seed)
    claims: list[list[int]] = []
    deepest = 0
    try:
        for job_id in range(1, 151):
            if rng.random() < 0.55:
                guild = rng.choice([1, 1, 1, 2, 3])
                queued = job(
                    job_id,
                    guild,
                    guild * 10 + rng.choice([0, 1]),
                    steps=rng.choice([2, 3]),
                    seeds=tuple(range(rng.choice([1, 1, 2, 3]))),
                )
                tickets[job_id] = local.push(queued, guild=queued.guild_id, user=queued.user_id)
                await queue.submit(queued)
            elif rng.random() < 0.15 and tickets:
                victim = rng.choice(list(tickets))
                removed = local.cancel(tickets.pop(victim))
                assert (await queue.cancel(victim) == "dequeued") == removed
            else:
                deepest = max(deepest, len(local))
                expected = [queued.job_id for queued in take_batch(local, policy)]
                for job_id_taken in expected:
                    tickets.pop(job_id_taken, None)
                taken = [claimed.request.job_id for claimed in await worker.next_batch()]
                assert taken == expected
                claims.append(taken)
        assert sum(len(batch) > 1 for batch in claims) >= 10  # batches were formed, and …
        assert any(len(batch) == 3 for batch in claims)  # … capped at three jobs
        assert deepest >= 8  # companions were sought past the next few jobs
    finally:
        await worker.close()


async def test_a_job_queued_without_a_batch_key_runs_alone(
    queue: RedisQueue, redis_prefix: str
) -> None:
    """A job an older version queued (no ``key`` field) is never a companion, and as the head
    of a batch it takes none."""

    async def push_as_before(queued: QueuedJob) -> None:
        args = [redis_prefix, queued.uid, str(queued.guild_id), str(queued.user_id)]
        payload = encode_request(queued.request, queued.uid)
        await queue.scripts.push(args=[*args, payload, repr(queued.units), "1", queued.job_id])

    await queue.submit(job(1, 1, 10))
    await push_as_before(job(2, 2, 20))
    await queue.submit(job(3, 3, 30))
    await push_as_before(job(4, 1, 10))
    await queue.submit(job(5, 2, 20))
    worker = await idle_worker(redis_prefix, "probe", BatchPolicy(max_jobs=4))
    try:
        batches = [[c.request.job_id for c in await worker.next_batch()] for _ in range(4)]
    finally:
        await worker.close()
    assert batches == [[1, 3, 5], [2], [4], []]


async def test_a_claim_looks_for_companions_among_the_next_lookahead_jobs_only(
    queue: RedisQueue, redis_prefix: str
) -> None:
    for n in range(1, 7):  # 1 and 6 share a shape; 2-5 have another
        await queue.submit(job(n, n, 10 * n, steps=2 if n in (1, 6) else 3))
    near = await idle_worker(redis_prefix, "near", BatchPolicy(max_jobs=4), lookahead=4)
    try:
        assert [c.request.job_id for c in await near.next_batch()] == [1]  # 6 is 5th after it
        assert [c.request.job_id for c in await near.next_batch()] == [2, 3, 4, 5]
    finally:
        await near.close()


async def test_a_silent_workers_batch_is_taken_over_as_one_and_fails_after_max_starts(
    queue: RedisQueue, redis_prefix: str
) -> None:
    policy = BatchPolicy(max_jobs=3)
    jobs = [job(n, n, 10 * n) for n in (1, 2, 3)]
    for queued in jobs:
        await queue.submit(queued)
    silent = await idle_worker(redis_prefix, "silent", policy)
    taker = await idle_worker(redis_prefix, "taker", policy, reclaim_after_s=0.001)
    last = await idle_worker(redis_prefix, "last", policy, reclaim_after_s=0.001)
    try:
        held = await silent.next_batch()
        assert [(c.request.job_id, c.deliveries) for c in held] == [(1, 1), (2, 1), (3, 1)]
        await asyncio.sleep(0.05)  # idle past the taker's 1 ms
        taken = await taker.next_batch()
        assert [(c.request.job_id, c.deliveries, c.previous) for c in taken] == [
            (n, 2, "silent") for n in (1, 2, 3)
        ]
        # The silent one's heartbeat hears it lost every entry of its batch.
        entries = [c.entry for c in held]
        lost = await silent.claims.heartbeat(args=[redis_prefix, "silent", *entries])
        assert lost == entries
        assert await taker.claims.heartbeat(args=[redis_prefix, "taker", *entries]) == []

        await asyncio.sleep(0.05)
        await last._step()  # a third start is one too many: each job fails, none is drawn
        assert last.jobs_done == 3
        for queued in jobs:
            events: Any = await queue.client.xrange(f"{redis_prefix}:ev:{queued.uid}")
            fields = events[-1][1]
            assert fields[b"type"] == b"failed"
            assert b"went away twice (last: taker)" in fields[b"reason"]
        assert await queue.client.xpending(f"{redis_prefix}:work", "workers") == {
            "pending": 0, "min": None, "max": None, "consumers": []
        }  # fmt: skip
    finally:
        for worker in (silent, taker, last):
            await worker.close()


def start_worker(
    settings: Settings, prefix: str, name: str, log: Path, max_jobs: int
) -> subprocess.Popen[bytes]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SDBOT_")} | {
        "SDBOT_MODEL": settings.model,
        "SDBOT_DEVICE": "cpu",
        "SDBOT_TORCH_THREADS": "1",
        "SDBOT_REDIS_URL": REDIS_URL,
        "SDBOT_REDIS_PREFIX": prefix,
        "SDBOT_WORKER_RECLAIM_S": "2",
        "SDBOT_DATA_DIR": str(settings.data_dir),
        "SDBOT_BATCH_MAX_JOBS": str(max_jobs),
        "SDBOT_BATCH_MAX_IMAGES": "6",
    }
    with log.open("wb") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "bot", "worker", "--name", name],
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,  # its model process shares its group: one kill takes both
        )


def stop(process: subprocess.Popen[bytes], log: Path) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0, read_log(log)


def kill(process: subprocess.Popen[bytes] | None) -> None:
    if process is not None and process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


async def events_of(handle: JobHandle) -> list[JobEvent]:
    return [event async for event in handle.events()]


def pixels(png: bytes) -> np.ndarray:
    return from_image_file(png).astype(int)


async def started_fields(queue: RedisQueue, uid: str) -> list[dict[str, str]]:
    """The raw fields of a job's ``started`` events, in order."""
    events: Any = await queue.client.xrange(f"{queue.prefix}:ev:{uid}")
    return [
        {k.decode(): v.decode() for k, v in fields.items()}
        for _, fields in events
        if fields[b"type"] == b"started"
    ]


def mixed_jobs() -> list[QueuedJob]:
    """Seven jobs from three guilds, two shapes (2 or 3 steps), one or two images each."""
    return [
        job(1, 1, 10, seeds=(11, 12)),
        job(2, 1, 10, seeds=(21,)),
        job(3, 1, 11, seeds=(31,), steps=3),
        job(4, 2, 20, seeds=(41, 42)),
        job(5, 2, 20, seeds=(51,), steps=3),
        job(6, 3, 30, seeds=(61,)),
        job(7, 3, 31, seeds=(71, 72)),
    ]


async def all_events(handles: list[JobHandle]) -> list[list[JobEvent]]:
    return await asyncio.wait_for(asyncio.gather(*(events_of(h) for h in handles)), 300)


async def test_two_workers_draw_batches_across_guilds_in_fair_order_with_unbatched_pixels(
    settings: Settings, queue: RedisQueue, redis_prefix: str, tmp_path: Path
) -> None:
    """Jobs of three guilds wait while no worker runs; then two workers take them in batches of
    up to three jobs and six images of one shape: the batches are ``take_batch``'s on the fair
    order, never mixing shapes, and each picture is the one the same job makes run alone
    (SDBOT_BATCH_MAX_JOBS=1), but for the CPU's rounding."""
    jobs = mixed_jobs()
    policy = BatchPolicy(max_jobs=3, max_images=6)
    local: FairQueue[QueuedJob] = FairQueue()
    for queued in jobs:
        local.push(queued, guild=queued.guild_id, user=queued.user_id)
    expected = []
    while batch := take_batch(local, policy):
        expected.append([queued.job_id for queued in batch])
    assert expected == [[1, 4, 6], [5, 3], [7, 2]]  # across guilds; the 3-step jobs apart

    logs = [tmp_path / "a.log", tmp_path / "b.log", tmp_path / "single.log"]
    workers: list[subprocess.Popen[bytes] | None] = [None, None, None]
    try:
        handles = [await queue.submit(queued) for queued in jobs]  # all queued …
        for index, name in enumerate(["a", "b"]):  # … before any worker runs
            workers[index] = start_worker(settings, redis_prefix, name, logs[index], 3)
        batched = await all_events(handles)
        for index in (0, 1):
            stop(cast(subprocess.Popen[bytes], workers[index]), logs[index])

        ran_together: dict[str, list[int]] = {}
        draws = set()
        for queued, events in zip(jobs, batched, strict=True):
            assert isinstance(events[-1], Done), events[-1]
            draws.add((events[-1].result.drawn_from, events[-1].result.drawn_until))
            [started] = await started_fields(queue, queued.uid)
            ran_together.setdefault(started["batch"], []).append(queued.job_id)
            sizes = {"attempt": started["attempt"], "batch_size": started["batch_size"]}
            [batch] = [batch for batch in expected if queued.job_id in batch]
            assert sizes == {"attempt": "1", "batch_size": str(len(batch))}
        # Batches are named by their first stream entry: in the order they were claimed.
        claimed = sorted(ran_together, key=lambda entry: tuple(map(int, entry.split("-"))))
        assert [set(ran_together[name]) for name in claimed] == [set(b) for b in expected]
        assert len(draws) == len(expected)  # one pipeline call a batch

        workers[2] = start_worker(settings, redis_prefix, "single", logs[2], 1)
        again = [QueuedJob(queued.request, queued.guild_id, queued.user_id) for queued in jobs]
        alone = await all_events([await queue.submit(queued) for queued in again])
        stop(cast(subprocess.Popen[bytes], workers[2]), logs[2])
        assert "stopped after 7 jobs" in read_log(logs[2])
        for queued, together_events, alone_events in zip(again, batched, alone, strict=True):
            together_done, alone_done = together_events[-1], alone_events[-1]
            assert isinstance(together_done, Done)
            assert isinstance(alone_done, Done)
            [started] = await started_fields(queue, queued.uid)
            assert (started["worker"], started["batch_size"]) == ("single", "1")
            pairs = zip(
                together_done.result.post.images, alone_done.result.post.images, strict=True
            )
            for in_batch, by_itself in pairs:
                assert in_batch.seed == by_itself.seed
                # The CPU's kernels round a batch of 3 apart from a batch of 1 in a few pixels
                # (2 of these 10 pictures differ, by one level in < 0.05 % of their values).
                difference = np.abs(pixels(in_batch.png) - pixels(by_itself.png))
                assert difference.max() <= 2
                assert difference.mean() < 0.01
    finally:
        for process in workers:
            kill(process)


async def test_a_worker_killed_holding_a_batch_loses_it_to_the_next_one(
    settings: Settings, queue: RedisQueue, redis_prefix: str, tmp_path: Path
) -> None:
    jobs = [job(n, n, 10 * n, steps=60, seeds=(n,)) for n in (1, 2, 3)]
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    handles = [await queue.submit(queued) for queued in jobs]  # queued before it starts
    first = start_worker(settings, redis_prefix, "first", first_log, 3)
    second: subprocess.Popen[bytes] | None = None
    try:
        for _ in range(3000):  # until each job started and had a step drawn
            lengths = [await queue.client.xlen(f"{redis_prefix}:ev:{q.uid}") for q in jobs]
            if min(lengths) >= 2:
                break
            await asyncio.sleep(0.02)
        kill(first)  # the worker and its model process, holding the batch
        second = start_worker(settings, redis_prefix, "second", second_log, 3)
        outcomes = await all_events(handles)
        for queued, events in zip(jobs, outcomes, strict=True):
            assert isinstance(events[-1], Done), events[-1]
            starts = await started_fields(queue, queued.uid)
            assert [(s["worker"], s["attempt"], s["batch_size"]) for s in starts] == [
                ("first", "1", "3"),
                ("second", "2", "3"),  # taken over as the batch it was
            ]
        await wait_for_line(second_log, "taken over from first")
        stop(second, second_log)
        assert "stopped after 3 jobs" in read_log(second_log)
        assert await queue.client.xlen(f"{redis_prefix}:work") == 0
    finally:
        kill(first)
        kill(second)


def test_claimed_jobs_split_into_batches_by_their_keys_not_their_digests() -> None:
    """The scripts compare digests; the worker compares the keys, and never puts one job id
    twice in a batch (two bots with databases of their own may share a queue)."""

    def claimed(job_id: int, steps: int = 2, seeds: tuple[int, ...] = (1,)) -> Claimed:
        return Claimed(b"0-%d" % job_id, job(job_id, 1, 1, steps=steps, seeds=seeds).request, 1)

    same = [claimed(1), claimed(2, steps=3), claimed(3), claimed(1), claimed(4, seeds=(1, 2, 3))]
    batches = batches_of(same, BatchPolicy(max_jobs=3, max_images=4))
    assert [[c.request.job_id for c in batch] for batch in batches] == [[1, 3], [2], [1, 4]]
    assert batch_digest(same[0].request) == batch_digest(same[2].request)
    assert batch_digest(same[0].request) != batch_digest(same[1].request)


async def test_one_heartbeat_keeps_every_entry_of_a_drawing_batch(
    model_dir: Path, queue: RedisQueue, redis_prefix: str
) -> None:
    """A batch of three draws for longer than the reclaim time: another worker that looks for
    idle entries all along takes none of them; one job of the batch is cancelled alone."""
    supervisor = WorkerSupervisor(WorkerSpec(model=str(model_dir), device="cpu", torch_threads=1))
    worker = await RedisWorker.connect(
        REDIS_URL, supervisor, prefix=redis_prefix, name="drawing", reclaim_after_s=1.0,
        batch=BatchPolicy(max_jobs=3),
    )  # fmt: skip
    thief = await idle_worker(redis_prefix, "thief", BatchPolicy(max_jobs=3))
    stop = asyncio.Event()
    running: asyncio.Task[None] | None = None
    try:
        await supervisor.start()
        jobs = [job(n, n, 10 * n, steps=40, seeds=(n,)) for n in (1, 2, 3)]
        handles = [await queue.submit(queued) for queued in jobs]
        running = asyncio.create_task(worker.run(stop))
        outcomes = asyncio.ensure_future(all_events(handles))
        stolen, looks, cancelled = [], 0, ""
        while not outcomes.done():  # it looks for entries idle for 1 s, as a worker would
            stolen.append(await thief.claims.reclaim(args=[redis_prefix, "thief", 1000, 3, 6, 64]))
            looks += 1
            lengths = [await queue.client.xlen(f"{redis_prefix}:ev:{q.uid}") for q in jobs]
            if not cancelled and min(lengths) >= 2:  # each job drawing: the second one's owner
                cancelled = await queue.cancel(2, jobs[1].uid)  # cancels it alone
            await asyncio.sleep(0.1)
        assert not any(stolen)
        assert cancelled == "stopping"
        ends = [events[-1] for events in await outcomes]
        assert isinstance(ends[1], Cancelled)
        for queued, end in zip(jobs, ends, strict=True):
            starts = await started_fields(queue, queued.uid)
            assert [(s["worker"], s["batch_size"]) for s in starts] == [("drawing", "3")]
            if queued is jobs[1]:
                continue
            assert isinstance(end, Done), end
            drawn = end.result
            assert drawn.drawn_until - drawn.drawn_from > 1.0  # longer than the reclaim time
        assert looks > 10
    finally:
        stop.set()
        if running is not None:
            await asyncio.wait_for(running, 60)
        await worker.close()
        await thief.close()
        await supervisor.close()


class Watched(RedisWorker):
    """A worker that writes down when it sends a batch and when it ends one, and holds the
    first batch's ending until a second batch was sent: it hangs unless the next batch is
    sent while the last one is still being finished."""

    def __init__(self, *args: Any, **options: Any) -> None:
        super().__init__(*args, **options)
        self.log: list[tuple[str, list[int]]] = []
        self.second_sent = asyncio.Event()

    async def _draw(self, batch: list[Claimed]) -> None:
        self.log.append(("draw", [c.request.job_id for c in batch]))
        if len(self.log) > 1:
            self.second_sent.set()
        await super()._draw(batch)

    async def _complete(self, batch: list[Claimed], drawn: Any, drawing_s: float) -> None:
        if not self.second_sent.is_set():
            await asyncio.wait_for(self.second_sent.wait(), 120)
        self.log.append(("end", [c.request.job_id for c in batch]))
        await super()._complete(batch, drawn, drawing_s)


async def test_the_next_batch_draws_while_the_last_one_is_finished(
    model_dir: Path, queue: RedisQueue, redis_prefix: str
) -> None:
    supervisor = WorkerSupervisor(WorkerSpec(model=str(model_dir), device="cpu", torch_threads=1))
    client = await connect(REDIS_URL)
    worker = Watched(client, supervisor, prefix=redis_prefix, batch=BatchPolicy(max_jobs=3))
    stop = asyncio.Event()
    running: asyncio.Task[None] | None = None
    try:
        await supervisor.start()
        jobs = [job(1, 1, 10, seeds=(1, 2)), job(2, 2, 20, steps=3), job(3, 3, 30, seeds=(3, 4))]
        handles = [await queue.submit(queued) for queued in jobs]
        running = asyncio.create_task(worker.run(stop))
        ends = [events[-1] for events in await all_events(handles)]
        assert all(isinstance(end, Done) for end in ends), ends
        assert worker.log == [("draw", [1, 3]), ("draw", [2]), ("end", [1, 3]), ("end", [2])]
    finally:
        stop.set()
        if running is not None:
            await asyncio.wait_for(running, 60)
        await worker.close()
        await supervisor.close()
