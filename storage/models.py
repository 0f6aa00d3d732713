"""SQLAlchemy models: the audit record of every request and the state admins control.

Snowflakes (Discord ids) are 64-bit and live in ``BigInteger`` columns; our own ids are plain
integers so that SQLite's rowid autoincrement works. Timestamps are stored as naive UTC and come
back timezone-aware.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_uid() -> str:
    """A job's identity: 128 random bits, 32 hex digits."""
    return uuid.uuid4().hex


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC, returns aware UTC: the same on SQLite and PostgreSQL."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given; use an aware UTC datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON,
        list[Any]: JSON,
    }


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    BLOCKED = "blocked"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REFUSED = "refused"  # over a rate limit or the queue bound; never queued

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset(
    {
        JobStatus.SUCCEEDED,
        JobStatus.BLOCKED,
        JobStatus.FAILED,
        JobStatus.CANCELLED,
        JobStatus.REFUSED,
    }
)
# Queued or running: a job still waiting for its one terminal status.
OPEN_STATUSES = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)


class JobKind(enum.StrEnum):
    IMAGINE = "imagine"
    REROLL = "reroll"
    UPSCALE = "upscale"
    VARY = "vary"  # four variations of one variant (img2img from its picture)
    ZOOM = "zoom"  # an upscale zoomed out 2× (its border drawn)
    EDIT = "edit"  # /edit: a member's picture, its mask's white redrawn
    DESCRIBE = "describe"  # /describe: a picture in, prompts out (nothing drawn)


class Verdict(enum.StrEnum):
    ALLOWED = "allowed"
    FORCE_SAFE = "force_safe"  # allowed, but the images are checked strictly and spoilered
    BLOCKED = "blocked"


class PurgeReason(enum.StrEnum):
    """Why a job's prompts and pictures were purged."""

    RETENTION = "retention"  # SDBOT_RETENTION_DAYS after it ended
    FORGET = "forget"  # the member's data was deleted at their or a moderator's request


class TermKind(enum.StrEnum):
    BLOCK = "block"
    ALLOW = "allow"
    FORCE_SAFE = "force_safe"


class NsfwPolicy(enum.StrEnum):
    """What a guild does with a flagged image in a channel marked NSFW (elsewhere: withheld).

    Storage's own words, the same values as ``moderation.policy.NsfwPolicy`` (a test ties
    them): storage imports nothing of sdbot's, so the bot converts by value between the two.
    """

    BLOCK = "block"
    SPOILER = "spoiler"


class GorePolicy(enum.StrEnum):
    """Where a guild lets gore prompts through; the values of ``moderation.policy.GorePolicy``
    (a test ties them)."""

    AGE_RESTRICTED = "age_restricted"  # only in age-restricted channels, spoilered there
    BLOCK = "block"  # nowhere


class Disposition(enum.StrEnum):
    """How an image was posted; the values of ``moderation.policy.Disposition``."""

    SHOWN = "shown"
    SPOILER = "spoiler"
    WITHHELD = "withheld"


class Controls(enum.StrEnum):
    """Who may use the controls (1️⃣–4️⃣ 🔄) under a posted grid; ❌ stays with its owner and
    moderators either way."""

    REQUESTER = "requester"  # the member who asked, and moderators
    EVERYONE = "everyone"


