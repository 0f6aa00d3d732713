"""Messages between the supervisor and the worker process (pickled over a pipe), and the one
helper their listeners share (:func:`notify`), light enough for the bot process to import."""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from generation.catalog import Catalog
from generation.fast_path import FastPath
from generation.options import GenerationOptions
from moderation.policy import Disposition, ImageDecision, ImagePolicy
from moderation.safety import SafetyResult

T = TypeVar("T")


async def notify(callback: Callable[[T], Awaitable[None] | None] | None, value: T) -> None:
    """Calls a callback that may be plain or async (or absent)."""
    if callback is not None:
        outcome = callback(value)
        if outcome is not None:
            await outcome


@dataclass(frozen=True)
class WorkerSpec:
    """How to start a worker: everything it needs, since it shares nothing with its parent.

    ``catalog`` is the operator's models, LoRAs and embeddings (None: the one ``model``, with
    the LoRA and embedding folders' defaults). ``memory_gb`` is what the loaded models may
    take together (0: 80 % of the GPU's memory, or half the RAM on a CPU).
    """

    model: str
    device: str = "auto"
    dtype: str = "auto"
    min_output_side: int = 256
    torch_threads: int | None = None
    log_level: str = "WARNING"
    log_format: str = "text"  # or "json" (SDBOT_LOG_FORMAT): the worker logs as its parent does
    name: str | None = None  # the worker's name on its log lines (None: its pid)
    catalog: Catalog | None = None
    memory_gb: float = 0
    fast: FastPath = field(default_factory=FastPath)
    # Post-processing (upscale, open_nsfw, watermark, PNG, grid) runs on this many threads
    # beside the device (None: 1, or 2 with more than 4 cores), and at most
    # ``postprocess_backlog`` drawn batches wait for it before the device stops drawing (a
    # slow CPU must not pile pictures up in memory).
    postprocess_threads: int | None = None
    postprocess_backlog: int = 2

    def __post_init__(self) -> None:
        if self.postprocess_threads is not None and self.postprocess_threads < 1:
            raise ValueError(
                f"postprocess_threads must be at least 1, got {self.postprocess_threads}"
            )
        if self.postprocess_backlog < 1:
            raise ValueError(
                f"postprocess_backlog must be at least 1, got {self.postprocess_backlog}"
            )


@dataclass(frozen=True)
class InputImages:
    """The pictures a job starts from, prepared by the bot at admission (checked, moderated,
    oriented, flattened and fitted to the job's width × height), as PNG bytes.

    ``image``: RGB, the start of an img2img or the picture an inpaint redraws; ``mask``: L,
    white where it is redrawn; ``control``: RGB, the ControlNet's picture (canny: white edges
    on black). A vary or zoom has none: its picture is drawn from ``options.source``.
    """

    image: bytes | None = None
    mask: bytes | None = None
    control: bytes | None = None


@dataclass(frozen=True)
class WorkRequest:
    """One job for the worker.

    ``image_policy`` is what the bot fixed at admission for this guild and channel (thresholds,
    the guild's NSFW policy, whether the channel is NSFW, force-safe): the worker decides each
    picture under it and returns them ready to post (``WorkResult.post``). ``inputs`` are the
    pictures it starts from (None: from noise, or from ``options.source``).
    """

    job_id: int
    options: GenerationOptions
    image_policy: ImagePolicy
    inputs: InputImages | None = None

    @property
    def batch_key(self) -> tuple[object, ...]:
        """Jobs with equal keys can run in one pipeline call: one model and one list of LoRAs
        with their weights (in their order: the sum of their changes is rounded in it), one way
        to start (their pictures may differ, their strength and control may not)."""
        o = self.options
        return (
            o.width,
            o.height,
            o.steps,
            o.guidance_scale,
            o.scheduler,
            o.upscale,
            o.model,
            o.loras,
            o.start,
            o.strength,
            None if o.source is None else o.source.upscale,
            o.control,
            o.control_scale,
        )


@dataclass(frozen=True)
class WorkBatch:
    """Requests that share a batch key, run in one pipeline call; each gets its own answer.
    ``cancelled``: its jobs cancelled before it was sent (answered without being drawn)."""

    requests: tuple[WorkRequest, ...]
    cancelled: tuple[int, ...] = ()

    @property
    def job_ids(self) -> tuple[int, ...]:
        return tuple(request.job_id for request in self.requests)


@dataclass(frozen=True)
class ReadyImage:
    """One picture as it may leave the system, decided under the request's image policy.

    ``png`` is what may be shown: the marked picture, or for a withheld one the grey placeholder
    tile that says why; a withheld picture's pixels never leave the worker. ``sha256``, the size
    and the watermark are the marked picture's even when it is withheld: the audit record keeps
    them. For the grid (variant 0), ``safety`` and ``decision`` sum up the tiles that are shown.
    """

    variant: int  # 1.. for a variant, 0 for the grid
    seed: int
    png: bytes
    sha256: str
    width: int
    height: int
    watermark_id: int
    watermark_verified: bool
    safety: SafetyResult
    decision: ImageDecision

    @property
    def disposition(self) -> Disposition:
        return self.decision.disposition

    @property
    def withheld(self) -> bool:
        return self.decision.disposition is Disposition.WITHHELD

    @property
    def spoiler(self) -> bool:
        return self.decision.disposition is Disposition.SPOILER


