"""What the supervisor knows of one worker process: its pipe, what it said (in order), and
the batches in it by job id, each with the futures its caller awaits; and what each job's
result, each pipeline call and each model load add to the metrics of the process that runs the
model (``common.metrics``)."""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from common import metrics
from generation.errors import GenerationError
from generation.protocol import (
    DeviceCall,
    ModelLoaded,
    WorkCancelled,
    WorkerReady,
    WorkFailed,
    WorkResult,
)
from generation.queue.contract import ProgressCallback

Answer = WorkResult | WorkFailed | WorkCancelled


def jobs(job_ids: tuple[int, ...]) -> str:
    if len(job_ids) == 1:
        return f"job {job_ids[0]}"
    return "jobs " + ", ".join(str(job_id) for job_id in job_ids)


@dataclass(frozen=True)
class Exited:
    exitcode: int | None


class Wake:
    """Put in the inbox by this process: a batch was sent, the stall clock may start."""


def describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "closed its pipe"
    if exitcode < 0:
        try:
            return f"was killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"was killed by signal {-exitcode}"
    return f"exited with code {exitcode}"


@dataclass(frozen=True)
class JobWork:
    """What a job's result is counted as: its model's catalog name (the metrics' label) and
    its cost in standard images (``generation.limits.options_units``)."""

    model: str
    units: float


@dataclass(eq=False)
class InFlight:
    """A batch in the worker: its answers so far, and what its caller awaits (``drawn``:
    the device is done with it; ``done``: every answer). ``abandoned``: its caller went
    away; its answers are read and dropped. ``work``: each job's model and units, for the
    metrics."""

    job_ids: tuple[int, ...]
    on_progress: ProgressCallback | None
    drawn: asyncio.Future[None]
    done: asyncio.Future[dict[int, Answer]]
    answers: dict[int, Answer] = field(default_factory=dict)
    abandoned: bool = False
    work: dict[int, JobWork] = field(default_factory=dict)

    def count(self, result: WorkResult) -> None:
        """Adds a job's result to the metrics as it arrives (a worker that dies later in the
        batch does not take back what the device did): its stages, its images and the ones
        the NSFW check flagged. Its pipeline call and the model load it waited for are counted
        once each, from their own messages (:func:`count_device`)."""
        work = self.work.get(result.job_id, JobWork("unknown", 0.0))
        metrics.STAGE.labels("diffusion").observe(result.diffusion_ms / 1000)
        metrics.STAGE.labels("safety").observe(result.safety_ms / 1000)
        metrics.STAGE.labels("watermark").observe(result.watermark_ms / 1000)
        images = result.post.images
        metrics.IMAGES.labels(work.model).inc(len(images))
        metrics.STANDARD_IMAGES.labels(work.model).inc(work.units)
        flagged = sum(1 for image in images if image.decision.flagged)
        metrics.IMAGES_FLAGGED.labels(work.model).inc(flagged)

    def set_drawn(self) -> None:
        if not self.drawn.done():
            self.drawn.set_result(None)

    def fail(self, error: GenerationError | Exception) -> None:
        """The batch fails as a whole: raised by ``draw_batch`` when it is not drawn yet,
        else from its ``done`` future."""
        if not self.drawn.done():
            self.drawn.set_exception(error)
            self.done.cancel()  # never handed out
        elif not self.done.done():
            self.done.set_exception(error)

    def abandon(self) -> None:
        self.abandoned = True
        self.drawn.cancel()
        self.done.cancel()


@dataclass(eq=False)
class Session:
    """One worker process, its pipe, what it said (in order), and its batches by job id."""

    process: BaseProcess
    conn: Connection
    inbox: asyncio.Queue[object]
    ready: WorkerReady | None = None
    by_job: dict[int, InFlight] = field(default_factory=dict)
    last_heard: float = 0.0
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    router: asyncio.Task[None] | None = None

    def batches(self) -> list[InFlight]:
        return list(dict.fromkeys(self.by_job.values()))

    def add(self, entry: InFlight, now: float) -> None:
        if not self.by_job:
            self.last_heard = now  # the stall clock starts with the first batch in flight
        self.by_job.update(dict.fromkeys(entry.job_ids, entry))
        self.idle.clear()
        self.inbox.put_nowait(Wake())

    def remove(self, entry: InFlight) -> None:
        for job_id in entry.job_ids:
            if self.by_job.get(job_id) is entry:
                del self.by_job[job_id]
        if not self.by_job:
            self.idle.set()


def count_device(message: DeviceCall | ModelLoaded) -> None:
    """A pipeline call's device-seconds (drawn, cancelled or failed alike) and one model
    load, as the worker reports them: each once, whoever awaits its jobs (or none)."""
    if isinstance(message, DeviceCall):
        metrics.BATCHES.labels(message.model).inc()
        seconds = max(0.0, message.drawn_until - message.drawn_from)
        metrics.DEVICE_SECONDS.labels(message.model).inc(seconds)
    else:
        metrics.STAGE.labels("model_load").observe(message.load_ms / 1000)
