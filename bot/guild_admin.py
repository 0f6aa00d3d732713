"""What a guild's moderators do, whatever they do it from: bans, lists, settings, pausing,
reviewing and exporting the audit log. Every change is written to the moderation log (who, what,
on whom, why, when) in the same call that makes it; nothing here reaches another guild's data.

The Discord commands (`bot/discord_mod.py`) render these; they hold no rules of their own.
"""

from __future__ import annotations

import asyncio
import io
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bot.service import ImagineService
from generation.queue import CancelOutcome
from moderation.prompts import GuildRule, RuleAction, validate_rule
from storage.admin import (
    BanList,
    BanRecord,
    GuildSettingsRecord,
    GuildSettingsRepository,
    ModerationActionRecord,
    ModerationLog,
    TermRecord,
)
from storage.audit import ImageRecord, JobRecord
from storage.export import write_actions_csv, write_csv
from storage.models import JobStatus, TermKind, utcnow

log = logging.getLogger(__name__)

# Settings a guild's moderators may change, and the names the moderation log records them by.
SETTINGS = (
    "nsfw_policy",
    "nsfw_threshold",
    "user_images_per_hour",
    "guild_images_per_hour",
    "max_jobs_per_user",
    "max_steps",
    "max_side",
    "controls",
    "channels",
    "audit_channel_id",
)


EXPORT_PAGE = 200  # jobs read at a time for an export
SWEEP_AGAIN_S = 1.0  # after a ban or a pause, open jobs are looked for once more


@dataclass(frozen=True)
class BanOutcome:
    ban: BanRecord
    replaced: BanRecord | None  # the ban in force before, now replaced
    stopped: tuple[int, ...]  # the member's queued and running jobs, cancelled


@dataclass(frozen=True)
class SettingsChange:
    before: GuildSettingsRecord
    after: GuildSettingsRecord
    changed: dict[str, tuple[Any, Any]]  # name → (old, new); only what really changed


@dataclass(frozen=True)
class Review:
    blocked: list[JobRecord]  # newest first
    flagged: list[tuple[JobRecord, ImageRecord]]  # newest first


HistoryEntry = JobRecord | ModerationActionRecord


