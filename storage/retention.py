"""Purging audit records: their prompts and pictures go, their ids, verdicts and hashes stay.

A watermark still traces to a purged record, which says when and why it was purged. Retention
purges what ended long enough ago; a member's deletion (forget) purges everything of theirs
and drops their id from the rows. Both work in batches of ``PURGE_BATCH`` jobs, each its own
short transaction, so a big table is never locked for long and a run cut short loses nothing:
a batch is purged whole or not at all, and the next run finds what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.engine import SessionFactory
from storage.models import (
    OPEN_STATUSES,
    Image,
    Job,
    JobAction,
    JobInput,
    ModerationAction,
    PurgeReason,
    utcnow,
)

log = logging.getLogger(__name__)

PURGE_BATCH = 500  # jobs a transaction
SCRUBBED = "[purged]"  # what stands where a forgotten member's prompt was quoted


@dataclass(frozen=True)
class PurgeCounts:
    """What one purge did (or, counted beforehand, would do)."""

    jobs: int = 0  # records purged
    images: int = 0  # image files deleted
    inputs: int = 0  # pictures given in whose pixels were dropped

    def __add__(self, other: PurgeCounts) -> PurgeCounts:
        return PurgeCounts(
            self.jobs + other.jobs, self.images + other.images, self.inputs + other.inputs
        )


@dataclass(frozen=True)
class MemberData:
    """What the database holds of one member (in one guild, or everywhere)."""

    jobs: int  # their records, purged or not (forget purges each: it drops their id)
    open_jobs: int  # queued or running: cancelled first
    images: int  # image files recorded
    inputs: int  # pictures given in, still kept
    uids: tuple[str, ...]  # the jobs' identities, which name their Redis entries


def delete_files(paths: Iterable[str], output_dir: Path | None) -> int:
    """Deletes the recorded image files; returns how many there were. A stored path may be
    relative to where the process ran: the file is also looked for in ``output_dir`` by its
    job folder and name (as ``pictures.sweep`` matches them). A job folder left empty goes."""
    deleted = 0
    for stored in paths:
        path = Path(stored)
        candidates = {path}
        if output_dir is not None:
            candidates.add(output_dir / path.parent.name / path.name)
        for candidate in candidates:
            try:
                candidate.unlink()
            except FileNotFoundError:
                continue
            deleted += 1
            with contextlib.suppress(OSError):  # not empty (another variant), or not ours
                candidate.parent.rmdir()
    return deleted


def _member(user_id: int, guild_id: int | None) -> ColumnElement[bool]:
    """A member's jobs: in one guild, or everywhere (DMs and the CLI too) when None."""
    mine = Job.user_id == user_id
    return mine if guild_id is None else and_(mine, Job.guild_id == guild_id)


def _scrub(value: Any, prompts: Sequence[str]) -> Any:
    """``value`` (text, or JSON made of lists and dicts) without any of ``prompts`` in it."""
    if isinstance(value, str):
        for prompt in prompts:
            value = value.replace(prompt, SCRUBBED)
        return value
    if isinstance(value, list):
        return [_scrub(item, prompts) for item in value]
    if isinstance(value, dict):
        return {key: _scrub(item, prompts) for key, item in value.items()}
    return value


