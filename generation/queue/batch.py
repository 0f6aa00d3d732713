"""Batches: which queued jobs may share one pipeline call, and the one runner that sends a
batch to a worker process and turns what comes back into each job's terminal event.

``LocalQueue`` sends every batch through :func:`draw_batch` and sends the next one as soon as
the device has drawn it, while the worker post-processes the first; :func:`run_batch` is the
same for a caller that waits for the answers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from generation.errors import GenerationError
from generation.protocol import WorkBatch, WorkRequest
from generation.queue.contract import ProgressCallback, QueuedJob, Workers
from generation.queue.events import Failed, Terminal, terminal_event
from generation.queue.fair import FairQueue, Ticket

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class BatchOutcome:
    """Each job's terminal event; ``answered``: the worker answered every job (its time
    measures the work), rather than the batch failing as a whole."""

    events: dict[int, Terminal]
    answered: bool


async def run_batch(
    workers: Workers, requests: Sequence[WorkRequest], on_progress: ProgressCallback | None
) -> BatchOutcome:
    """Runs the requests as one batch. A worker that crashed, stalled or could not load its
    model fails every job of the batch with the reason. Anything else (a bug) propagates, and
    the caller decides whether its loop goes on."""
    return await (await draw_batch(workers, requests, on_progress))


async def draw_batch(
    workers: Workers, requests: Sequence[WorkRequest], on_progress: ProgressCallback | None
) -> asyncio.Future[BatchOutcome]:
    """Sends the requests as one batch and returns once the worker's device has drawn them,
    so that the caller can send the next batch while this one is checked, marked and encoded;
    the future it returns gives each job's terminal event (failures as :func:`run_batch`)."""

    def failures(error: GenerationError) -> BatchOutcome:
        return BatchOutcome({request.job_id: Failed(str(error)) for request in requests}, False)

    try:
        answers = await workers.draw_batch(WorkBatch(tuple(requests)), on_progress)
    except GenerationError as error:
        return _resolved(failures(error))

    async def outcome() -> BatchOutcome:
        try:
            done = await answers
        except GenerationError as error:
            return failures(error)
        events = {request.job_id: terminal_event(done[request.job_id]) for request in requests}
        return BatchOutcome(events, True)

    return asyncio.ensure_future(outcome())


def _resolved(outcome: BatchOutcome) -> asyncio.Future[BatchOutcome]:
    future: asyncio.Future[BatchOutcome] = asyncio.get_running_loop().create_future()
    future.set_result(outcome)
    return future
