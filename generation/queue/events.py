"""A job's events, one set for every queue, and their one text codec.

A follower reads ``Queued`` (position and ETA, again whenever they change), ``Started`` (a
worker took it; a second ``Started`` means a retry), ``Progress``, then exactly one terminal
event: ``Done``, ``Failed`` or ``Cancelled``. That is the only vocabulary for a job's end: the
worker process's answers become one through :func:`terminal_event`, and the Redis stream writes
and reads them through :func:`encode_event` and :func:`decode_event`, whose ``type`` field takes
the :class:`EventKind` values (the Lua that cancels a queued job writes fields made here too).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from generation.protocol import Progress, WorkCancelled, WorkFailed, WorkResult

CANCELLED_WHILE_QUEUED = "cancelled while queued"


class EventKind(StrEnum):
    """The ``type`` of an event on the wire."""

    STARTED = "started"
    PROGRESS = "progress"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


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
Terminal = Done | Failed | Cancelled
TERMINAL_EVENTS = (Done, Failed, Cancelled)
Answer = WorkResult | WorkFailed | WorkCancelled


def terminal_event(answer: Answer) -> Terminal:
    """The worker process's answer for one job, as the job's terminal event."""
    if isinstance(answer, WorkResult):
        return Done(answer)
    if isinstance(answer, WorkCancelled):
        return Cancelled(f"cancelled at step {answer.step} of {answer.total}")
    return Failed(answer.error)


def encode_event(event: Started | Progress | Terminal) -> dict[str, str]:
    """An event as text fields. ``Done`` carries no result: the result travels apart (it is
    large) and the reader fetches it when it reads ``done``."""
    if isinstance(event, Started):
        attempt = "" if event.attempt is None else str(event.attempt)
        return {
            "type": EventKind.STARTED,
            "attempt": attempt,
            "worker": event.worker,
            "batch_size": str(event.batch_size),
        }
    if isinstance(event, Progress):
        return {"type": EventKind.PROGRESS, "step": str(event.step), "total": str(event.total)}
    if isinstance(event, Done):
        return {"type": EventKind.DONE}
    if isinstance(event, Cancelled):
        return {"type": EventKind.CANCELLED, "reason": event.reason}
    return {"type": EventKind.FAILED, "reason": event.reason}


def decode_event(job_id: int, fields: Mapping[str, str]) -> JobEvent | EventKind:
    """The event these fields hold; :attr:`EventKind.DONE` when it is ``done`` (the caller
    fetches the result). An unknown kind reads as a failure, so that a follower never hangs."""
    kind = fields.get("type", "")
    if kind == EventKind.STARTED:
        attempt = fields.get("attempt", "")
        batch_size = int(fields.get("batch_size") or 1)  # absent from an older worker's
        return Started(int(attempt) if attempt else None, fields.get("worker", ""), batch_size)
    if kind == EventKind.PROGRESS:
        return Progress(job_id, int(fields["step"]), int(fields["total"]))
    if kind == EventKind.DONE:
        return EventKind.DONE
    if kind == EventKind.CANCELLED:
        return Cancelled(fields["reason"])
    return Failed(fields.get("reason", "the worker failed"))
