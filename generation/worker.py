"""The worker process: keeps the models it is asked for loaded (within a memory budget, see
:mod:`generation.model_pool`), and turns requests into pictures ready to post.

Every image passes the safety checker and carries a verified watermark before it leaves here.
Under the image policy the request carries (fixed at admission) the worker decides each
picture's disposition, swaps withheld ones for their placeholder tiles and draws and marks the
grid, so that what it returns is ready to post: the bot only writes files and posts.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from concurrent.futures import Future
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING

from common import logs
from common.errors import SdbotError
from generation.errors import InvalidOption, ModelLoadError
from generation.pictures_in import request_pictures
from generation.postprocess import Drawing, DrawnJob, PostProcessor, drawn_job, failure
from generation.protocol import (
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
    keeping_alive,
)
from generation.worker_inbox import Outbox, Sender, SendOnly, WorkerInbox
from moderation.safety import OpenNSFWChecker

if TYPE_CHECKING:
    from generation.model_pool import LoadedModel

log = logging.getLogger(__name__)


class _Cancelled(Exception):
    """Raised from the step callback to stop a batch whose jobs were all cancelled."""


def usable_cores() -> int:
    """The cores this process may run on (a container's or ``taskset``'s share, not the host's)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cpu_threads(configured: int | None, cores: int) -> int:
    """The worker's CPU threads: ``SDBOT_TORCH_THREADS`` when set, else every core but one.

    The spare core is the bot's: its event loop answers Discord within 3 s and heartbeats the
    gateway. On 2 busy cores, torch on both of them drew ~10× slower than on one, and the bot
    fell 41 s behind its gateway (a missed heartbeat is a reconnect on Discord).
    """
    return configured if configured is not None else max(1, cores - 1)


def postprocess_threads(cores: int) -> int:
    """Threads that post-process beside the device: one up to 4 cores (on 2 it shares the
    bot's core: a second would take torch's), two beyond, where a fast device can draw a
    batch sooner than one thread checks, marks and encodes it."""
    return 1 if cores <= 4 else 2


class Worker:
    """Draws on the main thread; post-processes on :class:`PostProcessor`'s threads, which
    send each job's answer through ``inbox`` while the next batch is drawn."""

    def __init__(self, spec: WorkerSpec) -> None:
        import torch

        from generation.catalog import load_catalog
        from generation.model_pool import ModelPool, memory_budget
        from generation.pipeline import resolve_device, resolve_dtype

        started = time.perf_counter()
        self.spec = spec
        self.device = resolve_device(spec.device)
        threads = cpu_threads(spec.torch_threads, usable_cores())
        if spec.torch_threads is not None or self.device == "cpu":  # a GPU: torch's own choice
            torch.set_num_threads(threads)
        self.dtype = resolve_dtype(spec.dtype, self.device)
        catalog = spec.catalog or load_catalog(spec.model)
        budget = memory_budget(spec.memory_gb, self.device)
        self.pool = ModelPool(catalog, self.device, self.dtype, budget, fast=spec.fast)
        self.pool.get(catalog.default_model)  # the default model is loaded before any job
        self.post = PostProcessor(
            OpenNSFWChecker(threads=threads),
            min_output_side=spec.min_output_side,
            threads=spec.postprocess_threads or postprocess_threads(usable_cores()),
            backlog=spec.postprocess_backlog,
        )
        self.load_ms = (time.perf_counter() - started) * 1000

    def ready(self) -> WorkerReady:
        import torch

        dtype = str(self.dtype).removeprefix("torch.")
        default, _ = self.pool.get(self.pool.catalog.default_model)
        return WorkerReady(
            self.spec.model,
            self.device,
            dtype,
            self.load_ms,
            torch.get_num_threads(),
            fast_path=default.fast,
        )

    def process(self, batch: WorkBatch, outbox: Outbox | Sender, *, wait: bool = True) -> None:
        """Draws a batch and hands its jobs to post-processing; every job gets one answer (its
        result, its failure or its cancel), and the batch its :class:`Drawn` once the device
        is free for the next one (its answers may come before or after).

        ``wait``: return once every answer is sent (a worker driven from this process);
        the worker process returns as soon as the device is free. A plain sender (a pipe end,
        not an :class:`Outbox`) reads no cancels."""
        inbox = outbox if isinstance(outbox, Outbox) else SendOnly(outbox)
        finishing: list[Future[None]] = []
        try:
            self._process(batch, inbox, finishing)
        finally:
            inbox.send(Drawn(batch.job_ids))
        if wait:
            for future in finishing:
                future.result()

    def _process(self, batch: WorkBatch, inbox: Outbox, finishing: list[Future[None]]) -> None:
        """The batch's model is loaded first if it is not (the switch's time goes with each
        result), with its LoRAs; a model or LoRA that cannot be used fails the batch's jobs
        and the worker serves the next. Requests whose prompts take different numbers of text
        encoder windows run in separate pipeline calls (padding would change their pixels).
        A batch whose jobs were all cancelled before it was drawn is not drawn."""
        refused = {r.job_id: failed for r in batch.requests if (failed := refused_pictures(r))}
        for failed in refused.values():
            _answer(inbox, failed)
        requests = [request for request in batch.requests if request.job_id not in refused]
        if all(inbox.cancelled(request.job_id) for request in requests):
            for request in requests:
                _answer(inbox, WorkCancelled(request.job_id, 0, request.options.steps))
            return
        first, jobs = requests[0].options, tuple(request.job_id for request in requests)
        try:
            with keeping_alive(inbox.send, LoadingModel(jobs, first.model)):
                model, load_ms = self.pool.prepare(first.model, first.loras, first.control)
            if load_ms > 0:  # once per load, however many jobs and calls waited for it
                inbox.send(ModelLoaded(model.name, load_ms))
            groups: dict[int, list[WorkRequest]] = {}
            for request in requests:
                groups.setdefault(model.runner.window_count(request), []).append(request)
        except Exception as error:  # report every job as failed; the worker stays up
            if isinstance(error, SdbotError):  # an unknown model, a LoRA that does not fit
                log.warning("batch %s failed: %s", jobs, error)
            else:
                log.exception("batch %s failed", jobs)
            for job_id in jobs:
                _answer(inbox, WorkFailed(job_id, failure(error)))
            return
        cancelled: dict[int, tuple[int, int]] = {}  # where each cancelled job stopped
        for requests in groups.values():
            group = WorkBatch(tuple(requests))
            self.post.take_room()  # a slow CPU: wait before drawing more
            if all(job_id in cancelled or inbox.cancelled(job_id) for job_id in group.job_ids):
                self.post.give_back_room()
                for request in requests:
                    where = cancelled.get(request.job_id, (0, request.options.steps))
                    _answer(inbox, WorkCancelled(request.job_id, *where))
                continue
            try:
                drawn = self._draw(model, group, load_ms, inbox, cancelled)
            except BaseException:
                self.post.give_back_room()
                raise
            if drawn:
                finishing.append(self.post.submit(drawn, inbox))
            else:
                self.post.give_back_room()

    def _draw(
        self,
        model: LoadedModel,
        batch: WorkBatch,
        load_ms: float,
        inbox: Outbox,
        cancelled: dict[int, tuple[int, int]],
    ) -> list[DrawnJob]:
        """One pipeline call for ``batch``'s jobs (a group of the worker's batch); returns
        the jobs to post-process, having answered the cancelled and failed ones.

        Between denoising steps it reads the cancels the inbox got; the call stops early only
        when every job in it is cancelled, otherwise the cancelled ones are dropped at the end.
        """
        jobs = batch.job_ids
        steps = (0, batch.requests[0].options.steps)

        def on_step(step: int, total: int) -> None:
            nonlocal steps
            steps = (step, total)
            for job_id in jobs:
                if job_id not in cancelled and inbox.cancelled(job_id):
                    cancelled[job_id] = (step, total)
            if all(job_id in cancelled for job_id in jobs):
                raise _Cancelled
            for job_id in jobs:
                if job_id not in cancelled:
                    inbox.send(Progress(job_id, step, total))

        # 1. Diffusion, all jobs in one call.
        drawn_from = time.monotonic()
        started = time.perf_counter()
        try:
            drawn = model.runner.generate(batch.requests, on_step)
        except _Cancelled:
            drawn = None
        except Exception as error:  # report every job as failed; the worker stays up
            inbox.send(DeviceCall(model.name, drawn_from, time.monotonic()))  # it cost too
            log.exception("batch %s failed", jobs)
            for job_id in jobs:
                _answer(inbox, WorkFailed(job_id, failure(error)))
            return []
        drawing = Drawing(
            total_steps=steps[1],
            diffusion_ms=(time.perf_counter() - started) * 1000,
            model_load_ms=load_ms,
            drawn_from=drawn_from,
            drawn_until=time.monotonic(),
        )
        inbox.send(DeviceCall(model.name, drawn_from, drawing.drawn_until))  # before answers
        # 2. What post-processing needs of the model, read here (the next batch may switch
        # it), and the model's own checker, on the device; the rest goes to the pool.
        out: list[DrawnJob] = []
        for index, request in enumerate(batch.requests):
            if request.job_id in cancelled or drawn is None:
                _answer(inbox, WorkCancelled(request.job_id, *cancelled[request.job_id]))
                continue
            try:
                out.append(
                    drawn_job(
                        model,
                        request,
                        drawn[index].images,
                        drawn[index].notes,
                        drawing,
                        self.spec.min_output_side,
                    )
                )
            except Exception as error:
                log.exception("job %d failed", request.job_id)
                _answer(inbox, WorkFailed(request.job_id, failure(error)))
        return out


def _answer(inbox: Outbox, answer: WorkFailed | WorkCancelled) -> None:
    assert answer.job_id is not None
    inbox.send(answer)
    inbox.answered([answer.job_id])


def refused_pictures(request: WorkRequest) -> WorkFailed | None:
    """The failure of a request whose pictures do not fit its start (missing, not a PNG, not
    the job's size): it fails alone, before its batch is drawn."""
    try:
        request_pictures(request)
    except InvalidOption as error:
        log.warning("job %d refused: %s", request.job_id, error)
        return WorkFailed(request.job_id, failure(error))
    return None


def run_worker(conn: Connection, spec: WorkerSpec) -> None:
    """The process entry point (spawned): load, say ready, serve until told to stop."""
    # Ctrl-C in a terminal reaches the whole process group; the parent decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logs.configure(spec.log_level, spec.log_format)  # it holds no secrets to mask
    # On every line of this process (its inbox thread's too): the worker's name, or this pid.
    logs.bind(worker=spec.name or str(os.getpid()))
    # Before the libraries are imported (huggingface_hub reads it then): a progress bar on
    # stderr is no log line, and would break JSON lines (transformers' "Loading weights").
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    _adopt_library_logs()
    inbox = WorkerInbox(conn)
    try:
        worker = Worker(spec)
    except ModelLoadError as error:  # the operator's model: the parent says why, in one line
        log.debug("model load failed", exc_info=True)
        inbox.send(WorkFailed(None, f"could not start the worker: {error}"))
        return
    except Exception as error:  # anything else is a bug worth its traceback in the log
        log.exception("model load failed")
        inbox.send(WorkFailed(None, f"could not start the worker: {error}"))
        return
    inbox.send(worker.ready())
    inbox.start()
    log.info("ready ◆ %s on %s ◆ loaded in %.0f ms", spec.model, worker.device, worker.load_ms)
    try:
        while (batch := inbox.next_batch()) is not None:
            with logs.bound(job=_job_field(batch.job_ids)):
                log.debug("batch %s taken", batch.job_ids)
                worker.process(batch, inbox, wait=False)
    finally:
        worker.post.close()  # every drawn job gets its answer before the worker ends


def _job_field(job_ids: tuple[int, ...]) -> int | str:
    """The ``job`` log field of a batch: its one id, or its ids joined (``"12,13"``)."""
    return job_ids[0] if len(job_ids) == 1 else ",".join(map(str, job_ids))


def _adopt_library_logs() -> None:
    """diffusers and transformers log through stderr handlers of their own and stop there:
    plain lines in a JSON log, unmasked, without the job. Imported here (the model needs them
    anyway), before anything they log, theirs go through this process's handler instead."""
    import diffusers.utils.logging
    import transformers.utils.logging

    for library in (diffusers.utils.logging, transformers.utils.logging):
        library.disable_default_handler()
        library.enable_propagation()
