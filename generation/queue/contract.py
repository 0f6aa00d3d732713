"""What every queue promises: the job it carries, the handle a follower reads, cancel outcomes,
the retry limit, and the protocols of both sides.

:class:`JobQueue` is the bot's side (admit, submit, follow, cancel, hold) together with the
workers the queue runs in this process, so that no caller needs to know which queue it holds:
``LocalQueue`` starts and stops its one worker process, ``RedisQueue`` has none here (its
workers are ``sdbot worker`` processes, :class:`JobConsumer`). :class:`Workers` is what a queue
needs from a worker process (``generation.supervisor.WorkerSupervisor`` is one); it is a
protocol so that importing the queue imports neither the supervisor nor the worker.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from generation.limits import Limits, options_units
from generation.protocol import Progress, WorkBatch, WorkerReady, WorkRequest
from generation.queue.events import TERMINAL_EVENTS, Answer, JobEvent, Queued

# A job is started at most this often: a job whose worker went away this many times (the
# worker process or the bot died with it) is failed, not started again.
MAX_STARTS = 2

ProgressCallback = Callable[[Progress], Awaitable[None] | None]


def starts_exhausted(starts: int) -> bool:
    """A job started ``starts`` times already (and lost each time) may not start again."""
    return starts >= MAX_STARTS


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


@dataclass(frozen=True)
class QueueDepth:
    """Jobs in the queue now, all guilds: waiting, and started by a worker and not finished."""

    queued: int
    running: int


class CancelOutcome(StrEnum):
    DEQUEUED = "dequeued"  # it was waiting; it will never run
    STOPPING = "stopping"  # it is running; it stops at the next denoising step
    UNKNOWN = "unknown"  # not queued or running here (finished, or never submitted)


class Workers(Protocol):
    """A worker process as a queue drives it (``WorkerSupervisor``)."""

    async def start(self) -> WorkerReady: ...
    async def close(self) -> None: ...
    async def run_batch(
        self, batch: WorkBatch, on_progress: ProgressCallback | None = None
    ) -> dict[int, Answer]: ...
    async def draw_batch(
        self, batch: WorkBatch, on_progress: ProgressCallback | None = None
    ) -> asyncio.Future[dict[int, Answer]]:
        """Sends a batch and returns once the device has drawn it (free for the next batch);
        the future gives every job's answer once its pictures are post-ready. Raises as
        ``run_batch`` does, here or from the future."""

    def cancel(self, job_id: int) -> bool: ...


class JobQueue(Protocol):
    """What the service needs from a queue, in-process or on Redis."""

    async def start(self) -> None: ...
    async def close(self) -> None:
        """Stops following; queued jobs stay recorded (and, on Redis, stored) for the next
        start. The workers this queue runs here go on until :meth:`stop_workers`."""

    async def start_workers(self) -> WorkerReady | None:
        """Starts the worker this queue runs in this process and waits for its model (a
        model that cannot load raises here); None when the workers run elsewhere."""

    async def stop_workers(self) -> None:
        """Stops the workers this queue runs in this process (after :meth:`close`)."""

    async def admit(
        self, guild_id: int | None, user_id: int | None, units: float, limits: Limits
    ) -> None: ...
    async def release(self, guild_id: int | None, user_id: int | None) -> None: ...
    async def submit(self, job: QueuedJob, *, readmit: bool = False) -> JobHandle: ...
    async def attach(self, job_id: int, uid: str | None = None) -> JobHandle | None: ...
    async def cancel(self, job_id: int, uid: str | None = None) -> str: ...
    async def hold(self) -> set[int]:
        """Shutting down: no queued job starts any more; running ones finish. Returns the ids
        of the running jobs."""

    async def positions(self) -> dict[int, Queued]:
        """Every queued job's place and ETA, by job id."""

    async def depth(self) -> QueueDepth:
        """How many jobs wait and run now (for the metrics; on Redis, one round trip)."""


class JobConsumer(Protocol):
    """A worker that takes jobs from a queue kept elsewhere (``sdbot worker`` on Redis)."""

    name: str
    jobs_done: int

    async def run(self, stop: asyncio.Event) -> None:
        """Takes and runs jobs until ``stop`` is set (the job in hand finishes first)."""

    async def close(self) -> None: ...
