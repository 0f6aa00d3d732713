"""The queue on the real Redis, where it differs from in-process: admission and refunds against
the in-process limiter, hold and resume across a restart, the codec, and real `sdbot worker`
processes, one killed mid-job and its job taken over by the other. The fair order against the
Python is in test_fairqueue; what both queues promise is in test_queue_contract."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest

from bot.app import open_service, open_storage
from bot.imagine.types import Requester
from bot.settings import Settings
from generation.limits import Limits, RateLimited, RateLimiter
from generation.options import GenerationOptions, RequestedOptions
from generation.protocol import (
    InputImages,
    PostReady,
    Progress,
    ReadyImage,
    WorkRequest,
    WorkResult,
)
from generation.queue import CancelOutcome, Failed, Queued, QueuedJob
from generation.queue.redis import (
    ForeignResult,
    RedisQueue,
    RedisWorker,
    decode_payload,
    decode_request,
    decode_result,
    encode_request,
    encode_result,
    request_blobs,
)
from generation.queue.redis.codec import UnreadableRequest
from generation.starts import Source
from moderation.policy import Disposition, ImageDecision, ImagePolicy, NsfwPolicy
from moderation.safety import SafetyResult
from storage import migrations
from storage.models import JobStatus
from tests.conftest import REDIS_URL
from tests.processes import wait_for_line

pytestmark = pytest.mark.redis


@pytest.fixture
def prefix(redis_prefix: str) -> str:
    return redis_prefix


@pytest.fixture
async def queue(prefix: str) -> AsyncIterator[RedisQueue]:
    queue = await RedisQueue.connect(REDIS_URL, prefix=prefix)
    yield queue
    await queue.close()


def job(job_id: int, guild: int | None, user: int | None) -> QueuedJob:
    options = GenerationOptions("a red circle", "", (1,), 4, 3.0, 64, 64, "dpmpp")
    policy = ImagePolicy(threshold=0.5, strict_threshold=0.3)
    return QueuedJob(WorkRequest(job_id, options, policy), guild, user)


async def claim(queue: RedisQueue, consumer: str = "probe") -> int | None:
    answer = await queue.scripts.claim(args=[queue.prefix, consumer])
    return None if not answer else decode_request(answer[2]).job_id


async def test_admission_on_redis_answers_like_the_in_process_limiter(
    queue: RedisQueue,
) -> None:
    limits = Limits(user_units_per_hour=6, user_burst=1, max_jobs_per_user=2, max_queue_depth=3)
    local = RateLimiter(lambda: 0.0)

    async def both(guild: int, user: int, units: float) -> tuple[str, str]:
        answers = []
        for admit in (
            lambda: queue.admit(guild, user, units, limits),
            lambda: asyncio.to_thread(local.admit, guild, user, units, limits),
        ):
            try:
                await admit()
                answers.append("ok")
            except RateLimited as refusal:
                answers.append(str(refusal))
        return answers[0], answers[1]

    assert await both(1, 10, 0.5) == ("ok", "ok")
    # 0.5 left, 0.75 asked: 0.25 short at 600 s a unit.
    wait = "you can make this in 2 min 30 s (your limit is 6 standard images an hour)"
    assert await both(1, 10, 0.75) == (wait, wait)
    assert await both(1, 10, 0.25) == ("ok", "ok")
    assert await both(1, 10, 0.01) == (
        ("you already have 2 jobs queued or running (at most 2); wait for one to finish",) * 2
    )
    assert await both(1, 11, 0.01) == ("ok", "ok")
    full = "the queue is full (3 jobs); try again in a minute"
    assert await both(2, 20, 0.01) == (full, full)
    await queue.release(1, 10)
    local.finished(1, 10)
    assert await both(2, 20, 0.01) == ("ok", "ok")


async def test_a_job_cancelled_while_queued_on_redis_is_refunded_like_in_process(
    queue: RedisQueue,
) -> None:
    # Two jobs an hour per member and per guild; the in-process limiter replays every step.
    units = job(1, 1, 10).units
    limits = Limits(
        user_units_per_hour=units, user_burst=2 * units, guild_units_per_hour=units,
        guild_burst=2 * units, max_jobs_per_user=10,
    )  # fmt: skip
    local = RateLimiter(lambda: 0.0)

    async def admit(user: int) -> tuple[str, str]:
        answers = []
        for on_redis in (True, False):
            try:
                if on_redis:
                    await queue.admit(1, user, units, limits)
                else:
                    local.admit(1, user, units, limits)
                answers.append("ok")
            except RateLimited as refusal:
                answers.append(str(refusal))
        return answers[0], answers[1]

    refused = "you can make this in 60 min (your limit is 0.003125 standard images an hour)"
    assert await admit(10) == ("ok", "ok")
    await queue.submit(job(1, 1, 10))
    assert await admit(10) == ("ok", "ok")
    await queue.submit(job(2, 1, 10))
    assert await admit(10) == (refused, refused)

    assert await claim(queue) == 1  # a worker took job 1; job 2 waits
    assert await queue.cancel(2) == CancelOutcome.DEQUEUED
    local.refund(1, 10, units)
    local.finished(1, 10)
    assert await admit(10) == ("ok", "ok")  # job 2's units came back to the member and guild
    await queue.submit(job(3, 1, 10))
    assert await queue.cancel(1) == CancelOutcome.STOPPING  # started: it keeps its cost
    assert await admit(10) == (refused, refused)

    # A job readmitted after the bot restarted was not charged again: it gives nothing back.
    await queue.cancel(3)
    local.refund(1, 10, units)
    local.finished(1, 10)
    await queue.submit(job(4, 1, 10), readmit=True)
    assert await queue.cancel(4) == CancelOutcome.DEQUEUED
    assert await admit(11) == ("ok", "ok")  # the one unit back from job 3 …
    server = "you can make this in 60 min (this server's limit is 0.003125 standard images an hour)"
    assert await admit(12) == (server, server)  # … and none from job 4


def _start_worker(settings: Settings, prefix: str, name: str, log: Path) -> subprocess.Popen[bytes]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SDBOT_")} | {
        "SDBOT_MODEL": settings.model,
        "SDBOT_DEVICE": "cpu",
        "SDBOT_TORCH_THREADS": "1",
        "SDBOT_REDIS_URL": REDIS_URL,
        "SDBOT_REDIS_PREFIX": prefix,
        "SDBOT_WORKER_RECLAIM_S": "2",
        "SDBOT_DATA_DIR": str(settings.data_dir),
    }
    with log.open("wb") as stderr:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "bot", "worker", "--name", name],
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,  # its model process shares its group: one kill takes both
        )


async def test_two_workers_one_killed_mid_job_and_the_other_finishes_it(
    settings: Settings, prefix: str, tmp_path: Path
) -> None:
    await asyncio.to_thread(migrations.upgrade, settings.effective_database_url())
    settings = settings.model_copy(
        update={"redis_url": REDIS_URL, "redis_prefix": prefix, "max_steps": 300}
    )
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = _start_worker(settings, prefix, "first", first_log)
    second: subprocess.Popen[bytes] | None = None
    member = Requester(source="test", guild_id=7, channel_id=70, user_id=700)
    try:
        await wait_for_line(first_log, "taking jobs from")
        async with open_storage(settings) as storage, open_service(settings, storage) as service:
            running = asyncio.Event()
            places: list[Queued] = []
            long_job = asyncio.create_task(
                service.imagine(
                    RequestedOptions(prompt="a red circle", steps=250, seed=4),  # outlasts a start
                    member,
                    on_progress=lambda progress: running.set(),
                    on_queued=places.append,
                )
            )
            await asyncio.wait_for(running.wait(), 120)
            second = _start_worker(settings, prefix, "second", second_log)
            await wait_for_line(second_log, "taking jobs from")
            os.killpg(first.pid, signal.SIGKILL)  # the worker and its model process, mid-job

            outcome = await asyncio.wait_for(long_job, 240)
            assert outcome.status is JobStatus.SUCCEEDED
            assert outcome.seeds == (4, 5, 6, 7)
            assert all(image.watermark_verified for image in outcome.images)
            record = await storage.audit.get_job(outcome.job_id)
            assert record is not None
            assert (record.status, record.attempts) == (JobStatus.SUCCEEDED, 2)
            # An idle worker takes a job the instant it is pushed: at most it heard it was next.
            assert all(place.ahead == 0 for place in places)
            await wait_for_line(second_log, "taken over from first")

            # The owner cancels a running job on Redis: it stops between steps.
            steps: list[Progress] = []
            busy = asyncio.Event()

            def seen(progress: Progress) -> None:
                steps.append(progress)
                busy.set()

            cancelled = asyncio.create_task(
                service.imagine(
                    RequestedOptions(prompt="a blue square", steps=200), member, on_progress=seen
                )
            )
            await asyncio.wait_for(busy.wait(), 120)
            [job_id] = [
                r.id for r in await storage.audit.list_jobs() if r.prompt == "a blue square"
            ]
            assert await service.cancel(job_id, 700) == f"job {job_id} stops at its next step"
            ended = await asyncio.wait_for(cancelled, 120)
            assert ended.status is JobStatus.CANCELLED
            assert ended.error is not None
            assert ended.error.startswith("cancelled at step ")
            assert steps[-1].step < 200
            assert await service.queue.client.get(f"{prefix}:depth") == b"0"  # type: ignore[attr-defined]

        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=60) == 0
        assert "stopped after 2 jobs" in second_log.read_text()
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)


async def test_a_restarted_bot_follows_its_jobs_where_redis_holds_them(
    settings: Settings, prefix: str, tmp_path: Path
) -> None:
    await asyncio.to_thread(migrations.upgrade, settings.effective_database_url())
    settings = settings.model_copy(
        update={"redis_url": REDIS_URL, "redis_prefix": prefix, "max_steps": 300}
    )
    log = tmp_path / "worker.log"
    worker = _start_worker(settings, prefix, "only", log)
    try:
        await wait_for_line(log, "taking jobs from")
        async with open_storage(settings) as storage:
            async with open_service(settings, storage) as service:
                running = asyncio.Event()
                task = asyncio.create_task(
                    service.imagine(
                        RequestedOptions(prompt="a red circle", steps=60, seed=2),
                        Requester(source="test", guild_id=7, user_id=700),
                        on_progress=lambda progress: running.set(),
                    )
                )
                await asyncio.wait_for(running.wait(), 120)
                service.leave_jobs_open()  # the bot stops: its job stays open, the worker goes on
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            [left] = await storage.audit.open_jobs()
            assert left.status is JobStatus.RUNNING

            outcomes = []
            async with open_service(settings, storage) as restarted:
                assert await restarted.recover(outcomes.append) == 1
                await asyncio.wait_for(restarted.wait_recovered(), 120)
            [outcome] = outcomes
            assert (outcome.job_id, outcome.status) == (left.id, JobStatus.SUCCEEDED)
            record = await storage.audit.get_job(left.id)
            assert record is not None
            # One worker ran it once: the replayed start event did not count as a retry.
            assert (record.status, record.attempts) == (JobStatus.SUCCEEDED, 1)
            assert len(record.images) == 5
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)


async def test_hold_keeps_this_bots_waiting_jobs_from_workers_until_the_next_start_attaches(
    queue: RedisQueue, prefix: str
) -> None:
    await queue.submit(job(1, 1, 10))
    assert await claim(queue) == 1  # running on a worker
    waiting = job(2, 1, 10)
    await queue.submit(waiting)
    assert await queue.hold() == {1}
    late = job(3, 2, 20)
    await queue.submit(late)  # arrives while held: held as it comes
    assert await claim(queue) is None  # no worker takes a held job
    assert await queue.positions() == {}
    assert await queue.client.get(f"{prefix}:depth") in (None, b"0")  # submitted unadmitted

    # The next start attaches to its open jobs: they go back into the fair order.
    restarted = await RedisQueue.connect(REDIS_URL, prefix=prefix)
    try:
        assert await restarted.attach(2, waiting.uid) is not None
        assert await restarted.attach(3, late.uid) is not None
        # As newcomers, in fair order: guild 1 was served last, so guild 2's job goes first.
        assert {k: v.ahead for k, v in (await restarted.positions()).items()} == {3: 0, 2: 1}
        assert await claim(restarted) == 3
        assert await restarted.cancel(2, waiting.uid) == CancelOutcome.DEQUEUED
    finally:
        await restarted.close()


def test_the_codec_carries_every_protocol_field_without_code_of_its_own() -> None:
    policy = ImagePolicy(0.3, 0.1, NsfwPolicy.SPOILER, channel_nsfw=True)
    request = WorkRequest(7, job(7, 1, 1).request.options, policy)
    assert decode_payload(encode_request(request, "u" * 32)) == (request, "u" * 32)

    safety = SafetyResult(0.9, None)
    decision = ImageDecision(Disposition.WITHHELD, True, 0.3, "flagged")
    ready = ReadyImage(1, 5, b"\x89PNG tile", "ab", 8, 8, 17, True, safety, decision)
    shown = ImageDecision(Disposition.SHOWN, False, 0.3, "")
    grid = ReadyImage(0, 5, b"\x89PNG grid", "cd", 16, 16, 16, True, SafetyResult(0, None), shown)
    result = WorkResult(7, PostReady((ready,), grid), 1.5, 2.0)
    fields = encode_result(result, "u" * 32)
    stored = {key.encode(): value if isinstance(value, bytes) else value.encode()
              for key, value in fields.items()}  # fmt: skip
    # Each picture once, as raw bytes of its own field.
    assert sorted(stored) == [b"blob:0", b"blob:1", b"meta"]
    assert all(b"PNG" not in value for key, value in stored.items() if key == b"meta")
    assert decode_result(stored, "u" * 32) == result
    with pytest.raises(ForeignResult):
        decode_result(stored, "v" * 32)


PNG = b"\x89PNG\r\n\x1a\n"
IMAGE, CONTROL = PNG + bytes(range(256)) * 64, PNG + b"\x00\xff" * 5000


def pictures_request(job_id: int) -> WorkRequest:
    """A request with every way to start filled in and two of its three pictures."""
    options = dataclasses.replace(
        job(job_id, 1, 1).request.options,
        start="image",
        strength=0.6,
        source=Source(4_000_000_000, 2),
        control="canny",
        control_scale=1,  # an int, as JSON may give it back: read as the float it is
    )
    policy = ImagePolicy(threshold=0.5, strict_threshold=0.3)
    return WorkRequest(job_id, options, policy, InputImages(image=IMAGE, control=CONTROL))


def test_a_requests_pictures_travel_as_raw_bytes_beside_its_text() -> None:
    request = pictures_request(8)
    payload, blobs = encode_request(request, "u" * 32), request_blobs(request)
    assert blobs == [IMAGE, CONTROL]
    assert len(payload) < 1000  # the text names the pictures; it does not hold them
    assert json.loads(payload)["inputs"] == {
        "image": {"$blob": 0},
        "mask": None,
        "control": {"$blob": 1},
    }
    back, uid = decode_payload(payload, blobs)
    assert (back, uid) == (request, "u" * 32)
    assert back.batch_key == request.batch_key
    assert type(back.options.source) is Source
    assert type(back.options.control_scale) is float
    assert back.inputs is not None
    assert back.inputs.mask is None
    plain = job(9, 1, 1).request
    assert request_blobs(plain) == []
    assert decode_payload(encode_request(plain, "v" * 32)) == (plain, "v" * 32)
    with pytest.raises(UnreadableRequest, match="without the bytes it names"):
        decode_payload(payload, blobs[:1])


async def test_a_request_with_pictures_reaches_each_worker_byte_for_byte(
    queue: RedisQueue, prefix: str
) -> None:
    """Queued, claimed, taken over by a second worker when the first goes silent, and ended:
    the pictures are raw fields of the job in Redis, never base64 in its text, and the job
    that ended drops them."""
    request = pictures_request(1)
    queued = QueuedJob(request, 1, 10)
    await queue.submit(queued)
    stored = await queue.client.hgetall(f"{prefix}:job:{queued.uid}")
    assert (stored[b"blob:0"], stored[b"blob:1"], stored[b"blobs"]) == (IMAGE, CONTROL, b"2")
    assert b"PNG" not in stored[b"payload"]
    assert len(stored[b"payload"]) < 1000

    silent = await RedisWorker.connect(REDIS_URL, cast(Any, None), prefix=prefix, name="silent")
    taker = await RedisWorker.connect(
        REDIS_URL, cast(Any, None), prefix=prefix, name="taker", reclaim_after_s=0.001
    )
    try:
        [first] = await silent.next_batch()
        assert (first.request, first.uid, first.deliveries, first.previous) == (
            request, queued.uid, 1, ""
        )  # fmt: skip
        assert first.request.batch_key == request.batch_key
        await asyncio.sleep(0.05)  # idle past the taker's 1 ms
        [taken] = await taker.next_batch()
        assert (taken.request, taken.deliveries, taken.previous) == (request, 2, "silent")
        assert taken.request.inputs == InputImages(IMAGE, None, CONTROL)

        await taker._finish(taken.entry, taken.uid, Failed("checked"))
        ended: dict[Any, Any] = await queue.client.hgetall(f"{prefix}:job:{queued.uid}")
        assert not [key for key in ended if key.startswith(b"blob")]
        assert ended[b"state"] == b"done"
        assert ended[b"payload"] == stored[b"payload"]
    finally:
        await silent.close()
        await taker.close()

    waiting = QueuedJob(pictures_request(2), 1, 10)
    await queue.submit(waiting)
    assert await queue.cancel(2, waiting.uid) == CancelOutcome.DEQUEUED
    cancelled: dict[Any, Any] = await queue.client.hgetall(f"{prefix}:job:{waiting.uid}")
    assert not [key for key in cancelled if key.startswith(b"blob")]