class Retention:
    """Purges audit records; every method is idempotent."""

    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    async def purge_finished_before(
        self, cutoff: datetime, output_dir: Path | None, *, batch: int = PURGE_BATCH
    ) -> PurgeCounts:
        """Purges every job that ended before ``cutoff`` (open ones never) and is not purged
        yet, with reason ``retention``."""
        due = and_(
            Job.purged_at.is_(None),
            Job.finished_at < cutoff,
            Job.status.not_in(OPEN_STATUSES),
        )
        total = PurgeCounts()
        while True:
            done = await self._purge_batch(due, PurgeReason.RETENTION, output_dir, batch)
            total += done
            if done.jobs < batch:
                return total

    async def member_data(self, user_id: int, guild_id: int | None) -> MemberData:
        """What a forget of this member would purge (nothing changes)."""
        scope = _member(user_id, guild_id)
        async with self._sessions() as session:
            rows = list(await session.execute(select(Job.uid, Job.status).where(scope)))
            images = await session.scalar(
                select(func.count())
                .select_from(Image)
                .join(Job, Job.id == Image.job_id)
                .where(scope, Image.path.is_not(None))
            )
            inputs = await session.scalar(
                select(func.count())
                .select_from(JobInput)
                .join(Job, Job.id == JobInput.job_id)
                .where(scope, JobInput.png.is_not(None))
            )
        return MemberData(
            jobs=len(rows),
            open_jobs=sum(status in OPEN_STATUSES for _, status in rows),
            images=int(images or 0),
            inputs=int(inputs or 0),
            uids=tuple(str(uid) for uid, _ in rows),
        )

    async def forget_member(
        self,
        user_id: int,
        guild_id: int | None,
        output_dir: Path | None,
        *,
        batch: int = PURGE_BATCH,
    ) -> PurgeCounts:
        """Purges every ended job of the member (``guild_id`` None: everywhere) with reason
        ``forget``, drops their id from those jobs and from the controls they used, and takes
        their prompts out of any moderation action about them. Open jobs are left for the
        caller to cancel first (a job still running would write its pictures afterwards)."""
        scope = and_(_member(user_id, guild_id), Job.status.not_in(OPEN_STATUSES))
        total = PurgeCounts()
        while True:
            done = await self._purge_batch(
                scope, PurgeReason.FORGET, output_dir, batch, forgotten=user_id
            )
            total += done
            if done.jobs < batch:
                break
        await self._forget_controls(user_id, guild_id)
        return total

    async def _purge_batch(
        self,
        which: ColumnElement[bool],
        reason: PurgeReason,
        output_dir: Path | None,
        batch: int,
        *,
        forgotten: int | None = None,
    ) -> PurgeCounts:
        """Purges up to ``batch`` jobs matching ``which`` in one transaction; the files go
        before it commits, so a run cut short leaves rows to find again, never files without
        a trace of them in the record."""
        async with self._sessions.begin() as session:
            query = select(Job.id, Job.prompt, Job.negative_prompt).where(which)
            jobs = list(await session.execute(query.order_by(Job.id).limit(batch)))
            if not jobs:
                return PurgeCounts()
            ids = [job_id for job_id, _, _ in jobs]
            paths = list(
                await session.scalars(
                    select(Image.path).where(Image.job_id.in_(ids), Image.path.is_not(None))
                )
            )
            inputs = await session.scalar(
                select(func.count())
                .select_from(JobInput)
                .where(JobInput.job_id.in_(ids), JobInput.png.is_not(None))
            )
            if forgotten is not None:
                prompts = {text for _, *texts in jobs for text in texts if text}
                await self._scrub_actions(session, forgotten, ids, sorted(prompts, key=len)[::-1])
            values: dict[str, Any] = {
                "prompt": "",
                "negative_prompt": "",
                "purged_at": utcnow(),
                "purge_reason": reason.value,
            }
            if forgotten is not None:  # a record retention purged before is forgotten too
                values["user_id"] = None
            await session.execute(
                update(Job)
                .where(Job.id.in_(ids))
                .values(values)
                .execution_options(synchronize_session=False)
            )
            await session.execute(
                update(Image)
                .where(Image.job_id.in_(ids))
                .values(path=None)
                .execution_options(synchronize_session=False)
            )
            await session.execute(
                update(JobInput)
                .where(JobInput.job_id.in_(ids))
                .values(png=None)
                .execution_options(synchronize_session=False)
            )
            deleted = await asyncio.to_thread(delete_files, [str(p) for p in paths], output_dir)
        return PurgeCounts(len(ids), deleted, int(inputs or 0))

    async def _scrub_actions(
        self, session: AsyncSession, user_id: int, job_ids: list[int], prompts: Sequence[str]
    ) -> None:
        """Moderation actions about the member or these jobs keep no prompt of theirs (their
        reasons and details are moderators' words, but a moderator may have quoted one)."""
        if not prompts:
            return
        about = or_(
            ModerationAction.target_user_id == user_id,
            ModerationAction.target_job_id.in_(job_ids),
        )
        for row in await session.scalars(select(ModerationAction).where(about)):
            reason, details = _scrub(row.reason, prompts), _scrub(row.details, prompts)
            if reason != row.reason or details != row.details:
                row.reason, row.details = reason, details

    async def _forget_controls(self, user_id: int, guild_id: int | None) -> None:
        """The controls the member used (on anyone's jobs, in scope) no longer name them."""
        scope = JobAction.user_id == user_id
        if guild_id is not None:
            in_guild = select(Job.id).where(Job.guild_id == guild_id)
            scope = and_(scope, JobAction.parent_job_id.in_(in_guild))
        async with self._sessions.begin() as session:
            await session.execute(
                update(JobAction)
                .where(scope)
                .values(user_id=None)
                .execution_options(synchronize_session=False)
            )
