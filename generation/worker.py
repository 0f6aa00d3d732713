"""The worker process: keeps the models it is asked for loaded (within a memory budget, see
:mod:`generation.model_pool`), and turns requests into pictures ready to post.

Every image passes the safety checker and carries a verified watermark before it leaves here.
Under the image policy the request carries (fixed at admission) the worker decides each
picture's disposition, swaps withheld ones for their placeholder tiles and draws and marks the
grid, so that what it returns is ready to post: the bot only writes files and posts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from common.errors import SdbotError
from generation.errors import InvalidOption, ModelLoadError
from generation.images import (
    Marked,
    parameters_text,
    to_png,
    upscale_to_min_side,
)
from generation.pictures_in import request_pictures
from generation.posting import post_ready
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
    keeping_alive,
    watermark_id,
)
from moderation import watermark
from moderation.safety import OpenNSFWChecker, SafetyResult

if TYPE_CHECKING:
    from generation.model_pool import LoadedModel

log = logging.getLogger(__name__)

RGBArray = npt.NDArray[np.uint8]


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


class Worker:
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
        self.pool = ModelPool(catalog, self.device, self.dtype, budget)
        self.pool.get(catalog.default_model)  # the default model is loaded before any job
        self.checker = OpenNSFWChecker(threads=threads)
        self._safety_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="safety")
        self.load_ms = (time.perf_counter() - started) * 1000

    def ready(self) -> WorkerReady:
        import torch

        dtype = str(self.dtype).removeprefix("torch.")
        return WorkerReady(
            self.spec.model, self.device, dtype, self.load_ms, torch.get_num_threads()
        )

    def process(self, batch: WorkBatch, conn: Connection) -> None:
        """Runs a batch and sends one answer per job: its result, its failure or its cancel.

        The batch's model is loaded first if it is not (the switch's time goes with each
        result), with its LoRAs; a model or LoRA that cannot be used fails the batch's jobs
        and the worker serves the next. Requests whose prompts take different numbers of text
        encoder windows run in separate pipeline calls (padding would change their pixels).
        """
        refused = {r.job_id: failed for r in batch.requests if (failed := refused_pictures(r))}
        for failed in refused.values():
            conn.send(failed)
        requests = [request for request in batch.requests if request.job_id not in refused]
        if not requests:
            return
        first, jobs = requests[0].options, tuple(request.job_id for request in requests)
        try:
            with keeping_alive(conn.send, LoadingModel(jobs, first.model)):
                model, load_ms = self.pool.prepare(first.model, first.loras, first.control)
            groups: dict[int, list[WorkRequest]] = {}
            for request in requests:
                groups.setdefault(model.runner.window_count(request), []).append(request)
        except Exception as error:  # report every job as failed; the worker stays up
            if isinstance(error, SdbotError):  # an unknown model, a LoRA that does not fit
                log.warning("batch %s failed: %s", jobs, error)
            else:
                log.exception("batch %s failed", jobs)
            for job_id in jobs:
                conn.send(WorkFailed(job_id, failure(error)))
            return
        cancelled: dict[int, tuple[int, int]] = {}  # read by any group's steps
        for requests in groups.values():
            group = WorkBatch(tuple(requests))
            if all(job_id in cancelled for job_id in group.job_ids):
                for job_id in group.job_ids:
                    conn.send(WorkCancelled(job_id, *cancelled[job_id]))
                continue
            self._run(model, group, load_ms, conn, batch.job_ids, cancelled)

    def _run(
        self,
        model: LoadedModel,
        batch: WorkBatch,
        load_ms: float,
        conn: Connection,
        batch_jobs: tuple[int, ...],
        cancelled: dict[int, tuple[int, int]],
    ) -> None:
        """One pipeline call for ``batch``'s jobs (a group of the worker's batch, whose jobs
        are ``batch_jobs``), then each job's answer.

        Between denoising steps it reads the pipe for cancels; the call stops early only when
        every job in it is cancelled, otherwise the cancelled ones are dropped at the end.
        """
        jobs = batch.job_ids

        def on_step(step: int, total: int) -> None:
            while conn.poll():
                message = conn.recv()
                if isinstance(message, CancelJob) and message.job_id in batch_jobs:
                    cancelled.setdefault(message.job_id, (step, total))
            if all(job_id in cancelled for job_id in jobs):
                raise _Cancelled
            for job_id in jobs:
                if job_id not in cancelled:
                    conn.send(Progress(job_id, step, total))

        # 1. Diffusion, all jobs in one call.
        drawn_from = time.monotonic()
        started = time.perf_counter()
        try:
            drawn = model.runner.generate(batch.requests, on_step)
        except _Cancelled:
            drawn = None
        except Exception as error:  # report every job as failed; the worker stays up
            log.exception("batch %s failed", jobs)
            for job_id in jobs:
                conn.send(WorkFailed(job_id, failure(error)))
            return
        diffusion_ms = (time.perf_counter() - started) * 1000
        drawn_until = time.monotonic()
        for index, request in enumerate(batch.requests):
            if request.job_id in cancelled or drawn is None:
                step, total = cancelled[request.job_id]
                conn.send(WorkCancelled(request.job_id, step, total))
                continue
            try:
                result = self.finish(model, request, drawn[index].images, diffusion_ms)
                notes = drawn[index].notes
                conn.send(
                    dataclasses.replace(
                        result,
                        notes=notes,
                        model_load_ms=load_ms,
                        drawn_from=drawn_from,
                        drawn_until=drawn_until,
                    )
                )
            except Exception as error:
                log.exception("job %d failed", request.job_id)
                conn.send(WorkFailed(request.job_id, failure(error)))

    def finish(
        self,
        model: LoadedModel,
        request: WorkRequest,
        raw_images: list[RGBArray],
        diffusion_ms: float,
    ) -> WorkResult:
        """Upscale, safety check and watermark one job's images, then make them post-ready
        under the request's policy."""
        diffusion_done = time.perf_counter()
        options = request.options
        # 2. Upscale to what the watermark needs (an upscale job: twice that); the checker sees
        # the image that will be posted.
        min_side = self.spec.min_output_side * options.upscale
        images = [upscale_to_min_side(image, min_side) for image in raw_images]

        # 3. open_nsfw runs in a thread (onnxruntime leaves the GIL) while 4. marks and encodes
        # (with the A1111 parameters other tools read); the model's own checker, when it has
        # one, looks at the same final images.
        scores = self._safety_thread.submit(self.checker.scores, images)
        marked = [
            watermark.embed(image, watermark_id(request.job_id, index))
            for index, image in enumerate(images, start=1)
        ]
        sampler = model.runner.scheduler_name(options.scheduler)
        parameters = [
            parameters_text(
                options,
                seed,
                options.width,
                options.height,
                model.lora_hashes,
                model=model.name,
                sampler=sampler,
            )
            for seed in options.seeds
        ]
        pngs = [
            to_png(mark.rgb, text, request.job_id)
            for mark, text in zip(marked, parameters, strict=True)
        ]
        model_flags: list[bool | None] = (
            list(model.safety.flags(images)) if model.safety else [None] * len(images)
        )
        results = [
            SafetyResult(score, flagged)
            for score, flagged in zip(scores.result(), model_flags, strict=True)
        ]
        variants = [
            Marked(
                variant=index,
                seed=seed,
                png=png,
                rgb=mark.rgb,
                sha256=hashlib.sha256(png).hexdigest(),
                watermark_id=mark.watermark_id,
                watermark_verified=mark.verified,
                safety=result,
                parameters=text,
            )
            for index, (mark, png, seed, result, text) in enumerate(
                zip(marked, pngs, options.seeds, results, parameters, strict=True), start=1
            )
        ]
        # 5. Under the request's policy: dispositions, placeholders, the marked grid.
        with_grid = options.upscale == 1  # an upscale posts its one picture
        post = post_ready(request.job_id, variants, request.image_policy, with_grid=with_grid)
        finished = time.perf_counter()
        return WorkResult(
            job_id=request.job_id,
            post=post,
            diffusion_ms=diffusion_ms,
            postprocess_ms=(finished - diffusion_done) * 1000,
        )


