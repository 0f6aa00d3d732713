"""Purging audit records: their prompts and pictures go, their ids, verdicts and hashes stay.

A watermark still traces to a purged record, which says when and why it was purged. Retention
purges what ended long enough ago; a member's deletion (forget) purges everything of theirs
and what others' controls made from it, and drops their id from their rows. Both work in
batches of ``PURGE_BATCH`` jobs, each its own short transaction, so a big table is never
locked for long and a run cut short loses nothing: a batch is purged whole or not at all, and
the next run finds what is left.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import astuple, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.engine import SessionFactory
from storage.models import (
    OPEN_STATUSES,
    Ban,
    Image,
    Job,
    JobAction,
    JobInput,
    ModerationAction,
    PurgeReason,
    utcnow,
)
from storage.pictures import delete_pictures, job_folders, plainly_named

log = logging.getLogger(__name__)

PURGE_BATCH = 500  # jobs a transaction
SCRUBBED = "[purged]"  # what stands where a forgotten member's prompt was quoted
MIN_SCRUBBED = 4  # shorter prompts stay in moderators' words: "a cat" could be anyone's words


@dataclass(frozen=True)
class PurgeCounts:
    """What one purge did (or, counted beforehand, would do)."""

    jobs: int = 0  # records purged (a forget: also those purged before, whose id it drops)
    images: int = 0  # image files deleted
    inputs: int = 0  # pictures given in whose pixels were dropped
    prompts: int = 0  # of ``jobs``, the records whose prompts were still there

    def __add__(self, other: PurgeCounts) -> PurgeCounts:
        return PurgeCounts(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))


@dataclass(frozen=True)
class MemberData:
    """What the database holds of one member (in one guild, or everywhere)."""

    jobs: int  # their records and those made from them, purged or not (forget touches each)
    prompts: int  # of ``jobs``, those whose prompts are still there (not purged before)
    open_jobs: int  # queued or running: cancelled first
    images: int  # image files recorded
    inputs: int  # pictures given in, still kept (theirs, and theirs given to other jobs)
    uids: tuple[str, ...]  # the jobs' identities, which name their Redis entries
    own: frozenset[int]  # the ids of the member's own jobs (the purge drops their user id)
    open_ids: tuple[int, ...]  # the open jobs among ``jobs``, oldest first


@dataclass(frozen=True)
class ForgetScope:
    """The jobs a forget purges: the member's own, and every job a control (reroll, upscale,
    vary, zoom) made from them, at any depth, whoever clicked: such a job copies the member's
    prompt and starts from their picture, but belongs to the clicker, who keeps their id."""

    own: frozenset[int]
    descendants: frozenset[int]  # not yet purged by a forget

    @property
    def ids(self) -> frozenset[int]:
        return self.own | self.descendants


def _member(user_id: int, guild_id: int | None) -> ColumnElement[bool]:
    """A member's jobs: in one guild, or everywhere (DMs and the CLI too) when None."""
    mine = Job.user_id == user_id
    return mine if guild_id is None else and_(mine, Job.guild_id == guild_id)


def quoted(prompts: Iterable[str]) -> re.Pattern[str] | None:
    """What finds the prompts quoted in moderators' words: each whole, never inside a word
    (a prompt "a" must not make "banned" "b[purged]nned"), the longest first; prompts shorter
    than ``MIN_SCRUBBED`` are left out. None: nothing to look for."""
    kept = sorted({p.strip() for p in prompts if len(p.strip()) >= MIN_SCRUBBED}, key=len)
    if not kept:
        return None
    either = "|".join(re.escape(prompt) for prompt in reversed(kept))
    return re.compile(rf"(?<!\w)(?:{either})(?!\w)")


def _scrub(value: Any, pattern: re.Pattern[str]) -> Any:
    """``value`` (text, or JSON made of lists and dicts) with every match of ``pattern``
    replaced by ``SCRUBBED``."""
    if isinstance(value, str):
        return pattern.sub(SCRUBBED, value)
    if isinstance(value, list):
        return [_scrub(item, pattern) for item in value]
    if isinstance(value, dict):
        return {key: _scrub(item, pattern) for key, item in value.items()}
    return value


@dataclass(frozen=True)
class _Forgetting:
    """Whom a forget purges for, where, and whether these jobs are theirs (their id goes)."""

    user_id: int
    guild_id: int | None
    drop_user: bool


