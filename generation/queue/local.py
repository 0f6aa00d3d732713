"""The queue in this process, in front of the one worker process it supervises.

Its dispatcher sends a batch, waits only until the worker's device has drawn it, and sends the
next one at once; a task per batch waits for its post-ready answers and ends its jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from common import logs
from generation.limits import Limits, RateLimiter
from generation.protocol import Progress, WorkerReady
from generation.queue.batch import BatchOutcome, BatchPolicy, draw_batch, take_batch
from generation.queue.contract import CancelOutcome, JobHandle, QueueDepth, QueuedJob
from generation.queue.events import (
    CANCELLED_WHILE_QUEUED,
    Cancelled,
    Failed,
    Queued,
    Started,
    Terminal,
)
from generation.queue.fair import FairQueue, Throughput, Ticket, places

if TYPE_CHECKING:
    from generation.supervisor import WorkerSupervisor

log = logging.getLogger(__name__)


@dataclass
class _Entry:
    job: QueuedJob
    handle: JobHandle
    ticket: Ticket | None = None  # None once it left the queue
    charged: bool = True  # admitted here (a job readmitted after a restart was not)


@dataclass
class LocalQueue:
    """The queue in this process, in front of the one worker process it supervises.

    ``supervisor`` is built by the caller (the composition root) and imported here only for
    its type, so that importing the queue does not import the worker module.
    """

    supervisor: WorkerSupervisor
    batch: BatchPolicy = field(default_factory=BatchPolicy)
    clock: Callable[[], float] = time.monotonic
    throughput: Throughput = field(default_factory=Throughput)

    def __post_init__(self) -> None:
        self.limiter = RateLimiter(self.clock)
        self._fair: FairQueue[QueuedJob] = FairQueue()
        self._entries: dict[int, _Entry] = {}
        self._running: dict[int, _Entry] = {}
        self._running_until: float | None = None  # when the batch drawing now should end
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._finishing: set[asyncio.Task[None]] = set()  # drawn batches, post-processed
        self._held = False

    async def start(self) -> None:
        if self._task is None:
            # Started by the first job queued, it outlives it: no job's log fields on it.
            dispatch = self._dispatch()
            self._task = asyncio.create_task(
                dispatch, name="sdbot-dispatch", context=contextvars.Context()
            )

    async def close(self) -> None:
        """Stops dispatching; queued jobs stay recorded as queued for the next start. A batch
        being drawn is given up (its jobs stay open for the next start); drawn ones, being
        post-processed, end with their answers first."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._finishing:
            await asyncio.wait(self._finishing)

    async def start_workers(self) -> WorkerReady:
        """Starts the worker process and waits for its model (ModelLoadError if it cannot)."""
        return await self.supervisor.start()

    async def stop_workers(self) -> None:
        """Stops the worker process (after the job it runs)."""
        await self.supervisor.close()

    async def hold(self) -> set[int]:
        """Shutting down: no queued job starts any more (they stay recorded as queued for the
        next start); the running batches finish. Returns the ids of the running jobs: the
        drawing batch's and the drawn ones' being post-processed."""
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
            self._end(entry, Cancelled(CANCELLED_WHILE_QUEUED))
            self._announce()
            return CancelOutcome.DEQUEUED
        if job_id in self._running and self.supervisor.cancel(job_id):
            return CancelOutcome.STOPPING
        return CancelOutcome.UNKNOWN

    async def positions(self) -> dict[int, Queued]:
        """Every queued job's place and ETA (the running batch's remaining time included)."""
        return self._positions()

    async def depth(self) -> QueueDepth:
        """Queued: the jobs in the fair order; running: the drawing batch's and the drawn ones'
        being post-processed (each leaves ``_running`` as its job ends)."""
        return QueueDepth(queued=len(self._fair), running=len(self._running))

    def _positions(self) -> dict[int, Queued]:
        running_left = 0.0
        if self._running_until is not None:
            running_left = max(0.0, self._running_until - self.clock())
        order = [(job.job_id, job.units) for _, job in self._fair.items_in_order()]
        return places(order, self.throughput, running_left=running_left)

    def _announce(self) -> None:
        for job_id, place in self._positions().items():
            self._entries[job_id].handle.put(place)

    def _end(self, entry: _Entry, event: Terminal) -> None:
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
            only = batch[0] if len(batch) == 1 else None
            with logs.bound(  # its lines (a restart it causes) name its job: a batch's, its ids
                job=only.job_id if only else ",".join(str(job.job_id) for job in batch),
                guild=only.guild_id if only else None,
            ):
                await self._draw(batch)

    async def _draw(self, batch: list[QueuedJob]) -> None:
        """Sends the batch and returns once it is drawn (or failed); its jobs end later."""
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

        try:
            requests = [job.request for job in batch]
            outcome = await draw_batch(self.supervisor, requests, on_progress)
        except Exception as error:  # a bug must not stop the queue: the jobs fail, it goes on
            self._internal_error(entries, error)
            return
        finally:
            self._running_until = None
        # The device's time for the batch: what the jobs behind it wait for.
        device_s = self.clock() - started
        task = asyncio.create_task(self._finish(entries, outcome, units, device_s))
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)

    async def _finish(
        self,
        entries: list[_Entry],
        outcome: asyncio.Future[BatchOutcome],
        units: float,
        device_s: float,
    ) -> None:
        try:
            done = await outcome
        except Exception as error:
            self._internal_error(entries, error)
            return
        if done.answered:  # not crashed, stalled, or a model that would not load
            self.throughput.record(units, device_s)
        for entry in entries:
            self._end(entry, done.events[entry.job.job_id])
        self._announce()

    def _internal_error(self, entries: list[_Entry], error: Exception) -> None:
        log.error("batch %s failed", [entry.job.job_id for entry in entries], exc_info=error)
        for entry in entries:
            self._end(entry, Failed(f"internal error: {type(error).__name__}: {error}"))
