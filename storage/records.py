"""The plain values the job repositories take and return, and the one place rows become them.

A record's field has the name of its column, so rows and records convert field by field; only
the values a column keeps in another shape (an enum as text, a tuple as a JSON list) are named.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any

from storage.models import Image, Job, JobInput, JobKind, JobStatus, Verdict, new_uid

INPUT_ROLES = ("image", "mask", "control")  # a job_inputs row's role


@dataclass(frozen=True)
class NewJob:
    source: str
    prompt: str
    negative_prompt: str
    steps: int
    guidance_scale: float
    width: int
    height: int
    variants: int
    scheduler: str
    model: str
    seeds: Sequence[int]
    verdict: Verdict
    verdict_reasons: Sequence[str] = ()
    kind: JobKind = JobKind.IMAGINE
    guild_id: int | None = None
    channel_id: int | None = None
    user_id: int | None = None
    parent_job_id: int | None = None
    parent_variant: int | None = None
    channel_nsfw: bool = False
    uid: str = field(default_factory=new_uid)  # the identity the queue and Redis carry
    loras: Sequence[str] = ()  # "name:weight", as the request's options name them
    embeddings: Sequence[str] = ()  # the embedding tokens its prompts used
    start: str = "text"  # how it starts: text, image, inpaint, outpaint (options' STARTS)
    strength: float | None = None  # image, inpaint, outpaint: the share redrawn
    source_seed: int | None = None  # a vary or zoom: the parent's picture, drawn from this seed
    source_upscale: int | None = None  # … enlarged this many times (a zoom: its upscale's 2)
    control: str | None = None  # a ControlNet kind (canny)
    control_scale: float | None = None
    classifier_scores: Mapping[str, float] | None = None  # by label; None: no classifier read

    def columns(self) -> dict[str, Any]:
        """The values of a new ``Job`` row."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(
            kind=self.kind.value,
            verdict=self.verdict.value,
            seeds=list(self.seeds),
            verdict_reasons=list(self.verdict_reasons),
            loras=[str(lora) for lora in self.loras],
            embeddings=[str(token) for token in self.embeddings],
            classifier_scores=None
            if self.classifier_scores is None
            else {str(label): float(score) for label, score in self.classifier_scores.items()},
        )
        return values


@dataclass(frozen=True)
class NewInput:
    """A picture a member gave a job (a row of ``job_inputs``): what the audit log keeps of it,
    and ``png``, the picture as prepared for the worker (fitted to the job's size; for a
    control, the edges), which a job queued again is sent with.

    ``role`` is image, mask or control. ``sha256``, ``format``, ``size_bytes``, ``width`` and
    ``height`` are the file's as given. ``nsfw_score`` is open_nsfw's on it (None for a mask);
    ``watermark_id`` the sdbot watermark read from it and ``parent_job_id`` the job that made
    it, when it is one of ours.
    """

    role: str
    sha256: str
    format: str
    size_bytes: int
    width: int
    height: int
    png: bytes | None  # None: not kept (a picture only read, as /describe's)
    nsfw_score: float | None = None
    watermark_id: int | None = None
    parent_job_id: int | None = None

    def row(self, job_id: int, created_at: datetime) -> JobInput:
        """The ``JobInput`` row of this picture of job ``job_id``."""
        if self.role not in INPUT_ROLES:  # a bug in the caller, not something to tell a user
            raise ValueError(f"input role {self.role!r} is not one of {', '.join(INPUT_ROLES)}")
        values = {f.name: getattr(self, f.name) for f in fields(NewInput)}
        return JobInput(job_id=job_id, created_at=created_at, **values)


@dataclass(frozen=True)
class InputPngs:
    """The pictures a job was given, as prepared for the worker (PNG bytes), by role: what
    ``generation.protocol.InputImages`` carries (storage does not import generation; the bot
    converts by field name). None: not given, or dropped since."""

    image: bytes | None = None
    mask: bytes | None = None
    control: bytes | None = None

    @classmethod
    def of(cls, by_role: dict[str, bytes | None]) -> InputPngs:
        return cls(**{role: by_role.get(role) for role in INPUT_ROLES})


