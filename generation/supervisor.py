"""Runs the worker process from asyncio: start, one job at a time, crash and stall handling.

A worker that dies or stalls fails the job it held, with the reason, and the next job starts a
fresh worker: no job is lost and none is left without an outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import signal
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from generation.errors import (
    JobCancelled,
    JobTimedOut,
    ModelLoadError,
    WorkerCrashed,
    WorkerFailed,
)
from generation.protocol import (
    CancelJob,
    LoadingModel,
    Progress,
    WorkBatch,
    WorkCancelled,
    WorkerReady,
    WorkerSpec,
    WorkFailed,
    WorkRequest,
    WorkResult,
    notify,
)
from generation.queue.contract import ProgressCallback

log = logging.getLogger(__name__)

Answer = WorkResult | WorkFailed | WorkCancelled


def _jobs(job_ids: tuple[int, ...]) -> str:
    if len(job_ids) == 1:
        return f"job {job_ids[0]}"
    return "jobs " + ", ".join(str(job_id) for job_id in job_ids)


@dataclass(frozen=True)
class _Exited:
    exitcode: int | None


def describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "closed its pipe"
    if exitcode < 0:
        try:
            return f"was killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"was killed by signal {-exitcode}"
    return f"exited with code {exitcode}"


class WorkerSupervisor:
    def __init__(
        self,
        spec: WorkerSpec,
        *,
        start_timeout_s: float = 600.0,
        stall_timeout_s: float = 300.0,
    ) -> None:
        self.spec = spec
        self.start_timeout_s = start_timeout_s
        self.stall_timeout_s = stall_timeout_s
        self.ready_info: WorkerReady | None = None
        self._context = multiprocessing.get_context("spawn")
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self._inbox: asyncio.Queue[object] | None = None
        self._lock = asyncio.Lock()
        self._running: set[int] = set()
        self._starting: set[int] = set()  # in a batch waiting for the worker to take it
        self._cancel_at_start: set[int] = set()  # cancelled while starting: sent with it

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    async def start(self) -> WorkerReady:
        async with self._lock:
            return await self._ensure_started()

    async def _ensure_started(self) -> WorkerReady:
        if self.alive and self.ready_info is not None:
            return self.ready_info
        await self._stop_process()
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[object] = asyncio.Queue()
        parent_conn, child_conn = self._context.Pipe(duplex=True)
        # The worker module (and with it torch, diffusers and cv2) loads only where a worker
        # starts; the bot process imports this module and must stay light.
        from generation.worker import run_worker

        process = self._context.Process(
            target=run_worker, args=(child_conn, self.spec), name="sdbot-worker", daemon=True
        )
        process.start()
        child_conn.close()  # so that the worker's death reads as EOF here
        self._process, self._conn, self._inbox = process, parent_conn, inbox
        threading.Thread(
            target=self._read, args=(parent_conn, process, inbox, loop), daemon=True
        ).start()
        try:
            message = await asyncio.wait_for(inbox.get(), self.start_timeout_s)
        except TimeoutError:
            await self._stop_process()
            raise ModelLoadError(
                f"the worker did not load {self.spec.model!r} within {self.start_timeout_s:g} s"
            ) from None
        except BaseException:  # cancelled while loading: do not leave it loading
            await self._stop_process()
            raise
        if isinstance(message, WorkFailed):
            await self._stop_process()
            raise ModelLoadError(message.error)
        if isinstance(message, _Exited):
            await self._stop_process()
            raise ModelLoadError(f"the worker {describe_exit(message.exitcode)} while loading")
        assert isinstance(message, WorkerReady), message
        self.ready_info = message
        log.info(
            "worker ready ◆ pid %s ◆ %s ◆ %d CPU threads ◆ %.0f ms",
            process.pid,
            message.device,
            message.cpu_threads,
            message.load_ms,
        )
        return message

    @staticmethod
    def _read(
        conn: Connection,
        process: BaseProcess,
        inbox: asyncio.Queue[object],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        """Reader thread: forwards every message, then the exit once the pipe closes."""
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break
            loop.call_soon_threadsafe(inbox.put_nowait, message)
        process.join(timeout=10)
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            loop.call_soon_threadsafe(inbox.put_nowait, _Exited(process.exitcode))

    async def run(
        self, request: WorkRequest, on_progress: ProgressCallback | None = None
    ) -> WorkResult:
        """Runs one request to its result; raises WorkerCrashed, JobTimedOut, WorkerFailed or
        JobCancelled."""
        [answer] = (await self.run_batch(WorkBatch((request,)), on_progress)).values()
        if isinstance(answer, WorkFailed):
            raise WorkerFailed(answer.error)
        if isinstance(answer, WorkCancelled):
            raise JobCancelled(answer.step, answer.total)
        return answer

    async def run_batch(
        self, batch: WorkBatch, on_progress: ProgressCallback | None = None
    ) -> dict[int, Answer]:
        """Runs a batch; every job gets its answer (result, failure or cancel). Raises
        WorkerCrashed or JobTimedOut for the whole batch when the worker dies or stalls."""
        ids = set(batch.job_ids)
        self._starting |= ids
        try:
            async with self._lock:
                await self._ensure_started()
                assert self._conn is not None
                self._running, self._starting = ids, self._starting - ids
                try:
                    try:
                        self._conn.send(batch)
                        for job_id in sorted(self._cancel_at_start & ids):
                            self._conn.send(CancelJob(job_id))  # read at the first step
                    except OSError as error:  # it died between the liveness check and now
                        raise WorkerCrashed(
                            f"the worker process could not take {_jobs(batch.job_ids)}: {error}"
                        ) from error
                    return await self._wait_for_answers(batch, on_progress)
                except BaseException:
                    # Cancelled, stalled, crashed, or the progress callback failed: the worker
                    # may still be busy with this batch, and a fresh one is cheaper than waiting.
                    await self._stop_process()
                    raise
                finally:
                    self._running = set()
        finally:
            self._starting -= ids
            self._cancel_at_start -= ids

    async def draw_batch(
        self, batch: WorkBatch, on_progress: ProgressCallback | None = None
    ) -> asyncio.Future[dict[int, Answer]]:
        """Sends a batch and returns once the device has drawn it; the future gives the
        answers. (Skeleton: returns once the batch is finished.)"""
        answers = await self.run_batch(batch, on_progress)
        future: asyncio.Future[dict[int, Answer]] = asyncio.get_running_loop().create_future()
        future.set_result(answers)
        return future

    def cancel(self, job_id: int) -> bool:
        """Asks the worker to stop a running job at its next denoising step (False: not
        running here). Its answer comes back as WorkCancelled. A job whose batch waits for the
        worker (starting, loading the model) is cancelled as the worker takes it."""
        if job_id in self._starting:
            self._cancel_at_start.add(job_id)
            return True
        if job_id not in self._running or self._conn is None:
            return False
        try:
            self._conn.send(CancelJob(job_id))
        except OSError:  # it is dying; the batch fails with the reason
            return False
        return True

    async def _wait_for_answers(
        self, batch: WorkBatch, on_progress: ProgressCallback | None
    ) -> dict[int, Answer]:
        assert self._inbox is not None
        answers: dict[int, Answer] = {}
        while len(answers) < len(batch.requests):
            try:
                message = await asyncio.wait_for(self._inbox.get(), self.stall_timeout_s)
            except TimeoutError:
                raise JobTimedOut(
                    f"{_jobs(batch.job_ids)} made no progress for {self.stall_timeout_s:g} s; "
                    "the worker was stopped"
                ) from None
            if isinstance(message, Progress) and message.job_id in batch.job_ids:
                await notify(on_progress, message)
            elif isinstance(message, LoadingModel):  # busy, not stalled: the wait starts over
                log.info("loading model %r for %s", message.model, _jobs(message.job_ids))
            elif isinstance(message, WorkResult | WorkFailed | WorkCancelled):
                if message.job_id in batch.job_ids:
                    answers[message.job_id] = message
            elif isinstance(message, _Exited):
                raise WorkerCrashed(
                    f"the worker process {describe_exit(message.exitcode)} "
                    f"while running {_jobs(batch.job_ids)}"
                )
        return answers

    async def _stop_process(self) -> None:
        process, conn = self._process, self._conn
        self._process = self._conn = self._inbox = None
        self.ready_info = None
        if process is None:
            return
        if process.is_alive():
            process.kill()
        await asyncio.to_thread(process.join, 10)
        if conn is not None:
            conn.close()

    async def close(self) -> None:
        """Asks the worker to finish (after the job it runs), then stops it."""
        async with self._lock:
            if self.alive and self._conn is not None and self._process is not None:
                with contextlib.suppress(BrokenPipeError, OSError):
                    self._conn.send(None)
                await asyncio.to_thread(self._process.join, 10)
            await self._stop_process()
