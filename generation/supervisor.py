"""Runs the worker process from asyncio: start, batches drawn one after another while earlier
ones are post-processed, crash and stall handling.

The device is one asyncio lock, held while a batch is sent and drawn: :meth:`draw_batch`
returns once the worker says the batch is drawn (:class:`Drawn`), so that the next batch is
drawn while this one's pictures are checked, marked and encoded in the worker. One router task
per worker process reads what it says and hands each message to the batch that owns its job.
A worker that dies or stalls fails every batch it held, with the reason, and the next batch
starts a fresh worker: no job is lost and none is left without an outcome.

This process's metrics move here, as the answers arrive (``InFlight.count``): the stages the
worker measured, the images, the pipeline calls and their device-seconds, by model; and
``WORKER_RESTARTS`` when a worker that died or stalled is replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import logging
import multiprocessing
import threading
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from common import logs, metrics
from generation.errors import (
    JobCancelled,
    JobTimedOut,
    ModelLoadError,
    WorkerCrashed,
    WorkerFailed,
)
from generation.limits import options_units
from generation.protocol import (
    CancelJob,
    DeviceCall,
    Drawn,
    LoadingModel,
    ModelLoaded,
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
from generation.worker_link import (
    Answer,
    Exited,
    InFlight,
    JobWork,
    Session,
    Wake,
    count_device,
    describe_exit,
    jobs,
)

log = logging.getLogger(__name__)


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
        self._context = multiprocessing.get_context("spawn")
        self._session: Session | None = None
        self._device = asyncio.Lock()  # held while a batch is sent and drawn
        self._starting: set[int] = set()  # in a batch waiting for the device or the worker
        self._cancel_at_start: set[int] = set()  # cancelled while starting: sent with it
        self._lost = False  # the last worker died or stalled: the next start is a restart
        self._default_model: str | None = None  # the catalog's name, read on first use

    @property
    def ready_info(self) -> WorkerReady | None:
        return None if self._session is None else self._session.ready

    @property
    def pid(self) -> int | None:
        return None if self._session is None else self._session.process.pid

    @property
    def alive(self) -> bool:
        return self._session is not None and self._session.process.is_alive()

    async def start(self) -> WorkerReady:
        async with self._device:
            session = await self._ensure_started()
        assert session.ready is not None
        return session.ready

    async def _ensure_started(self) -> Session:
        if self._session is not None and self.alive and self._session.ready is not None:
            return self._session
        if self._session is not None:  # dead: its router fails what it held
            self._lost = True
            await self._stop(self._session)
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
        if self._lost:
            self._lost = False
            metrics.WORKER_RESTARTS.inc()
        session = Session(process, parent_conn, inbox)
        session.idle.set()
        self._session = session
        threading.Thread(
            target=self._read, args=(parent_conn, process, inbox, loop), daemon=True
        ).start()
        try:
            message = await asyncio.wait_for(inbox.get(), self.start_timeout_s)
        except TimeoutError:
            await self._stop(session)
            raise ModelLoadError(
                f"the worker did not load {self.spec.model!r} within {self.start_timeout_s:g} s"
            ) from None
        except BaseException:  # cancelled while loading: do not leave it loading
            await self._stop(session)
            raise
        if isinstance(message, WorkFailed):
            await self._stop(session)
            raise ModelLoadError(message.error)
        if isinstance(message, Exited):
            await self._stop(session)
            raise ModelLoadError(f"the worker {describe_exit(message.exitcode)} while loading")
        assert isinstance(message, WorkerReady), message
        session.ready = message
        route = self._route(session)  # it outlives the batch that started it: not its job
        session.router = asyncio.create_task(
            route, name="sdbot-worker-router", context=contextvars.Context()
        )
        log.info(
            "worker ready ◆ pid %s ◆ %s ◆ %d CPU threads ◆ fast path: %s ◆ %.0f ms",
            process.pid,
            message.device,
            message.cpu_threads,
            ", ".join(message.fast_path) or "none",
            message.load_ms,
        )
        return session

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
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
                loop.call_soon_threadsafe(inbox.put_nowait, message)
        process.join(timeout=10)
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(inbox.put_nowait, Exited(process.exitcode))

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
        return await (await self.draw_batch(batch, on_progress))

    async def draw_batch(
        self, batch: WorkBatch, on_progress: ProgressCallback | None = None
    ) -> asyncio.Future[dict[int, Answer]]:
        """Sends a batch and returns once the device has drawn it; the future gives every
        job's answer once post-ready. Raises WorkerCrashed or JobTimedOut (here, or from the
        future once drawn) when the worker dies or stalls.

        Cancelled while it waits for the drawing, it stops the worker when nothing else is in
        it (a fresh one is cheaper than waiting); else it cancels its jobs there."""
        ids = set(batch.job_ids)
        self._starting |= ids
        try:
            async with self._device:
                session = await self._ensure_started()
                loop = asyncio.get_running_loop()
                entry = InFlight(
                    batch.job_ids,
                    on_progress,
                    loop.create_future(),
                    loop.create_future(),
                    work=self._work_of(batch),
                )
                self._starting -= ids
                session.add(entry, loop.time())
                cancelled = tuple(sorted(self._cancel_at_start & ids))
                try:
                    session.conn.send(dataclasses.replace(batch, cancelled=cancelled))
                except OSError as error:  # it died between the liveness check and now
                    session.remove(entry)
                    entry.abandon()
                    raise WorkerCrashed(
                        f"the worker process could not take {jobs(batch.job_ids)}: {error}"
                    ) from error
                try:
                    await asyncio.shield(entry.drawn)
                except asyncio.CancelledError:
                    if not entry.drawn.done() or entry.drawn.cancelled():
                        await self._abandon(session, entry)
                    raise
        finally:
            self._starting -= ids
            self._cancel_at_start -= ids
        return entry.done

    def _work_of(self, batch: WorkBatch) -> dict[int, JobWork]:
        """Each job's model (the catalog's name: "" is the default model) and units."""
        return {
            request.job_id: JobWork(
                request.options.model or self._default_model_name(),
                options_units(request.options),
            )
            for request in batch.requests
        }

    def _default_model_name(self) -> str:
        """The catalog's default model, as the worker names it: the spec's catalog, else
        ``SDBOT_MODEL`` read as the one model (its sdbot.json, its folder's name)."""
        if self._default_model is None:
            if self.spec.catalog is not None:
                self._default_model = self.spec.catalog.default_model
            else:
                from generation.catalog_files import single_model

                try:
                    self._default_model = single_model(self.spec.model).name
                except Exception as error:  # the worker says why at its start; count on
                    log.debug("no catalog name for %r: %s", self.spec.model, error)
                    self._default_model = "default"
        return self._default_model

    async def _abandon(self, session: Session, entry: InFlight) -> None:
        entry.abandon()
        if any(not other.abandoned for other in session.batches()):
            for job_id in entry.job_ids:  # the others go on; this one stops at its next step
                if job_id in session.by_job:
                    with contextlib.suppress(OSError):
                        session.conn.send(CancelJob(job_id))
        else:
            await self._stop(session)

    def cancel(self, job_id: int) -> bool:
        """Asks the worker to stop a job (False: not in it). Its answer comes back as
        WorkCancelled: at its next denoising step while drawn, before it is drawn while its
        batch waits, dropped before post-processing once drawn. A job whose batch waits for
        the device or the worker (starting, loading the model) is cancelled as it is sent."""
        if job_id in self._starting:
            self._cancel_at_start.add(job_id)
            return True
        session = self._session
        if session is None or job_id not in session.by_job:
            return False
        try:
            session.conn.send(CancelJob(job_id))
        except OSError:  # it is dying; the batch fails with the reason
            return False
        return True

    async def _route(self, session: Session) -> None:
        """Hands each message of the worker to the batch that owns its job, until the worker
        exits; a stall (no message at all for ``stall_timeout_s`` while a batch is in it)
        stops the worker and fails every batch it held."""
        logs.bind(worker=self.spec.name)  # a named worker's lines name it (an own context)
        loop = asyncio.get_running_loop()
        while True:
            timeout = None
            if session.by_job:
                timeout = max(0.0, session.last_heard + self.stall_timeout_s - loop.time())
            try:
                message = await asyncio.wait_for(session.inbox.get(), timeout)
            except TimeoutError:
                if session.by_job and loop.time() - session.last_heard >= self.stall_timeout_s:
                    self._lost = True
                    await self._stop(session)
                    for entry in session.batches():
                        session.remove(entry)
                        entry.fail(
                            JobTimedOut(
                                f"{jobs(entry.job_ids)} made no progress for "
                                f"{self.stall_timeout_s:g} s; the worker was stopped"
                            )
                        )
                continue
            if isinstance(message, Wake):
                continue
            if isinstance(message, Exited):
                for entry in session.batches():
                    session.remove(entry)
                    entry.fail(
                        WorkerCrashed(
                            f"the worker process {describe_exit(message.exitcode)} "
                            f"while running {jobs(entry.job_ids)}"
                        )
                    )
                if self._session is session:  # not stopped here: it died
                    self._session = None
                    self._lost = True
                return
            session.last_heard = loop.time()
            await self._deliver(session, message)

    async def _deliver(self, session: Session, message: object) -> None:
        if isinstance(message, Progress):
            entry = session.by_job.get(message.job_id)
            if entry is not None and not entry.abandoned:
                try:
                    await notify(entry.on_progress, message)
                except Exception as error:  # the caller's own failure: its batch stops
                    entry.fail(error)
                    await self._abandon(session, entry)
        elif isinstance(message, LoadingModel):  # busy, not stalled: the wait starts over
            job = message.job_ids[0] if len(message.job_ids) == 1 else None
            with logs.bound(job=job):
                log.info("loading model %r for %s", message.model, jobs(message.job_ids))
        elif isinstance(message, DeviceCall | ModelLoaded):
            count_device(message)
        elif isinstance(message, Drawn):
            for job_id in message.job_ids:
                if (entry := session.by_job.get(job_id)) is not None:
                    entry.set_drawn()
        elif isinstance(message, WorkResult | WorkFailed | WorkCancelled):
            if message.job_id is None or (entry := session.by_job.get(message.job_id)) is None:
                return
            entry.answers[message.job_id] = message
            del session.by_job[message.job_id]
            if isinstance(message, WorkResult):
                entry.count(message)
            if len(entry.answers) == len(entry.job_ids):
                session.remove(entry)
                entry.set_drawn()
                if not entry.done.done():
                    entry.done.set_result(entry.answers)

    async def _stop(self, session: Session) -> None:
        """Kills the session's worker (its router then fails what it held, unless the caller
        failed it first) and forgets it."""
        if self._session is session:
            self._session = None
        if session.process.is_alive():
            session.process.kill()
        await asyncio.to_thread(session.process.join, 10)
        session.conn.close()

    async def close(self) -> None:
        """Lets the batches in the worker finish, then asks it to stop and waits for it."""
        async with self._device:
            session = self._session
            if session is None:
                return
            if session.process.is_alive():
                await session.idle.wait()  # a stall or a crash fails them: this ends
                with contextlib.suppress(BrokenPipeError, OSError):
                    session.conn.send(None)
                await asyncio.to_thread(session.process.join, 10)
            await self._stop(session)
            if session.router is not None:
                await session.router  # it reads the exit and ends
