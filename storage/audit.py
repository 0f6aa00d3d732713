"""The audit log: one record per request, blocked ones too, each ending in one terminal status,
with the images of those that succeeded.

Its two terminal writes (a job recorded as terminal at once, and the conditional update that
ends an open one) are where every outcome passes exactly once: ``JOBS`` counts there, after the
commit, and the queued jobs' ``queue_wait`` and ``end_to_end`` stages are observed with them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import undefer

from common import metrics
from storage.engine import SessionFactory
from storage.errors import JobAlreadyFinished, JobNotFound
from storage.models import OPEN_STATUSES, Image, Job, JobInput, JobStatus, Verdict, utcnow
from storage.records import (
    ImageRecord,
    InputPngs,
    JobRecord,
    Lease,
    NewImage,
    NewInput,
    NewJob,
    image_record,
    job_record,
)


class AuditLog:
    """Writes and reads audit records. Every method is one short unit of work.

    Which messages show a job, which process follows it and which controls were used on it are
    ``PostedMessages``, ``JobLeases`` and ``ActionClaims`` (each its own entry of ``Storage``).
    """

    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    async def create_job(
        self,
        new: NewJob,
        *,
        refused: str | None = None,
        lease: Lease | None = None,
        inputs: Sequence[NewInput] = (),
        finished: JobStatus | None = None,
        error: str | None = None,
    ) -> int:
        """Records a request with the pictures it was given (``inputs``, in the same
        transaction: a refused or blocked job keeps them too, with their scores). A refused one
        (over a limit, a ban, a pause, a picture: ``refused`` says which) is finished at once
        with status ``refused``, whatever its prompt's verdict; a blocked one with status
        ``blocked``. A job that is done as it is recorded (a description: nothing is queued)
        gets its terminal status ``finished`` and ``error`` at once, so that it is never an
        open job a restart would queue. A queued one is held by ``lease`` when given."""
        if finished is not None and not finished.is_terminal:  # a bug in the caller
            raise ValueError(f"{finished.value!r} is not a terminal status")
        now = utcnow()
        blocked = new.verdict is Verdict.BLOCKED and refused is None and finished is None
        if refused is not None:
            status, error = JobStatus.REFUSED, refused
        elif finished is not None:
            status = finished
        else:
            status, error = (JobStatus.BLOCKED if blocked else JobStatus.QUEUED), None
        held = lease if status is JobStatus.QUEUED else None
        row = Job(
            **new.columns(),
            lease_owner=None if held is None else held.owner,
            lease_expires_at=None if held is None else now + timedelta(seconds=held.seconds),
            status=status.value,
            error=error,
            created_at=now,
            finished_at=None if status is JobStatus.QUEUED else now,
            total_ms=None if status is JobStatus.QUEUED else 0.0,
        )
        async with self._sessions.begin() as session:
            session.add(row)
            await session.flush()
            session.add_all(given.row(row.id, now) for given in inputs)
            job_id = row.id
        if status is not JobStatus.QUEUED:  # committed as terminal: its one outcome
            metrics.JOBS.labels(new.kind.value, status.value).inc()
        return job_id

    async def input_pngs(self, job_id: int) -> InputPngs | None:
        """The pictures a job was given, as prepared for the worker, by role (a role whose
        picture retention dropped reads None); None when the job was given none. The one read
        of the deferred ``png`` column: a job queued again is sent with these."""
        query = select(JobInput).where(JobInput.job_id == job_id).options(undefer(JobInput.png))
        async with self._sessions() as session:
            rows = list(await session.scalars(query))
        if not rows:
            return None
        return InputPngs.of({row.role: row.png for row in rows})

    async def mark_running(self, job_id: int, attempt: int | None = None) -> int:
        """A worker started the job; returns how many times one has (retries count).

        ``attempt``: which start this is, when the queue knows it (a replayed event does not
        count twice); None counts one more.
        """
        now = utcnow()
        queue_ms: float | None = None
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
                job.queue_ms = queue_ms = (now - job.created_at).total_seconds() * 1000
            attempts = job.attempts
        if queue_ms is not None:  # its first start, committed: a retry waited again, not anew
            metrics.STAGE.labels("queue_wait").observe(queue_ms / 1000)
        return attempts

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
        query = select(Job).where(Job.status.in_(OPEN_STATUSES)).order_by(Job.id)
        if guild_id is not None:
            query = query.where(Job.guild_id == guild_id)
        if user_id is not None:
            query = query.where(Job.user_id == user_id)
        async with self._sessions() as session:
            return [job_record(row) for row in await session.scalars(query)]

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
        if not status.is_terminal:  # a bug in the caller, not something to tell a user
            raise ValueError(f"{status.value!r} is not a terminal status")
        now = utcnow()
        async with self._sessions.begin() as session:
            job = await session.get(Job, job_id)
            if job is None:
                raise JobNotFound(job_id)
            kind = job.kind
            total_ms = (now - job.created_at).total_seconds() * 1000
            # The conditional UPDATE is what guarantees a single outcome, even across processes.
            result = await session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status.in_(OPEN_STATUSES))
                .values(
                    status=status.value,
                    error=error,
                    lease_owner=None,
                    lease_expires_at=None,
                    finished_at=now,
                    generation_ms=generation_ms,
                    total_ms=total_ms,
                )
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]  # CursorResult at runtime
                raise JobAlreadyFinished(job_id, job.status)
            session.add_all(image.row(job_id) for image in images)
        # Committed: this job's one outcome (a second write raised above, before counting).
        metrics.JOBS.labels(kind, status.value).inc()
        metrics.STAGE.labels("end_to_end").observe(total_ms / 1000)

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
            return None if row is None else job_record(row)

    async def get_job_by_uid(self, uid: str) -> JobRecord | None:
        async with self._sessions() as session:
            row = await session.scalar(select(Job).where(Job.uid == uid))
            return None if row is None else job_record(row)

    async def find_by_watermark(self, watermark_id: int) -> tuple[JobRecord, ImageRecord] | None:
        async with self._sessions() as session:
            image = await session.scalar(select(Image).where(Image.watermark_id == watermark_id))
            if image is None:
                return None
            job = await session.get(Job, image.job_id)
            assert job is not None  # the foreign key guarantees it
            return job_record(job), image_record(image)

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
            return [job_record(row) for row in await session.scalars(query)]

    async def latest_open_job(self, user_id: int, guild_id: int | None) -> JobRecord | None:
        """The member's most recent queued or running job in the guild (None: in DMs/CLI)."""
        query = (
            select(Job)
            .where(Job.user_id == user_id, Job.status.in_(OPEN_STATUSES))
            .order_by(Job.id.desc())
            .limit(1)
        )
        query = query.where(
            Job.guild_id.is_(None) if guild_id is None else Job.guild_id == guild_id
        )
        async with self._sessions() as session:
            row = await session.scalar(query)
            return None if row is None else job_record(row)

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
            found = []
            for image in list(await session.scalars(query)):
                job = await session.get(Job, image.job_id)
                assert job is not None  # the foreign key guarantees it
                found.append((job_record(job), image_record(image)))
            return found
