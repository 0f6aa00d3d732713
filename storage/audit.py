"""The audit log: one record per request, blocked ones too, each ending in one terminal status."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from storage.engine import SessionFactory
from storage.errors import JobAlreadyFinished, JobNotFound
from storage.models import (
    Image,
    Job,
    JobAction,
    JobKind,
    JobStatus,
    PostedMessage,
    Verdict,
    new_uid,
    utcnow,
)


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


@dataclass(frozen=True)
class ImageRecord(NewImage):
    id: int = 0
    job_id: int = 0
    created_at: datetime | None = None


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
    lease_owner: str | None = None  # operational, not part of the audit record's dict
    lease_expires_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values (datetimes as ISO strings)."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            if name.startswith("lease_"):
                continue
            value = getattr(self, name)
            if name == "images":
                value = [_image_dict(image) for image in value]
            elif isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, tuple):
                value = list(value)
            out[name] = value
        out["status"] = self.status.value
        return out


def _image_dict(image: ImageRecord) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in image.__dataclass_fields__:
        value = getattr(image, name)
        out[name] = value.isoformat() if isinstance(value, datetime) else value
    return out


def _image_record(row: Image) -> ImageRecord:
    return ImageRecord(
        id=row.id,
        job_id=row.job_id,
        variant=row.variant,
        seed=row.seed,
        sha256=row.sha256,
        watermark_id=row.watermark_id,
        watermark_verified=row.watermark_verified,
        safety_score=row.safety_score,
        safety_verdict=row.safety_verdict,
        width=row.width,
        height=row.height,
        path=row.path,
        safety_threshold=row.safety_threshold,
        model_flagged=row.model_flagged,
        disposition=row.disposition,
        created_at=row.created_at,
    )


def _job_record(row: Job) -> JobRecord:
    return JobRecord(
        id=row.id,
        kind=row.kind,
        source=row.source,
        status=JobStatus(row.status),
        prompt=row.prompt,
        negative_prompt=row.negative_prompt,
        steps=row.steps,
        guidance_scale=row.guidance_scale,
        width=row.width,
        height=row.height,
        variants=row.variants,
        scheduler=row.scheduler,
        model=row.model,
        seeds=tuple(int(s) for s in row.seeds),
        verdict=row.verdict,
        verdict_reasons=tuple(str(r) for r in row.verdict_reasons),
        guild_id=row.guild_id,
        channel_id=row.channel_id,
        user_id=row.user_id,
        parent_job_id=row.parent_job_id,
        parent_variant=row.parent_variant,
        error=row.error,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        queue_ms=row.queue_ms,
        generation_ms=row.generation_ms,
        total_ms=row.total_ms,
        attempts=row.attempts,
        channel_nsfw=row.channel_nsfw,
        images=tuple(_image_record(image) for image in row.images),
        uid=row.uid,
        lease_owner=row.lease_owner,
        lease_expires_at=row.lease_expires_at,
    )


_OPEN_STATUSES = [JobStatus.QUEUED.value, JobStatus.RUNNING.value]
# A control whose job ended without images may be used again (a rate limit passed, a list changed).
_RETRYABLE = {JobStatus.REFUSED, JobStatus.BLOCKED, JobStatus.FAILED, JobStatus.CANCELLED}


def _span(lease: Lease) -> timedelta:
    return timedelta(seconds=lease.seconds)


# A claim whose job was never recorded (the process died in between) is free again after this.
CLAIM_TIMEOUT = timedelta(seconds=60)


@dataclass(frozen=True)
class ActionClaim:
    """The answer to "may this control start a job?": ``claimed``, or the job it already started
    (None while another claim is between its claim and its record)."""

    claimed: bool
    existing: JobRecord | None = None
    claimed_at: datetime | None = None  # a claim's own mark, for action_started


class AuditLog:
    """Writes and reads audit records. Every method is one short unit of work."""

    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    async def create_job(
        self, new: NewJob, *, refused: str | None = None, lease: Lease | None = None
    ) -> int:
        """Records a request. A refused one (over a limit, a ban, a pause: ``refused`` says
        which) is finished at once with status ``refused``, whatever its prompt's verdict; a
        blocked one with status ``blocked``. A queued one is held by ``lease`` when given."""
        now = utcnow()
        blocked = new.verdict is Verdict.BLOCKED and refused is None
        if refused is not None:
            status = JobStatus.REFUSED
        else:
            status = JobStatus.BLOCKED if blocked else JobStatus.QUEUED
        held = lease if status is JobStatus.QUEUED else None
        row = Job(
            uid=new.uid,
            lease_owner=None if held is None else held.owner,
            lease_expires_at=None if held is None else now + timedelta(seconds=held.seconds),
            kind=new.kind.value,
            source=new.source,
            parent_job_id=new.parent_job_id,
            parent_variant=new.parent_variant,
            guild_id=new.guild_id,
            channel_id=new.channel_id,
            user_id=new.user_id,
            prompt=new.prompt,
            negative_prompt=new.negative_prompt,
            steps=new.steps,
            guidance_scale=new.guidance_scale,
            width=new.width,
            height=new.height,
            variants=new.variants,
            scheduler=new.scheduler,
            model=new.model,
            seeds=list(new.seeds),
            verdict=new.verdict.value,
            verdict_reasons=list(new.verdict_reasons),
            channel_nsfw=new.channel_nsfw,
            status=status.value,
            error=None if blocked else refused,
            created_at=now,
            finished_at=None if status is JobStatus.QUEUED else now,
            total_ms=None if status is JobStatus.QUEUED else 0.0,
        )
        async with self._sessions.begin() as session:
            session.add(row)
            await session.flush()
            return row.id

    async def mark_running(self, job_id: int, attempt: int | None = None) -> int:
        """A worker started the job; returns how many times one has (retries count).

        ``attempt``: which start this is, when the queue knows it (a replayed event does not
        count twice); None counts one more.
        """
        now = utcnow()
        async with self._sessions.begin() as session:
            job = await session.get(Job, job_id)
            if job is None:
                raise JobNotFound(job_id)
            if JobStatus(job.status).is_terminal:
                raise JobAlreadyFinished(job_id, job.status)
            job.status = JobStatus.RUNNING.value
            job.attempts = job.attempts + 1 if attempt is None else max(job.attempts, attempt)
            if job.started_at is None:
                job.started_at = now
                job.queue_ms = (now - job.created_at).total_seconds() * 1000
            return job.attempts

    async def requeue(self, job_id: int) -> None:
        """A running job whose worker went away goes back to queued, to be retried."""
        async with self._sessions.begin() as session:
            await session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == JobStatus.RUNNING.value)
                .values(status=JobStatus.QUEUED.value)
            )

    async def open_jobs(
        self, *, guild_id: int | None = None, user_id: int | None = None
    ) -> list[JobRecord]:
        """Queued and running jobs, oldest first: what a restart must resume or end (or, for a
        guild and a member, what a pause or a ban stops)."""
        query = select(Job).where(Job.status.in_(_OPEN_STATUSES)).order_by(Job.id)
        if guild_id is not None:
            query = query.where(Job.guild_id == guild_id)
        if user_id is not None:
            query = query.where(Job.user_id == user_id)
        async with self._sessions() as session:
            return [_job_record(row) for row in await session.scalars(query)]

    async def record_outcome(
        self,
        job_id: int,
        status: JobStatus,
        *,
        error: str | None = None,
        images: Sequence[NewImage] = (),
        generation_ms: float | None = None,
    ) -> None:
        """Moves a job to its one terminal status, with its images when it succeeded."""
        if not status.is_terminal:
            raise ValueError(f"{status.value!r} is not a terminal status")
        now = utcnow()
        async with self._sessions.begin() as session:
            job = await session.get(Job, job_id)
            if job is None:
                raise JobNotFound(job_id)
            # The conditional UPDATE is what guarantees a single outcome, even across processes.
            result = await session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status.in_(_OPEN_STATUSES))
                .values(
                    status=status.value,
                    error=error,
                    lease_owner=None,
                    lease_expires_at=None,
                    finished_at=now,
                    generation_ms=generation_ms,
                    total_ms=(now - job.created_at).total_seconds() * 1000,
                )
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]  # CursorResult at runtime
                raise JobAlreadyFinished(job_id, job.status)
            for image in images:
                session.add(Image(job_id=job_id, **image.__dict__))

    async def take_lease(
        self, job_id: int, lease: Lease, *, dead: Callable[[str], bool] = lambda owner: False
    ) -> JobRecord | None:
        """Takes an open job for ``lease.owner``: when nobody holds it, its lease ran out, its
        holder is ``dead`` (a process of this host that is gone) or it is already ours. Returns
        the job as it was, or None when it is finished or another live process holds it.

        One conditional UPDATE on the lease as it was read, so that of two processes that try
        at once exactly one wins (on SQLite a read-then-write transaction would fail instead).
        """
        now = utcnow()
        async with self._sessions() as session:
            row = await session.get(Job, job_id)
            if row is None or JobStatus(row.status).is_terminal:
                return None
            record = _job_record(row)
        owner, until = record.lease_owner, record.lease_expires_at
        free = owner is None or until is None or until <= now or owner == lease.owner or dead(owner)
        if not free:
            return None
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(Job)
                .where(
                    Job.id == job_id,
                    Job.status.in_(_OPEN_STATUSES),
                    Job.lease_owner.is_(None) if owner is None else Job.lease_owner == owner,
                    Job.lease_expires_at.is_(None)
                    if until is None
                    else Job.lease_expires_at == until,
                )
                .values(lease_owner=lease.owner, lease_expires_at=now + _span(lease))
                .execution_options(synchronize_session=False)
            )
            taken = result.rowcount == 1  # type: ignore[attr-defined]  # CursorResult at runtime
        return record if taken else None

    async def renew_leases(self, lease: Lease) -> int:
        """The holder is alive: its open jobs' leases run ``lease.seconds`` from now. Returns
        how many it holds."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(Job)
                .where(Job.lease_owner == lease.owner, Job.status.in_(_OPEN_STATUSES))
                .values(lease_expires_at=utcnow() + _span(lease))
                .execution_options(synchronize_session=False)
            )
            return int(result.rowcount)  # type: ignore[attr-defined]

    async def release_leases(self, owner: str) -> None:
        """The holder stops following its open jobs (a graceful stop): the next start or
        `sdbot recover` may take them at once."""
        async with self._sessions.begin() as session:
            await session.execute(
                update(Job)
                .where(Job.lease_owner == owner)
                .values(lease_owner=None, lease_expires_at=None)
                .execution_options(synchronize_session=False)
            )

    async def image_paths(self) -> set[str]:
        """The recorded path of every image file (as stored)."""
        async with self._sessions() as session:
            return {
                str(path)
                for path in await session.scalars(select(Image.path).where(Image.path.is_not(None)))
            }

    async def get_job(self, job_id: int) -> JobRecord | None:
        async with self._sessions() as session:
            row = await session.get(Job, job_id)
            return None if row is None else _job_record(row)

    async def get_job_by_uid(self, uid: str) -> JobRecord | None:
        async with self._sessions() as session:
            row = await session.scalar(select(Job).where(Job.uid == uid))
            return None if row is None else _job_record(row)

    async def find_by_watermark(self, watermark_id: int) -> tuple[JobRecord, ImageRecord] | None:
        async with self._sessions() as session:
            image = await session.scalar(select(Image).where(Image.watermark_id == watermark_id))
            if image is None:
                return None
            job = await session.get(Job, image.job_id)
            assert job is not None  # the foreign key guarantees it
            return _job_record(job), _image_record(image)

    async def list_jobs(
        self,
        *,
        guild_id: int | None = None,
        since: datetime | None = None,
        limit: int | None = None,
        user_id: int | None = None,
        statuses: Iterable[JobStatus] | None = None,
        newest_first: bool = False,
        after_id: int | None = None,
    ) -> list[JobRecord]:
        """Jobs by id (``after_id``: from the next one on, for reading a long log in pages)."""
        query = select(Job).order_by(Job.id.desc() if newest_first else Job.id)
        if after_id is not None:
            query = query.where(Job.id > after_id)
        if guild_id is not None:
            query = query.where(Job.guild_id == guild_id)
        if user_id is not None:
            query = query.where(Job.user_id == user_id)
        if statuses is not None:
            query = query.where(Job.status.in_([status.value for status in statuses]))
        if since is not None:
            query = query.where(Job.created_at >= since)
        if limit is not None:
            query = query.limit(limit)
        async with self._sessions() as session:
            return [_job_record(row) for row in await session.scalars(query)]

    async def link_message(
        self,
        message_id: int,
        job_id: int,
        *,
        channel_id: int,
        guild_id: int | None,
        variant: int | None = None,
    ) -> None:
        """Links a message to the job it shows; a status message that became the result is
        linked again (its variant may change)."""
        async with self._sessions.begin() as session:
            posted = await session.get(PostedMessage, message_id)
            if posted is None:
                session.add(
                    PostedMessage(
                        message_id=message_id,
                        job_id=job_id,
                        channel_id=channel_id,
                        guild_id=guild_id,
                        variant=variant,
                    )
                )
            else:
                posted.job_id, posted.channel_id, posted.variant = job_id, channel_id, variant

    async def job_for_message(self, message_id: int) -> tuple[JobRecord, int | None] | None:
        """The job a posted message shows, and the variant when it shows one."""
        async with self._sessions() as session:
            posted = await session.get(PostedMessage, message_id)
            if posted is None:
                return None
            job = await session.get(Job, posted.job_id)
            assert job is not None
            return _job_record(job), posted.variant

    async def messages_for_job(self, job_id: int) -> list[tuple[int, int]]:
        """The (channel id, message id) of every posted message that shows the job, oldest
        first."""
        query = (
            select(PostedMessage)
            .where(PostedMessage.job_id == job_id)
            .order_by(PostedMessage.created_at, PostedMessage.message_id)
        )
        async with self._sessions() as session:
            return [(row.channel_id, row.message_id) for row in await session.scalars(query)]

    async def posts_for_user(self, guild_id: int, user_id: int) -> list[tuple[int, int, int]]:
        """(channel id, message id, job id) of every message posted for a member's jobs in a
        guild, oldest first."""
        query = (
            select(PostedMessage.channel_id, PostedMessage.message_id, PostedMessage.job_id)
            .join(Job, Job.id == PostedMessage.job_id)
            .where(Job.guild_id == guild_id, Job.user_id == user_id)
            .order_by(PostedMessage.created_at, PostedMessage.message_id)
        )
        async with self._sessions() as session:
            return [(row[0], row[1], row[2]) for row in await session.execute(query)]

    async def flagged_images(
        self, guild_id: int, *, limit: int = 10
    ) -> list[tuple[JobRecord, ImageRecord]]:
        """The guild's images the safety checker flagged (grids aside), newest first."""
        query = (
            select(Image)
            .join(Job, Job.id == Image.job_id)
            .where(Job.guild_id == guild_id, Image.safety_verdict == "flagged", Image.variant > 0)
            .order_by(Image.id.desc())
            .limit(limit)
        )
        async with self._sessions() as session:
            images = list(await session.scalars(query))
            found = []
            for image in images:
                job = await session.get(Job, image.job_id)
                assert job is not None
                found.append((_job_record(job), _image_record(image)))
            return found

    async def unlink_message(self, message_id: int) -> None:
        """The message was deleted: reactions on it mean nothing any more."""
        async with self._sessions.begin() as session:
            await session.execute(
                delete(PostedMessage).where(PostedMessage.message_id == message_id)
            )

    async def latest_open_job(self, user_id: int, guild_id: int | None) -> JobRecord | None:
        """The member's most recent queued or running job in the guild (None: in DMs/CLI)."""
        query = (
            select(Job)
            .where(Job.user_id == user_id, Job.status.in_(_OPEN_STATUSES))
            .order_by(Job.id.desc())
            .limit(1)
        )
        query = query.where(
            Job.guild_id.is_(None) if guild_id is None else Job.guild_id == guild_id
        )
        async with self._sessions() as session:
            row = await session.scalar(query)
            return None if row is None else _job_record(row)

    async def claim_action(
        self, parent_job_id: int, action: str, user_id: int | None
    ) -> ActionClaim:
        """Claims a control on a job, once: a second claim gets the job the first one started.

        A control whose job ended without images (refused, blocked, failed, cancelled) can be
        claimed again. The unique row and conditional updates make this hold across processes.
        """
        now = utcnow()
        try:
            async with self._sessions.begin() as session:
                row = await session.scalar(
                    select(JobAction).where(
                        JobAction.parent_job_id == parent_job_id, JobAction.action == action
                    )
                )
                if row is None:
                    session.add(
                        JobAction(
                            parent_job_id=parent_job_id,
                            action=action,
                            user_id=user_id,
                            claimed_at=now,
                        )
                    )
                    return ActionClaim(True, claimed_at=now)
                child = (
                    None if row.child_job_id is None else await session.get(Job, row.child_job_id)
                )
                free = (
                    JobStatus(child.status) in _RETRYABLE
                    if child is not None
                    else row.claimed_at < now - CLAIM_TIMEOUT
                )
                if not free:
                    return ActionClaim(False, None if child is None else _job_record(child))
                # Whoever changes the row as it was read wins; a concurrent retry loses.
                taken = await session.execute(
                    update(JobAction)
                    .where(
                        JobAction.id == row.id,
                        JobAction.claimed_at == row.claimed_at,
                        JobAction.child_job_id.is_(None)
                        if row.child_job_id is None
                        else JobAction.child_job_id == row.child_job_id,
                    )
                    .values(child_job_id=None, user_id=user_id, claimed_at=now)
                    .execution_options(synchronize_session=False)
                )
                won = taken.rowcount == 1  # type: ignore[attr-defined]
                return ActionClaim(won, claimed_at=now if won else None)
        except IntegrityError:  # another process inserted the same claim first
            return ActionClaim(False)

    async def action_started(
        self, parent_job_id: int, action: str, child_job_id: int, claimed_at: datetime
    ) -> bool:
        """The claimed control's job is recorded (whatever its status). False when the claim was
        taken over meanwhile (it outlived CLAIM_TIMEOUT): the row keeps the newer claim."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(JobAction)
                .where(
                    JobAction.parent_job_id == parent_job_id,
                    JobAction.action == action,
                    JobAction.claimed_at == claimed_at,
                )
                .values(child_job_id=child_job_id)
                .execution_options(synchronize_session=False)
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    async def release_action(self, parent_job_id: int, action: str) -> None:
        """The claimed control started nothing (its options are no longer allowed)."""
        async with self._sessions.begin() as session:
            await session.execute(
                delete(JobAction).where(
                    JobAction.parent_job_id == parent_job_id,
                    JobAction.action == action,
                    JobAction.child_job_id.is_(None),
                )
            )