def _chunks(ids: Iterable[int], size: int = PURGE_BATCH) -> list[list[int]]:
    """``ids`` in order, cut into lists of at most ``size`` (bind parameters have a limit)."""
    ordered = sorted(ids)
    return [ordered[start : start + size] for start in range(0, len(ordered), size)]


def _not_forgotten(user_id: int) -> ColumnElement[bool]:
    """A job a forget has not purged yet (one that still names the member is theirs to do)."""
    forgotten = Job.purge_reason == PurgeReason.FORGET.value
    return or_(Job.purge_reason.is_(None), ~forgotten, Job.user_id == user_id)


def _given(job_ids: Sequence[int]) -> ColumnElement[bool]:
    """Pictures given to these jobs, or made by them and given to another job."""
    return or_(JobInput.job_id.in_(job_ids), JobInput.parent_job_id.in_(job_ids))


async def _scrub_quotes(
    session: AsyncSession,
    forgetting: _Forgetting,
    job_ids: list[int],
    pattern: re.Pattern[str] | None,
) -> None:
    """Moderation actions about the member or these jobs, and the member's bans, keep no
    prompt of theirs (their reasons and details are moderators' words, but a moderator may
    have quoted one); in a guild's forget, only that guild's."""
    if pattern is None:
        return
    about: ColumnElement[bool] = or_(
        ModerationAction.target_user_id == forgetting.user_id,
        ModerationAction.target_job_id.in_(job_ids),
    )
    bans: ColumnElement[bool] = Ban.user_id == forgetting.user_id
    if forgetting.guild_id is not None:
        about = and_(about, ModerationAction.guild_id == forgetting.guild_id)
        bans = and_(bans, Ban.guild_id == forgetting.guild_id)
    for action in await session.scalars(select(ModerationAction).where(about)):
        reason, details = _scrub(action.reason, pattern), _scrub(action.details, pattern)
        if reason != action.reason or details != action.details:
            action.reason, action.details = reason, details
    for ban in await session.scalars(select(Ban).where(bans)):
        reason = _scrub(ban.reason, pattern)
        if reason != ban.reason:
            ban.reason = reason


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

    async def forget_scope(
        self, user_id: int, guild_id: int | None, known: Iterable[int] = ()
    ) -> ForgetScope:
        """The jobs a forget of this member purges now: theirs (``known``: those found by an
        earlier round, whose id the purge dropped), and every job descending from them
        through ``parent_job_id``, followed until no new one appears. Jobs a forget purged
        before are left out, so a second forget finds nothing."""
        async with self._sessions() as session:
            own = set(known) | set(
                await session.scalars(select(Job.id).where(_member(user_id, guild_id)))
            )
            descendants: set[int] = set()
            frontier = own
            while frontier:
                children: set[int] = set()
                for chunk in _chunks(frontier):
                    query = select(Job.id).where(Job.parent_job_id.in_(chunk))
                    children.update(await session.scalars(query))
                frontier = children - own - descendants
                descendants |= frontier
            pending: set[int] = set()
            for chunk in _chunks(own | descendants):
                query = select(Job.id).where(Job.id.in_(chunk), _not_forgotten(user_id))
                pending.update(await session.scalars(query))
        return ForgetScope(frozenset(own & pending), frozenset(descendants & pending))

    async def member_data(
        self, user_id: int, guild_id: int | None, known: Iterable[int] = ()
    ) -> MemberData:
        """What a forget of this member would purge now (nothing changes)."""
        scope = await self.forget_scope(user_id, guild_id, known)
        rows: list[Any] = []
        images = 0
        inputs: set[int] = set()
        async with self._sessions() as session:
            for chunk in _chunks(scope.ids):
                query = select(Job.id, Job.uid, Job.status, Job.purged_at).where(Job.id.in_(chunk))
                rows += list(await session.execute(query))
                count = select(func.count()).select_from(Image)
                count = count.where(Image.job_id.in_(chunk), Image.path.is_not(None))
                images += int(await session.scalar(count) or 0)
                given = select(JobInput.id).where(_given(chunk), JobInput.png.is_not(None))
                inputs.update(await session.scalars(given))
        rows.sort()
        return MemberData(
            jobs=len(rows),
            prompts=sum(purged_at is None for *_, purged_at in rows),
            open_jobs=sum(status in OPEN_STATUSES for _, _, status, _ in rows),
            images=images,
            inputs=len(inputs),
            uids=tuple(str(uid) for _, uid, _, _ in rows),
            own=scope.own,
            open_ids=tuple(job_id for job_id, _, status, _ in rows if status in OPEN_STATUSES),
        )

    async def forget_member(
        self,
        user_id: int,
        guild_id: int | None,
        output_dir: Path | None,
        *,
        known: Iterable[int] = (),
        batch: int = PURGE_BATCH,
    ) -> PurgeCounts:
        """Purges every ended job of the member (``guild_id`` None: everywhere) and every ended
        job made from them by a control (``forget_scope``) with reason ``forget``; drops the
        member's id from their own jobs (the others keep their clickers' ids) and from the
        controls they used; drops the pixels of their pictures given to other jobs; and takes
        their prompts out of the moderation actions about them and of their bans' reasons.
        Open jobs are left for the caller to cancel first (a job still running would write its
        pictures afterwards). The descendants go first: a run cut short after the member's own
        jobs lost their id could not find them again."""
        scope = await self.forget_scope(user_id, guild_id, known)
        total = PurgeCounts()
        for ids, drop_user in ((scope.descendants, False), (scope.own, True)):
            forgetting = _Forgetting(user_id, guild_id, drop_user)
            for chunk in _chunks(ids, batch):
                which = and_(Job.id.in_(chunk), Job.status.not_in(OPEN_STATUSES))
                total += await self._purge_batch(
                    which, PurgeReason.FORGET, output_dir, batch, forgetting=forgetting
                )
        await self._forget_controls(user_id, guild_id)
        return total

    async def _purge_batch(
        self,
        which: ColumnElement[bool],
        reason: PurgeReason,
        output_dir: Path | None,
        batch: int,
        *,
        forgetting: _Forgetting | None = None,
    ) -> PurgeCounts:
        """Purges up to ``batch`` jobs matching ``which`` in one transaction; the files go
        before it commits, so a run cut short leaves rows to find again, never files without
        a trace of them in the record."""
        async with self._sessions.begin() as session:
            query = select(Job.id, Job.uid, Job.purged_at, Job.prompt, Job.negative_prompt)
            jobs = list(await session.execute(query.where(which).order_by(Job.id).limit(batch)))
            if not jobs:
                return PurgeCounts()
            ids = [job_id for job_id, *_ in jobs]
            files = select(Image.job_id, Image.path).where(Image.job_id.in_(ids))
            recorded = [(i, str(path)) for i, path in await session.execute(files) if path]
            # a forget also drops the member's pictures that other jobs were given
            given = JobInput.job_id.in_(ids) if forgetting is None else _given(ids)
            inputs = await session.scalar(
                select(func.count()).select_from(JobInput).where(given, JobInput.png.is_not(None))
            )
            if forgetting is not None:
                pattern = quoted(
                    text for *_, prompt, negative in jobs for text in (prompt, negative)
                )
                await _scrub_quotes(session, forgetting, ids, pattern)
            values: dict[str, Any] = {
                "prompt": "",
                "negative_prompt": "",
                "purged_at": utcnow(),
                "purge_reason": reason.value,
            }
            if forgetting is not None and forgetting.drop_user:  # purged before: forgotten too
                values["user_id"] = None
            for change in (
                update(Job).where(Job.id.in_(ids)).values(values),
                update(Image).where(Image.job_id.in_(ids)).values(path=None),
                update(JobInput).where(given).values(png=None),
            ):
                await session.execute(change.execution_options(synchronize_session=False))
            paths = [path for _, path in recorded]
            plain = plainly_named(recorded)
            folders = [
                folder
                for job_id, uid, *_ in jobs
                for folder in job_folders(output_dir, job_id, uid, plain)
            ]
            deleted = await asyncio.to_thread(delete_pictures, paths, output_dir, folders)
        prompts = sum(purged_at is None for _, _, purged_at, *_ in jobs)
        return PurgeCounts(len(ids), deleted, int(inputs or 0), prompts)

    async def _forget_controls(self, user_id: int, guild_id: int | None) -> None:
        """The controls the member used (on anyone's jobs, in scope) no longer name them."""
        scope = JobAction.user_id == user_id
        if guild_id is not None:
            in_guild = select(Job.id).where(Job.guild_id == guild_id)
            scope = and_(scope, JobAction.parent_job_id.in_(in_guild))
        async with self._sessions.begin() as session:
            forgotten = update(JobAction).where(scope).values(user_id=None)
            await session.execute(forgotten.execution_options(synchronize_session=False))