@dataclass(frozen=True)
class PostReady:
    """What the bot posts and records for a job: each variant's disposition and picture, and the
    numbered grid, drawn and watermarked (None for an upscale: its one picture is posted)."""

    images: tuple[ReadyImage, ...]
    grid: ReadyImage | None


@dataclass(frozen=True)
class WorkResult:
    """A finished job: its pictures as they may be posted, and where the time went.

    ``notes`` say what the member should know about how it was drawn (a prompt cut at the
    text encoder's limit); ``model_load_ms`` is the model switch its batch waited for (0: the
    model was loaded already).
    """

    job_id: int
    post: PostReady
    diffusion_ms: float
    postprocess_ms: float
    notes: tuple[str, ...] = ()
    model_load_ms: float = 0.0
    # Parts of ``postprocess_ms``, summed over the job's pictures: the NSFW check and the
    # watermark (embedded and read back).
    safety_ms: float = 0.0
    watermark_ms: float = 0.0
    # When its batch's pipeline call ran, on ``time.monotonic()`` (one clock for every process
    # of a machine): the device's busy intervals, which ``sdbot bench throughput`` adds up.
    drawn_from: float = 0.0
    drawn_until: float = 0.0
    finished_at: float = 0.0  # when its pictures were post-ready, on the same clock


@dataclass(frozen=True)
class Drawn:
    """Worker → supervisor: the device has drawn these jobs (of one batch) and is free for the
    next batch; their answers follow once post-processed."""

    job_ids: tuple[int, ...]


@dataclass(frozen=True)
class DeviceCall:
    """Worker → supervisor, once per pipeline call as it returns, before any answer of its
    jobs: ``model`` (the catalog's name) held the device from ``drawn_from`` to
    ``drawn_until`` (``time.monotonic()``). Sent whether the call drew, was cancelled or
    failed: the device's time is spent either way, and the cost per image counts all of it."""

    model: str
    drawn_from: float
    drawn_until: float


@dataclass(frozen=True)
class ModelLoaded:
    """Worker → supervisor, once per load a batch waited for (a model switch, its LoRAs or
    ControlNet): what the ``model_load`` stage counts. Each job's ``WorkResult.model_load_ms``
    still says what it waited for; counting those would count one load once per job."""

    model: str
    load_ms: float


@dataclass(frozen=True)
class Progress:
    job_id: int
    step: int
    total: int


@dataclass(frozen=True)
class WorkFailed:
    job_id: int | None
    error: str


@dataclass(frozen=True)
class CancelJob:
    """Supervisor → worker, while a job is in the worker: stop it at the next denoising step
    (waiting to be drawn: it is never drawn; drawn, not yet post-processed: it is dropped)."""

    job_id: int


@dataclass(frozen=True)
class WorkCancelled:
    """Worker → supervisor: the job stopped at ``step`` of ``total``; nothing was made."""

    job_id: int
    step: int
    total: int


@dataclass(frozen=True)
class LoadingModel:
    """Worker → supervisor, every KEEP_ALIVE_S while a batch waits for its model to load: the
    worker is busy, not stalled (an SDXL single file took 6 minutes to load on a CPU, past the
    stall timeout), for at most LOADING_LIMIT_S; after that the stall timeout holds again."""

    job_ids: tuple[int, ...]
    model: str


KEEP_ALIVE_S = 10.0
LOADING_LIMIT_S = 1800.0  # half an hour of loading is a hang (a dead network drive)


@contextmanager
def keeping_alive(
    send: Callable[[object], None], message: object, every: float | None = None
) -> Iterator[None]:
    """Sends ``message`` every ``every`` seconds from a thread while the block runs (for at
    most LOADING_LIMIT_S); the thread is stopped and joined before the block's caller sends
    anything again (a pipe takes one sender at a time)."""
    stop = threading.Event()
    interval = KEEP_ALIVE_S if every is None else every

    def beat() -> None:
        deadline = time.monotonic() + LOADING_LIMIT_S
        while not stop.wait(interval) and time.monotonic() < deadline:
            send(message)

    thread = threading.Thread(target=beat, name="keep-alive", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@dataclass(frozen=True)
class WorkerReady:
    model: str
    device: str
    dtype: str
    load_ms: float
    cpu_threads: int = 0  # torch's intra-op threads in the worker
    fast_path: tuple[str, ...] = ()  # the switches applied to the default model


def watermark_id(job_id: int, variant: int) -> int:
    """Images of one job share its id in the high bits; variant 0 is the grid."""
    if not 0 <= variant < 16:
        raise ValueError(f"variant must be in 0..15, got {variant}")
    return job_id * 16 + variant


def split_watermark_id(value: int) -> tuple[int, int]:
    return divmod(value, 16)
