"""A drawn job's way to post-ready pictures, off the device's path.

The main thread of the worker draws; what follows (upscale to the watermark's size, open_nsfw,
two watermark layers embedded and read back, PNG with its parameters, the grid) runs on a small
thread pool while the device draws the next batch. The model's own safety checker is torch on
the device, so the main thread runs it before it hands the pictures over (:func:`drawn_job`).
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from common import logs
from common.errors import SdbotError
from generation.images import Marked, parameters_text, to_png, upscale_to_min_side
from generation.posting import post_ready
from generation.protocol import WorkCancelled, WorkFailed, WorkRequest, WorkResult, watermark_id
from moderation import watermark
from moderation.safety import OpenNSFWChecker, SafetyResult

if TYPE_CHECKING:
    from generation.model_pool import LoadedModel
    from generation.worker_inbox import Outbox

log = logging.getLogger(__name__)

RGBArray = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Drawing:
    """When and how one pipeline call drew its jobs."""

    total_steps: int
    diffusion_ms: float
    model_load_ms: float
    drawn_from: float  # time.monotonic()
    drawn_until: float


@dataclass(frozen=True)
class DrawnJob:
    """One job's drawn pictures and all its post-processing needs of the model that drew them,
    read on the main thread (the next batch may switch models while these are finished)."""

    request: WorkRequest
    images: list[RGBArray]
    model_flags: list[bool | None]  # the model's own checker on ``images`` (None: it has none)
    model_name: str
    sampler: str
    lora_hashes: dict[str, str]
    notes: tuple[str, ...]
    drawing: Drawing
    model_check_ms: float = 0.0  # the model's own checker on ``images``, on the main thread


def drawn_job(
    model: LoadedModel,
    request: WorkRequest,
    raw_images: list[RGBArray],
    notes: tuple[str, ...],
    drawing: Drawing,
    min_output_side: int,
) -> DrawnJob:
    """One job as the pool takes it. With a checker of its own, the model looks at the
    pictures here, on the main thread (it is torch, on the device), upscaled to what will be
    posted (the watermark's size; an upscale job: twice that); without one the upscale waits
    for the pool: it is CPU work the device need not wait for."""
    options = request.options
    images = raw_images
    flags: list[bool | None] = [None] * len(raw_images)
    check_ms = 0.0
    if model.safety is not None:
        min_side = min_output_side * options.upscale
        images = [upscale_to_min_side(image, min_side) for image in raw_images]
        checked = time.perf_counter()
        flags = list(model.safety.flags(images))
        check_ms = (time.perf_counter() - checked) * 1000
    return DrawnJob(
        request=request,
        images=images,
        model_flags=flags,
        model_name=model.name,
        sampler=model.runner.scheduler_name(options.scheduler),
        lora_hashes=dict(model.lora_hashes),
        notes=notes,
        drawing=drawing,
        model_check_ms=check_ms,
    )


class PostProcessor:
    """The pool that finishes drawn jobs and sends their answers, with a bounded backlog."""

    def __init__(
        self, checker: OpenNSFWChecker, *, min_output_side: int, threads: int, backlog: int
    ) -> None:
        self.checker = checker
        self.min_output_side = min_output_side
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="postprocess")
        # With cores to spare (more than one post-processing thread), open_nsfw runs beside the
        # watermark of the same job (onnxruntime leaves the GIL). With one, it runs in turn:
        # post-processing then never takes more than one core from the device. On 2 cores, in
        # parallel it slowed the drawing ~10 % (sdbot bench throughput: path 0.88x raw; in
        # turn 0.97-1.02x).
        self._safety = (
            ThreadPoolExecutor(threads, thread_name_prefix="safety") if threads > 1 else None
        )
        self._room = threading.BoundedSemaphore(backlog)

    def take_room(self) -> None:
        """Called before a pipeline call: waits while ``backlog`` drawn batches (this one
        included) are not post-ready yet. Each :meth:`take_room` is matched by one
        :meth:`submit` or one :meth:`give_back_room`."""
        self._room.acquire()

    def give_back_room(self) -> None:
        self._room.release()

    def submit(self, jobs: Sequence[DrawnJob], outbox: Outbox) -> Future[None]:
        """Finishes the jobs of one pipeline call on the pool, sends each answer to ``outbox``
        and gives back the room its :meth:`take_room` took."""
        context = contextvars.copy_context()  # the worker's log fields, in the pool's thread
        return self._pool.submit(context.run, self._finish_all, list(jobs), outbox)

    def close(self) -> None:
        """Waits for every submitted job's answer."""
        self._pool.shutdown(wait=True)
        if self._safety is not None:
            self._safety.shutdown(wait=True)

    def _finish_all(self, jobs: list[DrawnJob], outbox: Outbox) -> None:
        try:
            for job in jobs:
                job_id = job.request.job_id
                with logs.bound(job=job_id):
                    try:
                        outbox.send(self._answer(job, outbox))
                    except Exception as error:  # an answer that cannot be sent fails alone
                        log.exception("job %d: its answer could not be sent", job_id)
                        outbox.send(WorkFailed(job_id, failure(error)))
                    finally:
                        outbox.answered([job_id])
        finally:
            self._room.release()

    def _answer(self, job: DrawnJob, outbox: Outbox) -> WorkResult | WorkFailed | WorkCancelled:
        job_id, total = job.request.job_id, job.drawing.total_steps
        cancelled = WorkCancelled(job_id, total, total)
        if outbox.cancelled(job_id):  # drawn, but its member asked for nothing more
            return cancelled
        try:
            result = finish(job, self.checker, self._safety, self.min_output_side)
        except Exception as error:  # this job fails; the worker and the other jobs go on
            log.exception("job %d failed", job_id)
            return WorkFailed(job_id, failure(error))
        return cancelled if outbox.cancelled(job_id) else result


def finish(
    job: DrawnJob,
    checker: OpenNSFWChecker,
    beside: ThreadPoolExecutor | None,
    min_output_side: int,
) -> WorkResult:
    """Safety check and watermark one job's images, then make them post-ready under the
    request's policy (``beside``, when given, runs the open_nsfw scores while the watermark is
    made; without it they run first, in this thread)."""
    started = time.perf_counter()
    request, options = job.request, job.request.options
    # 2. Upscale to what the watermark needs (done already when the model's checker ran);
    # the checker sees the image that will be posted.
    min_side = min_output_side * options.upscale
    images = [upscale_to_min_side(image, min_side) for image in job.images]

    # 3. open_nsfw runs in a thread while 4. marks and encodes (with the A1111 parameters
    # other tools read); the model's own checker looked at the same final images.
    scores: Future[tuple[list[float], float]] = Future()
    if beside is None:
        scores.set_result(_timed_scores(checker, images))
    else:
        scores = beside.submit(_timed_scores, checker, images)
    marking = time.perf_counter()
    marked = [
        watermark.embed(image, watermark_id(request.job_id, index))
        for index, image in enumerate(images, start=1)
    ]
    watermark_ms = (time.perf_counter() - marking) * 1000
    parameters = [
        parameters_text(
            options,
            seed,
            options.width,
            options.height,
            job.lora_hashes,
            model=job.model_name,
            sampler=job.sampler,
        )
        for seed in options.seeds
    ]
    pngs = [
        to_png(mark.rgb, text, request.job_id)
        for mark, text in zip(marked, parameters, strict=True)
    ]
    nsfw_scores, nsfw_ms = scores.result()
    results = [
        SafetyResult(score, flagged)
        for score, flagged in zip(nsfw_scores, job.model_flags, strict=True)
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
    return WorkResult(
        job_id=request.job_id,
        post=post,
        diffusion_ms=job.drawing.diffusion_ms,
        postprocess_ms=(time.perf_counter() - started) * 1000,
        notes=job.notes,
        model_load_ms=job.drawing.model_load_ms,
        safety_ms=job.model_check_ms + nsfw_ms,
        watermark_ms=watermark_ms,
        drawn_from=job.drawing.drawn_from,
        drawn_until=job.drawing.drawn_until,
        finished_at=time.monotonic(),
    )


def _timed_scores(checker: OpenNSFWChecker, images: list[RGBArray]) -> tuple[list[float], float]:
    """open_nsfw's scores and the milliseconds they took (timed where they run: beside the
    watermark, on another thread, or in turn)."""
    started = time.perf_counter()
    scores = checker.scores(images)
    return scores, (time.perf_counter() - started) * 1000


def failure(error: Exception) -> str:
    """A job's failure as its member reads it: our own errors say what happened in words."""
    if isinstance(error, SdbotError):
        return str(error)
    return f"{type(error).__name__}: {error}"