class GuildSettings(Base):
    __tablename__ = "guild_settings"

    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    nsfw_policy: Mapped[str] = mapped_column(String(16), default=NsfwPolicy.BLOCK.value)
    nsfw_threshold: Mapped[float | None] = mapped_column(Float)  # only ever stricter than global
    user_images_per_hour: Mapped[float | None] = mapped_column(Float)  # standard images
    guild_images_per_hour: Mapped[float | None] = mapped_column(Float)
    max_jobs_per_user: Mapped[int | None]  # queued + running
    max_steps: Mapped[int | None]
    audit_channel_id: Mapped[int | None] = mapped_column(BigInteger)
    controls: Mapped[str | None] = mapped_column(String(16))  # None: Controls.REQUESTER
    max_side: Mapped[int | None]
    channels: Mapped[list[Any] | None] = mapped_column(JSON)  # None: every channel
    allowed_models: Mapped[list[Any] | None] = mapped_column(JSON)  # catalog names; None: all
    allowed_loras: Mapped[list[Any] | None] = mapped_column(JSON)  # LoRA names; None: all
    vary: Mapped[str | None] = mapped_column(String(8))  # subtle or strong; None: subtle
    gore_policy: Mapped[str | None] = mapped_column(String(16))  # None: age_restricted
    paused_at: Mapped[datetime | None]  # None: generating
    pause_reason: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Ban(Base):
    __tablename__ = "bans"
    __table_args__ = (UniqueConstraint("guild_id", "user_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    guild_id: Mapped[int] = mapped_column(BigInteger)
    user_id: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(Text, default="")
    banned_by: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]


class Term(Base):
    """A block or allow list entry; ``guild_id`` None means it applies everywhere."""

    __tablename__ = "terms"
    __table_args__ = (UniqueConstraint("guild_id", "kind", "term"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    guild_id: Mapped[int | None] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16))
    term: Mapped[str] = mapped_column(String(200))
    is_regex: Mapped[bool] = mapped_column(Boolean, default=False)
    added_by: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]


