"""The worker process's end of its pipe: one thread reads it, every send takes one lock.

The reader thread owns ``conn.recv()``, so that a cancel is seen while the main thread draws
and the post-processing threads send answers: a batch waits in ``pending`` for the main
thread, a cancel goes into a set the drawing and the post-processing read, and ``None`` or the
pipe's end stops the worker once the batches it holds are answered.
"""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
from collections.abc import Iterable
from multiprocessing.connection import Connection
from typing import Protocol, runtime_checkable

from generation.protocol import CancelJob, WorkBatch

log = logging.getLogger(__name__)


class Sender(Protocol):
    def send(self, message: object) -> None: ...


@runtime_checkable
class Outbox(Protocol):
    """Where a worker's answers go, and the cancels it reads while it draws."""

    def send(self, message: object) -> None: ...
    def cancelled(self, job_id: int) -> bool: ...
    def answered(self, job_ids: Iterable[int]) -> None: ...


class SendOnly:
    """An outbox over anything that sends (a pipe end, a test's list), reading no cancels:
    a worker driven in this process, one batch at a time (tests, ``sdbot bench models``)."""

    def __init__(self, sender: Sender) -> None:
        self._sender = sender
        self._lock = threading.Lock()

    def send(self, message: object) -> None:
        with self._lock:
            self._sender.send(message)

    def cancelled(self, job_id: int) -> bool:
        return False

    def answered(self, job_ids: Iterable[int]) -> None:
        pass


class WorkerInbox:
    """What the supervisor sent, sorted for the threads that act on it (thread-safe)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._send_lock = threading.Lock()  # a Connection takes one sender at a time
        self._lock = threading.Lock()
        self._known: set[int] = set()  # jobs sent here and not answered yet
        self._cancelled: set[int] = set()
        self._pending: queue.SimpleQueue[WorkBatch | None] = queue.SimpleQueue()
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        """Starts reading, with the log fields bound here (the worker's name) on its lines."""
        context = contextvars.copy_context()
        self._reader = threading.Thread(
            target=context.run, args=(self._read,), name="worker-inbox", daemon=True
        )
        self._reader.start()

    def send(self, message: object) -> None:
        """Sends one message; a pipe the supervisor closed drops it (the worker is stopping)."""
        with self._send_lock:
            try:
                self._conn.send(message)
            except (BrokenPipeError, EOFError, OSError):
                job = getattr(message, "job_id", None)
                log.debug("pipe closed; %s dropped", type(message).__name__, extra={"job": job})

    def next_batch(self) -> WorkBatch | None:
        """The next batch to draw, in the order sent; None once the worker is to stop."""
        return self._pending.get()

    def cancelled(self, job_id: int) -> bool:
        with self._lock:
            return job_id in self._cancelled

    def answered(self, job_ids: Iterable[int]) -> None:
        """These jobs have had their answer: a later cancel of them needs none."""
        with self._lock:
            for job_id in job_ids:
                self._known.discard(job_id)
                self._cancelled.discard(job_id)

    def _read(self) -> None:
        while True:
            try:
                message = self._conn.recv()
            except (EOFError, OSError):
                break
            if message is None:
                break
            if isinstance(message, WorkBatch):
                with self._lock:
                    self._known.update(message.job_ids)
                    self._cancelled.update(set(message.cancelled) & set(message.job_ids))
                self._pending.put(message)
            elif isinstance(message, CancelJob):
                with self._lock:
                    known = message.job_id in self._known  # else: answered, nothing to do
                    if known:
                        self._cancelled.add(message.job_id)
                log.debug(
                    "cancel %s",
                    "taken" if known else "of an answered job",
                    extra={"job": message.job_id},
                )
        self._pending.put(None)
