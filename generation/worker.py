"""The worker process: loads the model once, then turns requests into pictures ready to post.

Every image passes the safety checker and carries a verified watermark before it leaves here.
Under the image policy the request carries (fixed at admission) the worker decides each
picture's disposition, swaps withheld ones for their placeholder tiles and draws and marks the
grid, so that what it returns is ready to post: the bot only writes files and posts.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection

import numpy as np
import numpy.typing as npt

from generation.errors import ModelLoadError
from generation.images import make_grid, to_png, upscale_to_min_side, withheld_tile
from generation.protocol import (
    CancelJob,
    PostReady,
    Progress,
    ReadyImage,
    WorkBatch,
    WorkCancelled,
    WorkerReady,
    WorkerSpec,
    WorkFailed,
    WorkRequest,
    WorkResult,
    watermark_id,
)
from moderation import watermark
from moderation.policy import ImagePolicy, decide, decide_grid
from moderation.safety import OpenNSFWChecker, SafetyResult

log = logging.getLogger(__name__)

RGBArray = npt.NDArray[np.uint8]


class _Cancelled(Exception):
    """Raised from the step callback to stop a batch whose jobs were all cancelled."""


@dataclass(frozen=True)
class Marked:
    """One variant, checked, marked and encoded: what the policy decides on. Its pixels stay
    in this process (the grid is drawn from them); only :class:`ReadyImage` leaves."""

    variant: int
    seed: int
    png: bytes
    rgb: RGBArray
    sha256: str
    watermark_id: int
    watermark_verified: bool
    safety: SafetyResult

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])


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

        from generation.models import resolve_model
        from generation.pipeline import (
            ModelSafetyChecker,
            PipelineRunner,
            load_pipeline,
            resolve_device,
            resolve_dtype,
        )

        started = time.perf_counter()
        self.spec = spec
        self.device = resolve_device(spec.device)
        threads = cpu_threads(spec.torch_threads, usable_cores())
        if spec.torch_threads is not None or self.device == "cpu":  # a GPU: torch's own choice
            torch.set_num_threads(threads)
        self.dtype = resolve_dtype(spec.dtype, self.device)
        pipe = load_pipeline(resolve_model(spec.model), self.device, self.dtype)
        self.model_checker = ModelSafetyChecker.detach_from(pipe, self.device, self.dtype)
        self.runner = PipelineRunner(pipe)
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

        Between denoising steps it reads the pipe for cancels; the batch stops early only when
        every job in it is cancelled, otherwise the cancelled ones are dropped at the end.
        """
        jobs = batch.job_ids
        cancelled: dict[int, tuple[int, int]] = {}

        def on_step(step: int, total: int) -> None:
            while conn.poll():
                message = conn.recv()
                if isinstance(message, CancelJob) and message.job_id in jobs:
                    cancelled.setdefault(message.job_id, (step, total))
            if len(cancelled) == len(jobs):
                raise _Cancelled
            for job_id in jobs:
                if job_id not in cancelled:
                    conn.send(Progress(job_id, step, total))

        # 1. Diffusion, all jobs in one call.
        started = time.perf_counter()
        try:
            raw_batches = self.runner.generate(batch.requests, on_step)
        except _Cancelled:
            raw_batches = None
        except Exception as error:  # report every job as failed; the worker stays up
            log.exception("batch %s failed", jobs)
            for job_id in jobs:
                conn.send(WorkFailed(job_id, f"{type(error).__name__}: {error}"))
            return
        diffusion_ms = (time.perf_counter() - started) * 1000
        for index, request in enumerate(batch.requests):
            if request.job_id in cancelled or raw_batches is None:
                step, total = cancelled[request.job_id]
                conn.send(WorkCancelled(request.job_id, step, total))
                continue
            try:
                conn.send(self.finish(request, raw_batches[index], diffusion_ms))
            except Exception as error:
                log.exception("job %d failed", request.job_id)
                conn.send(WorkFailed(request.job_id, f"{type(error).__name__}: {error}"))

    def finish(
        self, request: WorkRequest, raw_images: list[RGBArray], diffusion_ms: float
    ) -> WorkResult:
        """Upscale, safety check and watermark one job's images, then make them post-ready
        under the request's policy."""
        diffusion_done = time.perf_counter()
        # 2. Upscale to what the watermark needs (an upscale job: twice that); the checker sees
        # the image that will be posted.
        min_side = self.spec.min_output_side * request.options.upscale
        images = [upscale_to_min_side(image, min_side) for image in raw_images]

        # 3. open_nsfw runs in a thread (onnxruntime leaves the GIL) while 4. marks and encodes;
        # the model's own checker, when it has one, looks at the same final images.
        scores = self._safety_thread.submit(self.checker.scores, images)
        marked = [
            watermark.embed(image, watermark_id(request.job_id, index))
            for index, image in enumerate(images, start=1)
        ]
        pngs = [to_png(image.rgb) for image in marked]
        model_flags: list[bool | None] = (
            list(self.model_checker.flags(images)) if self.model_checker else [None] * len(images)
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
            )
            for index, (mark, png, seed, result) in enumerate(
                zip(marked, pngs, request.options.seeds, results, strict=True), start=1
            )
        ]
        # 5. Under the request's policy: dispositions, placeholders, the marked grid.
        with_grid = request.options.upscale == 1  # an upscale posts its one picture
        post = post_ready(request.job_id, variants, request.image_policy, with_grid=with_grid)
        finished = time.perf_counter()
        return WorkResult(
            job_id=request.job_id,
            post=post,
            diffusion_ms=diffusion_ms,
            postprocess_ms=(finished - diffusion_done) * 1000,
        )


def post_ready(
    job_id: int, variants: Sequence[Marked], policy: ImagePolicy, *, with_grid: bool
) -> PostReady:
    """A job's checked, marked variants as they may be posted under ``policy``.

    A withheld variant comes back as its placeholder tile, never as its pixels; it keeps its
    record's facts (hash, size, watermark, scores). The grid (``with_grid``) numbers the tiles,
    withheld ones as their placeholders, and carries its own watermark, the job's id with
    variant 0, which ``sdbot trace`` reads back to the job as it does a variant's.
    """
    ready: list[ReadyImage] = []
    tiles: list[RGBArray] = []
    for variant in variants:
        decision = decide(variant.safety, policy)
        if decision.withheld:
            tile = withheld_tile(variant.width, variant.height, variant.variant, decision.reason)
            tiles.append(tile)
            png = to_png(tile)
        else:
            tiles.append(variant.rgb)
            png = variant.png
        ready.append(
            ReadyImage(
                variant=variant.variant,
                seed=variant.seed,
                png=png,
                sha256=variant.sha256,
                width=variant.width,
                height=variant.height,
                watermark_id=variant.watermark_id,
                watermark_verified=variant.watermark_verified,
                safety=variant.safety,
                decision=decision,
            )
        )
    if not with_grid or not ready:
        return PostReady(tuple(ready), None)
    marked = watermark.embed(make_grid(tiles), watermark_id(job_id, 0))
    grid_png = to_png(marked.rgb)
    safety, decision = decide_grid([(image.safety, image.decision) for image in ready], policy)
    grid = ReadyImage(
        variant=0,
        seed=ready[0].seed,
        png=grid_png,
        sha256=hashlib.sha256(grid_png).hexdigest(),
        width=marked.rgb.shape[1],
        height=marked.rgb.shape[0],
        watermark_id=marked.watermark_id,
        watermark_verified=marked.verified,
        safety=safety,
        decision=decision,
    )
    return PostReady(tuple(ready), grid)


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
