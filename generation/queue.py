"""The job queue between the service and the workers: admission, fair order, batches, events.

Two implementations keep one contract. :class:`LocalQueue` holds the fair queue in this process
and feeds the one worker process it supervises. ``generation.redis_queue.RedisQueue`` keeps the
same order, limits and events in Redis for ``sdbot worker`` processes on other machines.

A caller submits a job it has already recorded, then reads its events until a terminal one:
``Queued`` (position and ETA, again whenever they change), ``Started`` (a worker took it; a
second ``Started`` means a retry), ``Progress``, then one of ``Done``, ``Failed``, ``Cancelled``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol

from generation.errors import GenerationError
from generation.fairqueue import FairQueue, Ticket
from generation.limits import Limits, RateLimiter, options_units
from generation.protocol import (
    Progress,
    WorkBatch,
    WorkCancelled,
    WorkFailed,
    WorkRequest,
    WorkResult,
)
from generation.supervisor import WorkerSupervisor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QueuedJob:
    request: WorkRequest
    guild_id: int | None
    user_id: int | None
    # The job's identity, never reused (its record's ``uid``): Redis names its keys and events
    # by it, so a reset database that hands out the same id again never reads another's.
    uid: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def job_id(self) -> int:
        return self.request.job_id

    @property
    def units(self) -> float:
        return options_units(self.request.options)


@dataclass(frozen=True)
class Queued:
    ahead: int  # jobs before this one (0: next)
    eta_s: float | None  # seconds until it should be done; None until a job was measured


@dataclass(frozen=True)
class Started:
    # Which start this is, when the queue knows (Redis counts deliveries: 2 when a worker died
    # with it and another took it over); None: count it as one more start.
    attempt: int | None
    worker: str
    batch_size: int = 1


@dataclass(frozen=True)
class Done:
    result: WorkResult


@dataclass(frozen=True)
class Failed:
    reason: str


@dataclass(frozen=True)
class Cancelled:
    reason: str


JobEvent = Queued | Started | Progress | Done | Failed | Cancelled
TERMINAL_EVENTS = (Done, Failed, Cancelled)


class JobHandle:
    """The events of one job, in order, ending with a terminal one."""

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        self._events: asyncio.Queue[JobEvent] = asyncio.Queue()
        self.last_queued: Queued | None = None

    def put(self, event: JobEvent) -> None:
        if isinstance(event, Queued):
            if event == self.last_queued:
                return
            self.last_queued = event
        self._events.put_nowait(event)

    async def events(self) -> AsyncIterator[JobEvent]:
        while True:
            event = await self._events.get()
            yield event
            if isinstance(event, TERMINAL_EVENTS):
                return


class CancelOutcome:
    DEQUEUED = "dequeued"  # it was waiting; it will never run
    STOPPING = "stopping"  # it is running; it stops at the next denoising step
    UNKNOWN = "unknown"  # not queued or running here (finished, or never submitted)


class JobQueue(Protocol):
    """What the service needs from a queue, in-process or on Redis."""

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def admit(
        self, guild_id: int | None, user_id: int | None, units: float, limits: Limits
    ) -> None: ...
    async def release(self, guild_id: int | None, user_id: int | None) -> None: ...
    async def submit(self, job: QueuedJob, *, readmit: bool = False) -> JobHandle: ...
    async def attach(self, job_id: int, uid: str | None = None) -> JobHandle | None: ...
    async def cancel(self, job_id: int, uid: str | None = None) -> str: ...
    async def hold(self) -> set[int]: ...


@dataclass
class Throughput:
    """Seconds per standard image, a moving average of what the workers measured."""

    seconds_per_unit: float | None = None
    weight: float = 0.3

    def record(self, units: float, seconds: float) -> None:
        if units <= 0 or seconds <= 0:
            return
        sample = seconds / units
        if self.seconds_per_unit is None:
            self.seconds_per_unit = sample
        else:
            self.seconds_per_unit += self.weight * (sample - self.seconds_per_unit)

    def eta(self, units_ahead: float, workers: int = 1) -> float | None:
        if self.seconds_per_unit is None:
            return None
        return units_ahead * self.seconds_per_unit / max(1, workers)


@dataclass(frozen=True)
class BatchPolicy:
    """How many queued jobs that share a batch key may run in one pipeline call."""

    max_jobs: int = 4
    max_images: int = 16

    def __post_init__(self) -> None:
        if self.max_jobs < 1 or self.max_images < 1:
            raise ValueError(f"a batch holds at least one job and one image, got {self}")


def take_batch(queue: FairQueue[QueuedJob], policy: BatchPolicy) -> list[QueuedJob]:
    """The next job in fair order, and the next ones in fair order that can share its call.

    The jobs joining the head one only move earlier, so nobody waits longer for a batch.
    """
    popped = queue.pop()
    if popped is None:
        return []
    _, head = popped
    batch, images = [head], len(head.request.options.seeds)
    if policy.max_jobs > 1:
        companions: list[tuple[Ticket, QueuedJob]] = []
        for ticket, job in queue.items_in_order():
            if len(batch) + len(companions) >= policy.max_jobs:
                break
            size = len(job.request.options.seeds)
            if job.request.batch_key == head.request.batch_key and images + size <= (
                policy.max_images
            ):
                companions.append((ticket, job))
                images += size
        for ticket, job in companions:
            queue.cancel(ticket)
            batch.append(job)
    return batch


@dataclass
class _Entry:
    job: QueuedJob
    handle: JobHandle
    ticket: Ticket | None = None  # None once it left the queue
    charged: bool = True  # admitted here (a job readmitted after a restart was not)


@dataclass
class LocalQueue:
    """The queue in this process, in front of the one worker process it supervises."""

    supervisor: WorkerSupervisor
    batch: BatchPolicy = field(default_factory=BatchPolicy)
    clock: Callable[[], float] = time.monotonic
    throughput: Throughput = field(default_factory=Throughput)

    def __post_init__(self) -> None:
        self.limiter = RateLimiter(self.clock)
        self._fair: FairQueue[QueuedJob] = FairQueue()
        self._entries: dict[int, _Entry] = {}
        self._running: dict[int, _Entry] = {}
        self._running_until: float | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._held = False

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._dispatch(), name="sdbot-dispatch")

    async def close(self) -> None:
        """Stops dispatching; queued jobs stay recorded as queued for the next start."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def hold(self) -> set[int]:
        """Shutting down: no queued job starts any more (they stay recorded as queued for the
        next start); the running batch finishes. Returns the ids of the running jobs."""
        self._held = True
        return set(self._running)

    async def admit(
        self, guild_id: int | None, user_id: int | None, units: float, limits: Limits
    ) -> None:
        self.limiter.admit(guild_id, user_id, units, limits)

    async def release(self, guild_id: int | None, user_id: int | None) -> None:
        self.limiter.finished(guild_id, user_id)

    async def submit(self, job: QueuedJob, *, readmit: bool = False) -> JobHandle:
        """Queues an admitted job (``readmit``: one recorded before a restart, not charged)."""
        if readmit:
            self.limiter.readmit(job.guild_id, job.user_id)
        await self.start()
        handle = JobHandle(job.job_id)
        ticket = self._fair.push(job, guild=job.guild_id, user=job.user_id)
        self._entries[job.job_id] = _Entry(job, handle, ticket, charged=not readmit)
        self._announce()
        self._wake.set()
        return handle

    async def attach(self, job_id: int, uid: str | None = None) -> JobHandle | None:
        entry = self._entries.get(job_id)
        return None if entry is None else entry.handle

    async def cancel(self, job_id: int, uid: str | None = None) -> str:
        entry = self._entries.get(job_id)
        if entry is None:
            return CancelOutcome.UNKNOWN
        if entry.ticket is not None and self._fair.cancel(entry.ticket):
            if entry.charged:  # it never ran: what it cost goes back to its member and guild
                self.limiter.refund(entry.job.guild_id, entry.job.user_id, entry.job.units)
            self._end(entry, Cancelled("cancelled while queued"))
            self._announce()
            return CancelOutcome.DEQUEUED
        if job_id in self._running and self.supervisor.cancel(job_id):
            return CancelOutcome.STOPPING
        return CancelOutcome.UNKNOWN

    def positions(self) -> dict[int, Queued]:
        """Every queued job's place and ETA (the running batch's remaining time included)."""
        units_ahead = 0.0
        if self._running_until is not None:
            running_left = max(0.0, self._running_until - self.clock())
        else:
            running_left = 0.0
        out: dict[int, Queued] = {}
        for ahead, (_, job) in enumerate(self._fair.items_in_order()):
            units_ahead += job.units
            eta = self.throughput.eta(units_ahead)
            out[job.job_id] = Queued(ahead, None if eta is None else eta + running_left)
        return out

    def _announce(self) -> None:
        for job_id, place in self.positions().items():
            self._entries[job_id].handle.put(place)

    def _end(self, entry: _Entry, event: Done | Failed | Cancelled) -> None:
        self._entries.pop(entry.job.job_id, None)
        self._running.pop(entry.job.job_id, None)
        self.limiter.finished(entry.job.guild_id, entry.job.user_id)
        entry.handle.put(event)

    async def _dispatch(self) -> None:
        while True:
            batch = [] if self._held else take_batch(self._fair, self.batch)
            if not batch:
                self._wake.clear()
                await self._wake.wait()
                continue
            await self._run(batch)

    async def _run(self, batch: list[QueuedJob]) -> None:
        entries = [self._entries[job.job_id] for job in batch]
        units = sum(job.units for job in batch)
        estimate = self.throughput.eta(units)
        started = self.clock()
        self._running_until = None if estimate is None else started + estimate
        for entry in entries:
            entry.ticket = None
            self._running[entry.job.job_id] = entry
            entry.handle.put(Started(None, "local", len(batch)))
        self._announce()

        def on_progress(progress: Progress) -> None:
            entry = self._running.get(progress.job_id)
            if entry is not None:
                entry.handle.put(progress)

        work = WorkBatch(tuple(job.request for job in batch))
        try:
            answers = await self.supervisor.run_batch(work, on_progress)
        except GenerationError as error:  # crashed, stalled, or the model would not load
            for entry in entries:
                self._end(entry, Failed(str(error)))
            return
        except Exception as error:  # a bug must not stop the queue: the jobs fail, it goes on
            log.exception("batch %s failed", [entry.job.job_id for entry in entries])
            for entry in entries:
                self._end(entry, Failed(f"internal error: {type(error).__name__}: {error}"))
            return
        except asyncio.CancelledError:  # shutting down: the jobs stay open in the audit log
            raise
        finally:
            self._running_until = None
        self.throughput.record(units, self.clock() - started)
        for entry in entries:
            self._end(entry, answer_event(answers[entry.job.job_id]))
        self._announce()


def answer_event(answer: WorkResult | WorkFailed | WorkCancelled) -> Done | Failed | Cancelled:
    if isinstance(answer, WorkResult):
        return Done(answer)
    if isinstance(answer, WorkCancelled):
        return Cancelled(f"cancelled at step {answer.step} of {answer.total}")
    return Failed(answer.error)
