"""What comes out of the imagine path: a submitted job, the pictures as they may be shown, and
the outcome of a request (refused, blocked or ended with its pictures)."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from generation.options import LoraChoice
from generation.queue import JobHandle, Queued, QueuedJob
from moderation.policy import Disposition
from moderation.prompts import PromptVerdict
from storage.models import JobStatus
from storage.records import InputRecord, JobRecord


class Refusal(enum.StrEnum):
    """Why a request was refused before it was queued (it is recorded all the same)."""

    RATE = "rate"  # a rate limit, a member's cap or the queue bound
    BANNED = "banned"  # the member is banned from the bot in this guild
    PAUSED = "paused"  # the guild's moderators paused generation
    CHANNEL = "channel"  # the bot does not answer in this channel
    DIRECT = "direct"  # a direct message, where no guild's rules apply (unless allowed)
    MODEL = "model"  # a model or LoRA this server (or, NSFW-only, this channel) does not allow
    INPUT = "input"  # a picture given in was flagged by the NSFW check where it may not be shown


@dataclass(frozen=True)
class ShownImage:
    """An image as it leaves the system: withheld ones keep their record but not their pixels."""

    variant: int
    seed: int
    png: bytes | None
    sha256: str
    watermark_id: int
    watermark_verified: bool
    safety_score: float
    safety_verdict: str
    width: int
    height: int
    disposition: Disposition = Disposition.SHOWN
    reason: str = ""  # why it is withheld or spoilered
    safety_threshold: float | None = None
    model_flagged: bool | None = None
    path: Path | None = None

    @property
    def withheld(self) -> bool:
        return self.disposition is Disposition.WITHHELD

    @property
    def spoiler(self) -> bool:
        return self.disposition is Disposition.SPOILER


@dataclass(frozen=True)
class ImagineOutcome:
    job_id: int
    status: JobStatus
    verdict: PromptVerdict
    prompt: str
    seeds: tuple[int, ...] = ()
    images: tuple[ShownImage, ...] = ()
    grid: ShownImage | None = None
    error: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    retry_after: float | None = None  # refused: seconds until the same request would pass
    refusal: Refusal | None = None  # refused: by what
    model: str = ""  # the catalog's name of the model it was drawn with ("": the default)
    loras: tuple[LoraChoice, ...] = ()  # with their weights, in the order asked
    embeddings: tuple[str, ...] = ()  # the embedding tokens its prompts used
    notes: tuple[str, ...] = ()  # what the worker says about the drawing ("prompt cut …")
    # The pictures it was given, as recorded: each one's hash, NSFW score and, for a picture
    # sdbot made, the job that made it (``parent_job_id``). Succeeded jobs only.
    inputs: tuple[InputRecord, ...] = ()


@dataclass(frozen=True)
class Submitted:
    """A request recorded and queued: follow it with :meth:`ImagineService.follow_submitted`.

    Its request (``job.request.image_policy``) carries the image policy fixed at admission (the
    guild's threshold and NSFW policy, the channel, force-safe): the worker decides its
    pictures under it, however the settings change while it waits.
    """

    job: QueuedJob
    handle: JobHandle
    verdict: PromptVerdict
    started: float


@dataclass(frozen=True)
class AlreadyStarted:
    """The control was used before: ``job`` is what it started (None: being started now)."""

    job: JobRecord | None


QueuedCallback = Callable[[Queued], Awaitable[None] | None]
OutcomeCallback = Callable[[ImagineOutcome], Awaitable[None] | None]