def refused_pictures(request: WorkRequest) -> WorkFailed | None:
    """The failure of a request whose pictures do not fit its start (missing, not a PNG, not
    the job's size): it fails alone, before its batch is drawn."""
    try:
        request_pictures(request)
    except InvalidOption as error:
        log.warning("job %d refused: %s", request.job_id, error)
        return WorkFailed(request.job_id, failure(error))
    return None


def failure(error: Exception) -> str:
    """A job's failure as its member reads it: our own errors say what happened in words."""
    if isinstance(error, SdbotError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def run_worker(conn: Connection, spec: WorkerSpec) -> None:
    """The process entry point (spawned): load, say ready, serve until told to stop."""
    # Ctrl-C in a terminal reaches the whole process group; the parent decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=spec.log_level,
        format="%(asctime)s worker[%(process)d] %(levelname)s %(name)s: %(message)s",
    )
    try:
        worker = Worker(spec)
    except ModelLoadError as error:  # the operator's model: the parent says why, in one line
        log.debug("model load failed", exc_info=True)
        conn.send(WorkFailed(None, f"could not start the worker: {error}"))
        return
    except Exception as error:  # anything else is a bug worth its traceback in the log
        log.exception("model load failed")
        conn.send(WorkFailed(None, f"could not start the worker: {error}"))
        return
    conn.send(worker.ready())
    log.info("ready ◆ %s on %s ◆ loaded in %.0f ms", spec.model, worker.device, worker.load_ms)
    while True:
        try:
            message = conn.recv()
        except EOFError:
            break
        if message is None:
            break
        if isinstance(message, WorkBatch):
            worker.process(message, conn)
        # Anything else (a cancel that came after its job finished) needs no answer.
