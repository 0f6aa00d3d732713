"""The job queue between the service and the workers: admission, fair order, batches, events.

Two implementations keep one contract (``contract.JobQueue``, checked by one test suite on
both): :class:`LocalQueue` holds the fair queue in this process and feeds the one worker process
it supervises; ``generation.queue.redis`` keeps the same order, limits and events in Redis for
``sdbot worker`` processes on other machines (import it only when Redis is configured).

Where things live: ``events`` (a job's events and their codec), ``contract`` (the protocols,
``QueuedJob``, ``JobHandle``, ``CancelOutcome``, the retry limit), ``fair`` (the fair order,
places and ETAs), ``batch`` (batches and the one batch runner), ``local`` (``LocalQueue``),
``redis/`` (``scripts``, ``codec``, ``client``: ``RedisQueue``, ``consumer``: ``RedisWorker``).
"""

from __future__ import annotations

from generation.protocol import Progress
from generation.queue.batch import BatchOutcome, BatchPolicy, draw_batch, run_batch, take_batch
from generation.queue.contract import (
    MAX_STARTS,
    CancelOutcome,
    JobConsumer,
    JobHandle,
    JobQueue,
    QueuedJob,
    Workers,
    starts_exhausted,
)
from generation.queue.events import (
    CANCELLED_WHILE_QUEUED,
    TERMINAL_EVENTS,
    Cancelled,
    Done,
    EventKind,
    Failed,
    JobEvent,
    Queued,
    Started,
    Terminal,
    decode_event,
    encode_event,
    terminal_event,
)
from generation.queue.fair import FairQueue, Throughput, Ticket, fair_order, places
from generation.queue.local import LocalQueue

__all__ = [
    "CANCELLED_WHILE_QUEUED",
    "MAX_STARTS",
    "TERMINAL_EVENTS",
    "BatchOutcome",
    "BatchPolicy",
    "CancelOutcome",
    "Cancelled",
    "Done",
    "EventKind",
    "Failed",
    "FairQueue",
    "JobConsumer",
    "JobEvent",
    "JobHandle",
    "JobQueue",
    "LocalQueue",
    "Progress",
    "Queued",
    "QueuedJob",
    "Started",
    "Terminal",
    "Throughput",
    "Ticket",
    "Workers",
    "decode_event",
    "draw_batch",
    "encode_event",
    "fair_order",
    "places",
    "run_batch",
    "starts_exhausted",
    "take_batch",
    "terminal_event",
]