@dataclass(frozen=True)
class InputRecord:
    """A picture given in, as the audit log shows it (without its pixels)."""

    role: str
    sha256: str
    format: str
    size_bytes: int
    width: int
    height: int
    nsfw_score: float | None
    watermark_id: int | None
    parent_job_id: int | None
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class Lease:
    """Who follows an open job (``host:pid:random``) and for how long without renewing."""

    owner: str
    seconds: float


@dataclass(frozen=True)
class NewImage:
    variant: int
    seed: int
    sha256: str
    watermark_id: int
    watermark_verified: bool
    safety_score: float
    safety_verdict: str
    width: int
    height: int
    path: str | None = None
    safety_threshold: float | None = None
    model_flagged: bool | None = None
    disposition: str = "shown"

    def row(self, job_id: int) -> Image:
        """The ``Image`` row of this image of job ``job_id``."""
        return Image(job_id=job_id, **{f.name: getattr(self, f.name) for f in fields(NewImage)})


@dataclass(frozen=True)
class ImageRecord(NewImage):
    id: int = 0
    job_id: int = 0
    created_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values (datetimes as ISO strings)."""
        return {name: _plain(value) for name, value in asdict(self).items()}


@dataclass(frozen=True)
class JobRecord:
    id: int
    kind: str
    source: str
    status: JobStatus
    prompt: str
    negative_prompt: str
    steps: int
    guidance_scale: float
    width: int
    height: int
    variants: int
    scheduler: str
    model: str
    seeds: tuple[int, ...]
    verdict: str
    verdict_reasons: tuple[str, ...]
    guild_id: int | None
    channel_id: int | None
    user_id: int | None
    parent_job_id: int | None
    parent_variant: int | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    queue_ms: float | None
    generation_ms: float | None
    total_ms: float | None
    attempts: int = 0
    channel_nsfw: bool = False
    images: tuple[ImageRecord, ...] = field(default=())
    uid: str = ""
    loras: tuple[str, ...] = ()  # "name:weight"
    embeddings: tuple[str, ...] = ()  # tokens
    start: str = "text"
    strength: float | None = None
    source_seed: int | None = None
    source_upscale: int | None = None
    control: str | None = None
    control_scale: float | None = None
    classifier_scores: dict[str, float] | None = None  # the prompt classifier's, by label
    inputs: tuple[InputRecord, ...] = field(default=())  # the pictures given in
    purged_at: datetime | None = None  # prompts and pictures purged (the rest is kept)
    purge_reason: str | None = None  # storage.models.PurgeReason: retention, forget
    lease_owner: str | None = None  # operational, not part of the audit record's dict
    lease_expires_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values (datetimes as ISO strings), without the lease."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name.startswith("lease_"):
                continue
            value = getattr(self, f.name)
            if f.name in ("images", "inputs"):
                out[f.name] = [item.to_dict() for item in value]
            elif isinstance(value, tuple):
                out[f.name] = list(value)
            else:
                out[f.name] = _plain(value)
        out["status"] = self.status.value
        return out


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def image_record(row: Image) -> ImageRecord:
    return ImageRecord(**{f.name: getattr(row, f.name) for f in fields(ImageRecord)})


_JOB_COLUMNS = tuple(
    f.name
    for f in fields(JobRecord)
    if f.name
    not in {"status", "seeds", "verdict_reasons", "images", "loras", "embeddings", "inputs"}
)


def job_record(row: Job) -> JobRecord:
    """The record of a job row and its images (loaded with it: ``Job.images`` is selectin)."""
    return JobRecord(
        **{name: getattr(row, name) for name in _JOB_COLUMNS},
        status=JobStatus(row.status),
        seeds=tuple(int(seed) for seed in row.seeds),
        verdict_reasons=tuple(str(reason) for reason in row.verdict_reasons),
        loras=tuple(str(lora) for lora in row.loras),
        embeddings=tuple(str(token) for token in row.embeddings),
        images=tuple(image_record(image) for image in row.images),
        inputs=tuple(
            InputRecord(**{f.name: getattr(given, f.name) for f in fields(InputRecord)})
            for given in row.inputs
        ),
    )