class Job(Base):
    """The audit record of one request: written before anything else happens."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_guild_id_created_at", "guild_id", "created_at"),
        Index("ix_jobs_status", "status"),
        Index("ix_jobs_uid", "uid", unique=True),
        # (0009) what a forget looks up (a member's jobs, the jobs made from them) and
        # retention (what ended before its cutoff)
        Index("ix_jobs_user_id", "user_id"),
        Index("ix_jobs_finished_at", "finished_at"),
        Index("ix_jobs_parent_job_id", "parent_job_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The identity the queue, Redis keys and events carry: never reused, even when a reset or
    # restored database hands out the same ``id`` again.
    uid: Mapped[str] = mapped_column(String(32), default=new_uid)
    kind: Mapped[str] = mapped_column(String(16), default=JobKind.IMAGINE.value)
    source: Mapped[str] = mapped_column(String(16))
    parent_job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    parent_variant: Mapped[int | None]
    guild_id: Mapped[int | None] = mapped_column(BigInteger)
    channel_id: Mapped[int | None] = mapped_column(BigInteger)
    user_id: Mapped[int | None] = mapped_column(BigInteger)
    prompt: Mapped[str] = mapped_column(Text)
    negative_prompt: Mapped[str] = mapped_column(Text, default="")
    steps: Mapped[int]
    guidance_scale: Mapped[float] = mapped_column(Float)
    width: Mapped[int]
    height: Mapped[int]
    variants: Mapped[int]
    scheduler: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(Text)  # the catalog's name (before 0007: its source)
    loras: Mapped[list[Any]] = mapped_column(JSON, default=list)  # "name:weight", as asked
    embeddings: Mapped[list[Any]] = mapped_column(JSON, default=list)  # tokens the prompts used
    seeds: Mapped[list[Any]] = mapped_column(JSON)
    verdict: Mapped[str] = mapped_column(String(16))
    verdict_reasons: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # The prompt classifier's scores by label ({"sexual": 0.02, "gore": 0.97}); None: not read.
    classifier_scores: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED.value)
    attempts: Mapped[int] = mapped_column(default=0)  # times a worker started it
    channel_nsfw: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    queue_ms: Mapped[float | None] = mapped_column(Float)
    generation_ms: Mapped[float | None] = mapped_column(Float)
    total_ms: Mapped[float | None] = mapped_column(Float)
    # The process that follows the open job (``host:pid:random``) and until when; it renews the
    # lease while it runs the job, and `sdbot recover` takes only jobs whose lease ran out.
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None]
    # Pictures in (0008): how the job starts and from what (see generation.starts.STARTS).
    start: Mapped[str] = mapped_column(String(16), default="text")
    strength: Mapped[float | None] = mapped_column(Float)
    source_seed: Mapped[int | None] = mapped_column(BigInteger)
    source_upscale: Mapped[int | None]
    control: Mapped[str | None] = mapped_column(String(16))
    control_scale: Mapped[float | None] = mapped_column(Float)
    # Purged (0009): the prompts are "", the pictures' files and pixels gone, the rest kept so
    # that a watermark still traces here; why: PurgeReason (retention, forget).
    purged_at: Mapped[datetime | None]
    purge_reason: Mapped[str | None] = mapped_column(String(16))

    images: Mapped[list[Image]] = relationship(
        back_populates="job", order_by="Image.variant", lazy="selectin"
    )
    inputs: Mapped[list[JobInput]] = relationship(
        back_populates="job",
        order_by="JobInput.id",
        lazy="selectin",
        foreign_keys="JobInput.job_id",
    )


class Image(Base):
    __tablename__ = "images"
    __table_args__ = (UniqueConstraint("job_id", "variant"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    variant: Mapped[int]
    seed: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    watermark_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    watermark_verified: Mapped[bool] = mapped_column(Boolean)
    safety_score: Mapped[float] = mapped_column(Float)  # open_nsfw, in [0, 1]
    safety_verdict: Mapped[str] = mapped_column(String(16))
    safety_threshold: Mapped[float | None] = mapped_column(Float)  # the one the verdict used
    model_flagged: Mapped[bool | None] = mapped_column(Boolean)  # None: the model has no checker
    disposition: Mapped[str] = mapped_column(String(16), default=Disposition.SHOWN.value)
    width: Mapped[int]
    height: Mapped[int]
    path: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    job: Mapped[Job] = relationship(back_populates="images")


class JobInput(Base):
    """A picture a member gave a job: the file's hash and size, what the NSFW check and the
    watermark reader found, and the picture as prepared for the worker (``png``: fitted to
    the job's size, a control's edges), which a job queued again is sent with."""

    __tablename__ = "job_inputs"
    __table_args__ = (UniqueConstraint("job_id", "role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(16))  # image, mask, control
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    format: Mapped[str] = mapped_column(String(8))
    size_bytes: Mapped[int]
    width: Mapped[int]
    height: Mapped[int]
    nsfw_score: Mapped[float | None] = mapped_column(Float)
    watermark_id: Mapped[int | None] = mapped_column(BigInteger)
    parent_job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    # None once retention purged it; deferred: loading a job's record never reads the pixels
    png: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    job: Mapped[Job] = relationship(back_populates="inputs", foreign_keys=[job_id])


class PostedMessage(Base):
    """A Discord message that shows a job: reactions on it are looked up here."""

    __tablename__ = "posted_messages"

    message_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    channel_id: Mapped[int] = mapped_column(BigInteger)
    guild_id: Mapped[int | None] = mapped_column(BigInteger)
    variant: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class JobAction(Base):
    """A control used on a job (``upscale-2``, ``reroll``): one row per job and control, so a
    repeated or replayed reaction finds the job it already started instead of starting another."""

    __tablename__ = "job_actions"
    __table_args__ = (UniqueConstraint("parent_job_id", "action"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    parent_job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[int | None] = mapped_column(BigInteger)
    child_job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    claimed_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModerationAction(Base):
    __tablename__ = "moderation_actions"
    __table_args__ = (
        Index("ix_moderation_actions_guild_id_created_at", "guild_id", "created_at"),
        Index("ix_moderation_actions_guild_id_target_user_id", "guild_id", "target_user_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    guild_id: Mapped[int | None] = mapped_column(BigInteger)
    actor_id: Mapped[int] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(String(32))
    target_user_id: Mapped[int | None] = mapped_column(BigInteger)
    target_job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