class GuildAdmin:
    def __init__(self, service: ImagineService) -> None:
        self.service = service
        self.bans: BanList = service.bans
        self.log: ModerationLog = service.moderation
        self._sweeps: set[asyncio.Task[None]] = set()

    async def record(
        self,
        guild_id: int,
        actor_id: int,
        action: str,
        *,
        target_user_id: int | None = None,
        reason: str = "",
        **details: Any,
    ) -> None:
        await self.log.record(
            guild_id=guild_id,
            actor_id=actor_id,
            action=action,
            target_user_id=target_user_id,
            details=details,
            reason=reason,
        )

    # --- bans ----------------------------------------------------------------------------------

    async def ban(
        self,
        guild_id: int,
        actor_id: int,
        user_id: int,
        *,
        reason: str = "",
        expires_at: datetime | None = None,
    ) -> BanOutcome:
        """Bans a member from the bot in this guild (again: the new reason and expiry replace
        the old) and cancels their queued and running jobs here."""
        before = await self.bans.active_ban(guild_id, user_id)
        await self.bans.ban(
            guild_id, user_id, banned_by=actor_id, reason=reason, expires_at=expires_at
        )
        ban = await self.bans.active_ban(guild_id, user_id)
        assert ban is not None
        stopped = await self._stop_jobs(guild_id, user_id)
        self._sweep_again(guild_id, user_id)
        await self.record(
            guild_id,
            actor_id,
            "ban",
            target_user_id=user_id,
            reason=reason,
            expires_at=None if expires_at is None else expires_at.isoformat(),
            replaced=before is not None,
            cancelled_jobs=list(stopped),
        )
        return BanOutcome(ban, before, stopped)

    async def unban(self, guild_id: int, actor_id: int, user_id: int, reason: str = "") -> bool:
        removed = await self.bans.unban(guild_id, user_id)
        if removed:
            await self.record(guild_id, actor_id, "unban", target_user_id=user_id, reason=reason)
        return removed

    # --- block and allow lists -----------------------------------------------------------------

    async def add_term(
        self,
        guild_id: int,
        actor_id: int,
        kind: TermKind,
        term: str,
        *,
        is_regex: bool = False,
        expires_at: datetime | None = None,
    ) -> bool:
        """Adds an entry to the guild's list; raises InvalidTerm (with what is allowed) for a
        pattern that does not compile, is too broad or could run away. False: it was there."""
        # Off the event loop: probing a pattern for runaway backtracking takes up to ~0.1 s.
        await asyncio.to_thread(validate_rule, GuildRule(RuleAction(kind.value), term, is_regex))
        added = await self.service.terms.add(
            guild_id, kind, term, is_regex=is_regex, expires_at=expires_at, added_by=actor_id
        )
        await self.record(
            guild_id,
            actor_id,
            f"{kind.value}_term_add",
            term=term,
            regex=is_regex,
            expires_at=None if expires_at is None else expires_at.isoformat(),
            existed=not added,
        )
        return added

    async def remove_term(self, guild_id: int, actor_id: int, kind: TermKind, term: str) -> bool:
        removed = await self.service.terms.remove(guild_id, kind, term)
        if removed:
            await self.record(guild_id, actor_id, f"{kind.value}_term_remove", term=term)
        return removed

    async def terms(self, guild_id: int, kind: TermKind) -> tuple[list[TermRecord], int]:
        """The guild's own entries of a kind in force, and how many global ones apply too."""
        entries = [e for e in await self.service.terms.for_guild(guild_id) if e.kind is kind]
        own = [entry for entry in entries if entry.guild_id == guild_id]
        return own, len(entries) - len(own)

    # --- settings, pause -----------------------------------------------------------------------

    async def change_settings(
        self, guild_id: int, actor_id: int, changes: dict[str, Any], reason: str = ""
    ) -> SettingsChange:
        return await change_settings(
            self.service.guild_settings, self.log, guild_id, actor_id, changes, reason
        )

    async def pause(
        self, guild_id: int, actor_id: int, reason: str = ""
    ) -> tuple[bool, tuple[int, ...]]:
        """Stops generation in the guild: new requests are refused with the reason, and the
        queued and running jobs are cancelled. Returns (it was running, the jobs cancelled)."""
        before = await self.service.guild_settings.get(guild_id)
        if not before.paused:
            await self.service.guild_settings.update(
                guild_id, paused_at=utcnow(), pause_reason=reason or None
            )
        stopped = await self._stop_jobs(guild_id)
        self._sweep_again(guild_id)
        await self.record(guild_id, actor_id, "pause", reason=reason, cancelled_jobs=list(stopped))
        return not before.paused, stopped

    async def resume(self, guild_id: int, actor_id: int, reason: str = "") -> bool:
        """Generation goes on; False when it was not paused."""
        before = await self.service.guild_settings.get(guild_id)
        if not before.paused:
            return False
        await self.service.guild_settings.update(guild_id, paused_at=None, pause_reason=None)
        assert before.paused_at is not None
        paused_s = (utcnow() - before.paused_at).total_seconds()
        await self.record(guild_id, actor_id, "resume", reason=reason, paused_s=round(paused_s))
        return True

    def _sweep_again(self, guild_id: int, user_id: int | None = None) -> None:
        """A request that passed the gate a moment before the ban or pause was written may be
        queued after the first sweep: a second one, a little later, stops it too (while the ban
        or the pause still stands)."""
        task = asyncio.create_task(self._sweep(guild_id, user_id))
        self._sweeps.add(task)
        task.add_done_callback(self._sweeps.discard)

    async def _sweep(self, guild_id: int, user_id: int | None) -> None:
        await asyncio.sleep(SWEEP_AGAIN_S)
        try:
            if user_id is not None:
                standing = await self.bans.active_ban(guild_id, user_id) is not None
            else:
                standing = (await self.service.guild_settings.get(guild_id)).paused
            if standing:
                late = await self._stop_jobs(guild_id, user_id)
                if late:
                    log.info("stopped %s, queued as guild %d's moderators acted", late, guild_id)
        except Exception:  # the bot may be stopping; the jobs end as the service ends them
            log.exception("the second sweep of guild %d failed", guild_id)

    async def _stop_jobs(self, guild_id: int, user_id: int | None = None) -> tuple[int, ...]:
        # Shown under the job's post, in public: what stopped it, never a ban's reason.
        why = (
            "the moderators paused image generation here"
            if user_id is None
            else "its requester was banned from sdbot here"
        )
        stopped = []
        for job in await self.service.audit.open_jobs(guild_id=guild_id, user_id=user_id):
            outcome = await self.service.stop(job.id, why)
            if outcome in (CancelOutcome.DEQUEUED, CancelOutcome.STOPPING):
                stopped.append(job.id)
        return tuple(stopped)

    # --- reading the record --------------------------------------------------------------------

    async def history(
        self, guild_id: int, *, user_id: int | None = None, limit: int = 20
    ) -> list[HistoryEntry]:
        """Prompts and moderators' actions in the guild, newest first; with ``user_id``, that
        member's prompts and the actions by or on them."""
        jobs = await self.service.audit.list_jobs(
            guild_id=guild_id, user_id=user_id, limit=limit, newest_first=True
        )
        actions = await self.log.list(guild_id, user_id=user_id, limit=limit)
        merged: list[HistoryEntry] = [*jobs, *actions]
        merged.sort(key=lambda entry: entry.created_at, reverse=True)
        return merged[:limit]

    async def review(self, guild_id: int, *, limit: int = 10) -> Review:
        blocked = await self.service.audit.list_jobs(
            guild_id=guild_id, statuses=[JobStatus.BLOCKED], limit=limit, newest_first=True
        )
        flagged = await self.service.audit.flagged_images(guild_id, limit=limit)
        return Review(blocked, flagged)

    async def export(
        self, guild_id: int, actor_id: int, *, days: int | None = None
    ) -> tuple[bytes, bytes, int, int]:
        """The guild's audit log (every prompt) and moderation log as CSV files; the export
        itself is recorded. Returns (jobs CSV, actions CSV, jobs, actions)."""
        since = None if days is None else utcnow() - timedelta(days=days)
        jobs_csv, actions_csv = io.StringIO(), io.StringIO()
        job_count, after = 0, None
        while True:  # in pages, so that a long log never holds up the bot's other answers
            page = await self.service.audit.list_jobs(
                guild_id=guild_id, since=since, after_id=after, limit=EXPORT_PAGE
            )
            if not page:
                break
            job_count += await asyncio.to_thread(write_csv, page, jobs_csv, header=after is None)
            after = page[-1].id
        if after is None:
            write_csv([], jobs_csv)  # the header alone
        actions = await self.log.list(guild_id, limit=None)
        if since is not None:
            actions = [action for action in actions if action.created_at >= since]
        action_count = await asyncio.to_thread(write_actions_csv, reversed(actions), actions_csv)
        await self.record(guild_id, actor_id, "export", days=days, jobs=job_count)
        return (
            jobs_csv.getvalue().encode(),
            actions_csv.getvalue().encode(),
            job_count,
            action_count,
        )


