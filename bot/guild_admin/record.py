"""Reading a guild's record: recent prompts and actions, what moderators should review, and the
whole audit log as CSV files."""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass
from datetime import timedelta

from storage.audit import AuditLog
from storage.export import write_actions_csv, write_csv
from storage.models import JobStatus, utcnow
from storage.moderation_log import ModerationActionRecord, ModerationLog
from storage.records import ImageRecord, JobRecord

EXPORT_PAGE = 200  # jobs read at a time for an export

HistoryEntry = JobRecord | ModerationActionRecord


@dataclass(frozen=True)
class Review:
    blocked: list[JobRecord]  # newest first
    flagged: list[tuple[JobRecord, ImageRecord]]  # newest first


@dataclass(frozen=True)
class Export:
    """A guild's audit log (every prompt) and moderation log as CSV files."""

    jobs_csv: bytes
    actions_csv: bytes
    jobs: int
    actions: int


async def history(
    audit: AuditLog,
    moderation: ModerationLog,
    guild_id: int,
    *,
    user_id: int | None = None,
    limit: int = 20,
) -> list[HistoryEntry]:
    """Prompts and moderators' actions in the guild, newest first; with ``user_id``, that
    member's prompts and the actions by or on them."""
    jobs = await audit.list_jobs(guild_id=guild_id, user_id=user_id, limit=limit, newest_first=True)
    actions = await moderation.list(guild_id, user_id=user_id, limit=limit)
    merged: list[HistoryEntry] = [*jobs, *actions]
    merged.sort(key=lambda entry: entry.created_at, reverse=True)
    return merged[:limit]


async def review(audit: AuditLog, guild_id: int, *, limit: int = 10) -> Review:
    blocked = await audit.list_jobs(
        guild_id=guild_id, statuses=[JobStatus.BLOCKED], limit=limit, newest_first=True
    )
    return Review(blocked, await audit.flagged_images(guild_id, limit=limit))


async def export(
    audit: AuditLog, moderation: ModerationLog, guild_id: int, *, days: int | None = None
) -> Export:
    """The guild's logs since ``days`` ago (None: everything), read in pages so that a long
    log never holds up the bot's other answers."""
    since = None if days is None else utcnow() - timedelta(days=days)
    jobs_csv, actions_csv = io.StringIO(), io.StringIO()
    job_count, after = 0, None
    while True:
        page = await audit.list_jobs(
            guild_id=guild_id, since=since, after_id=after, limit=EXPORT_PAGE
        )
        if not page:
            break
        job_count += await asyncio.to_thread(write_csv, page, jobs_csv, header=after is None)
        after = page[-1].id
    if after is None:
        write_csv([], jobs_csv)  # the header alone
    actions = await moderation.list(guild_id, limit=None)
    if since is not None:
        actions = [action for action in actions if action.created_at >= since]
    action_count = await asyncio.to_thread(write_actions_csv, reversed(actions), actions_csv)
    return Export(
        jobs_csv.getvalue().encode(), actions_csv.getvalue().encode(), job_count, action_count
    )