async def change_settings(
    settings: GuildSettingsRepository,
    moderation: ModerationLog,
    guild_id: int,
    actor_id: int,
    changes: dict[str, Any],
    reason: str = "",
) -> SettingsChange:
    """Changes a guild's settings (None puts one back to the bot's default); raises ValueError
    naming a bad value and what is allowed. Records what changed, from what to what."""
    unknown = set(changes) - set(SETTINGS)
    if unknown:
        raise ValueError(f"unknown settings {sorted(unknown)}; known: {', '.join(SETTINGS)}")
    before = await settings.get(guild_id)
    after = await settings.update(guild_id, **changes)
    changed = {
        name: (_plain(getattr(before, name)), _plain(getattr(after, name)))
        for name in changes
        if getattr(before, name) != getattr(after, name)
    }
    if changed:
        await moderation.record(
            guild_id=guild_id,
            actor_id=actor_id,
            action="settings",
            details={name: {"from": old, "to": new} for name, (old, new) in changed.items()},
            reason=reason,
        )
    return SettingsChange(before, after, changed)


def _plain(value: Any) -> Any:
    """A setting as the moderation log stores it (JSON)."""
    if isinstance(value, tuple):
        return list(value)
    if hasattr(value, "value"):  # an enum
        return value.value
    return value
