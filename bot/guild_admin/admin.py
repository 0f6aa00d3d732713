"""``GuildAdmin``: one guild's moderation, for `/mod` and for ``sdbot``. Every change is written
to the moderation log (who, what, on whom, why, when) in the same call that makes it; nothing
here reaches another guild's data. Deleting a post and stopping a job come in as callables, so
neither a Discord client nor a running queue is needed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.guild_admin import record as records
from bot.guild_admin.ports import AdminService, AdminStorage, CanPost, StopJob
from bot.guild_admin.posts import DeletePost, PurgeOutcome, deletion_posts, take_down
from bot.guild_admin.refusals import LogChannelRefused, Member, check_ban
from bot.guild_admin.settings import SettingsChange, store_changes
from bot.guild_limits import BotLimits, EffectiveLimits, effective_limits
from bot.guild_settings import Naming
from bot.guild_settings_check import check_change
from moderation.lists import GuildRule, RuleAction, validate_rule
from storage.bans import BanRecord
from storage.guild_settings import GuildSettingsRecord
from storage.models import TermKind, utcnow
from storage.posts import MemberPost
from storage.terms import TermRecord

log = logging.getLogger(__name__)

SWEEP_AGAIN_S = 1.0  # after a ban or a pause, open jobs are looked for once more
_STOPPED = ("dequeued", "stopping")  # the queue's CancelOutcome values that stop a job


@dataclass(frozen=True)
class BanOutcome:
    ban: BanRecord
    replaced: BanRecord | None  # the ban in force before, now replaced
    stopped: tuple[int, ...]  # the member's queued and running jobs, cancelled


class GuildAdmin:
    """One guild's moderation: each method checks its rules, acts, and records the action."""

    def __init__(
        self,
        storage: AdminStorage,
        limits: BotLimits | None = None,
        *,
        stop: StopJob | None = None,
    ) -> None:
        """``limits``: the bot's own, which settings may only tighten (None: storage's ranges
        alone). ``stop``: how a ban or a pause stops open jobs (None: they are left running)."""
        self.audit = storage.audit
        self.posts = storage.posts
        self.retention = storage.retention
        self.terms_list = storage.terms
        self.guild_settings = storage.guild_settings
        self.bans = storage.bans
        self.log = storage.moderation
        self.limits = limits
        self._stop = stop
        self._sweeps: set[asyncio.Task[None]] = set()

    @classmethod
    def for_service(cls, service: AdminService) -> GuildAdmin:
        """The bot's: the service's repositories and limits, and its queue to stop jobs."""
        return cls(service.storage, service.bot_limits, stop=service.stop)

    async def record(
        self,
        guild_id: int | None,
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
        user: Member | int,
        *,
        reason: str = "",
        expires_at: datetime | None = None,
    ) -> BanOutcome:
        """Bans a member from the bot in this guild (again: the new reason and expiry replace
        the old) and cancels their queued and running jobs here. Raises ``BanRefused`` for
        oneself, a bot, or a member with Manage Server."""
        member = user if isinstance(user, Member) else Member(user)
        check_ban(actor_id, member)
        user_id = member.user_id
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

    async def active_bans(self, guild_id: int) -> list[BanRecord]:
        return await self.bans.list(guild_id, active=True)

    # --- block and allow lists -----------------------------------------------------------------

    async def add_term(
        self,
        guild_id: int | None,
        actor_id: int,
        kind: TermKind,
        term: str,
        *,
        is_regex: bool = False,
        expires_at: datetime | None = None,
    ) -> bool:
        """Adds an entry to the guild's list (None: every guild's); raises InvalidTerm (with what
        is allowed) for a pattern that does not compile, is too broad or could run away. False:
        it was there (its expiry is set anew)."""
        # Off the event loop: probing a pattern for runaway backtracking takes up to ~0.1 s.
        await asyncio.to_thread(validate_rule, GuildRule(RuleAction(kind.value), term, is_regex))
        added = await self.terms_list.add(
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

    async def remove_term(
        self, guild_id: int | None, actor_id: int, kind: TermKind, term: str
    ) -> bool:
        removed = await self.terms_list.remove(guild_id, kind, term)
        if removed:
            await self.record(guild_id, actor_id, f"{kind.value}_term_remove", term=term)
        return removed

    async def terms(self, guild_id: int, kind: TermKind) -> tuple[list[TermRecord], int]:
        """The guild's own entries of a kind in force, and how many global ones apply too."""
        entries = [e for e in await self.terms_list.for_guild(guild_id) if e.kind is kind]
        own = [entry for entry in entries if entry.guild_id == guild_id]
        return own, len(entries) - len(own)

    # --- settings ------------------------------------------------------------------------------

    async def settings(self, guild_id: int) -> GuildSettingsRecord:
        return await self.guild_settings.get(guild_id)

    def limits_for(self, settings: GuildSettingsRecord) -> EffectiveLimits:
        """What is in force where ``settings`` hold: the bot's limits tightened by them."""
        assert self.limits is not None, "GuildAdmin was given no bot limits"
        return effective_limits(settings, self.limits)

    async def change_settings(
        self,
        guild_id: int,
        actor_id: int,
        changes: Mapping[str, Any],
        reason: str = "",
        *,
        naming: Naming = Naming.STORED,
        can_post: CanPost | None = None,
    ) -> SettingsChange:
        """Changes a guild's settings (None puts one back to the bot's default), never laxer
        than the bot's own; with ``can_post``, a log channel sdbot cannot post in is refused.
        Raises ``InvalidSetting`` naming the setting as ``naming`` says, or
        ``LogChannelRefused``."""
        log_channel = changes.get("audit_channel_id")
        if log_channel is not None and can_post is not None and not can_post(log_channel):
            raise LogChannelRefused(
                f"sdbot cannot post in <#{log_channel}>: give it View Channel and Send Messages "
                "there first"
            )
        checked = check_change(changes, self.limits, naming=naming)
        return await store_changes(
            self.guild_settings, self.log, guild_id, actor_id, checked, reason
        )

    # --- pause, purge --------------------------------------------------------------------------

    async def pause(
        self, guild_id: int, actor_id: int, reason: str = ""
    ) -> tuple[bool, tuple[int, ...]]:
        """Stops generation in the guild: new requests are refused with the reason, and the
        queued and running jobs are cancelled. Returns (it was running, the jobs cancelled)."""
        before = await self.guild_settings.get(guild_id)
        if not before.paused:
            await self.guild_settings.update(
                guild_id, paused_at=utcnow(), pause_reason=reason or None
            )
        stopped = await self._stop_jobs(guild_id)
        self._sweep_again(guild_id)
        await self.record(guild_id, actor_id, "pause", reason=reason, cancelled_jobs=list(stopped))
        return not before.paused, stopped

    async def resume(self, guild_id: int, actor_id: int, reason: str = "") -> bool:
        """Generation goes on; False when it was not paused."""
        before = await self.guild_settings.get(guild_id)
        if not before.paused:
            return False
        await self.guild_settings.update(guild_id, paused_at=None, pause_reason=None)
        assert before.paused_at is not None
        paused_s = (utcnow() - before.paused_at).total_seconds()
        await self.record(guild_id, actor_id, "resume", reason=reason, paused_s=round(paused_s))
        return True

    async def purge(
        self, guild_id: int, actor_id: int, user_id: int, delete: DeletePost, reason: str = ""
    ) -> PurgeOutcome:
        """Deletes every post sdbot made for a member in this guild, one by one through
        ``delete``; a deleted or vanished post is unlinked from its job, and the purge recorded."""
        posts = await self.posts.member_posts(user_id, guild_id=guild_id)
        done = await take_down(self.posts, posts, delete)
        await self._record_purge(guild_id, actor_id, user_id, done, reason)
        return done

    async def take_down_member(
        self,
        user_id: int,
        delete: DeletePost,
        *,
        guild_id: int | None,
        actor_id: int,
        reason: str,
    ) -> PurgeOutcome:
        """A deletion's first step: every post sdbot made for a member in this guild
        (``guild_id`` None: in every guild and in DMs) deleted as /mod purge deletes them, while
        the jobs still name the member; a purge is recorded in each guild that had some, so its
        moderators see why the posts went."""
        posts = await deletion_posts(self.posts, self.retention, user_id, guild_id)
        return await self.take_down_posts(
            posts, delete, actor_id=actor_id, user_id=user_id, reason=reason
        )

    async def take_down_posts(
        self,
        posts: list[MemberPost],
        delete: DeletePost,
        *,
        actor_id: int,
        user_id: int,
        reason: str,
    ) -> PurgeOutcome:
        """``posts`` of the member's deleted, a purge recorded in each guild that had some (a
        direct message has no moderators to tell)."""
        by_guild: dict[int | None, list[MemberPost]] = {}
        for post in posts:
            by_guild.setdefault(post.guild_id, []).append(post)
        outcomes = []
        for where, found in by_guild.items():
            done = await take_down(self.posts, found, delete)
            if where is not None:
                await self._record_purge(where, actor_id, user_id, done, reason)
            outcomes.append(done)
        return PurgeOutcome.total(outcomes)

    async def _record_purge(
        self, guild_id: int, actor_id: int, user_id: int, done: PurgeOutcome, reason: str
    ) -> None:
        await self.record(
            guild_id,
            actor_id,
            "purge",
            target_user_id=user_id,
            reason=reason,
            deleted=done.deleted,
            already_gone=done.already_gone,
            failed=done.posts - done.deleted - done.already_gone,
        )

    def _sweep_again(self, guild_id: int, user_id: int | None = None) -> None:
        """A request that passed the gate a moment before the ban or pause was written may be
        queued after the first sweep: a second one, a little later, stops it too (while the ban
        or the pause still stands)."""
        if self._stop is None:
            return
        task = asyncio.create_task(self._sweep(guild_id, user_id))
        self._sweeps.add(task)
        task.add_done_callback(self._sweeps.discard)

    async def _sweep(self, guild_id: int, user_id: int | None) -> None:
        await asyncio.sleep(SWEEP_AGAIN_S)
        try:
            if user_id is not None:
                standing = await self.bans.active_ban(guild_id, user_id) is not None
            else:
                standing = (await self.guild_settings.get(guild_id)).paused
            if standing:
                late = await self._stop_jobs(guild_id, user_id)
                if late:
                    log.info("stopped %s, queued as guild %d's moderators acted", late, guild_id)
        except Exception:  # the bot may be stopping; the jobs end as the service ends them
            log.exception("the second sweep of guild %d failed", guild_id)

    async def _stop_jobs(self, guild_id: int, user_id: int | None = None) -> tuple[int, ...]:
        if self._stop is None:
            return ()
        # Shown under the job's post, in public: what stopped it, never a ban's reason.
        why = (
            "the moderators paused image generation here"
            if user_id is None
            else "its requester was banned from sdbot here"
        )
        stopped = []
        for job in await self.audit.open_jobs(guild_id=guild_id, user_id=user_id):
            if await self._stop(job.id, why) in _STOPPED:
                stopped.append(job.id)
        return tuple(stopped)

    # --- reading the record --------------------------------------------------------------------

    async def history(
        self, guild_id: int, *, user_id: int | None = None, limit: int = 20
    ) -> list[records.HistoryEntry]:
        """Prompts and moderators' actions in the guild, newest first; with ``user_id``, that
        member's prompts and the actions by or on them."""
        return await records.history(self.audit, self.log, guild_id, user_id=user_id, limit=limit)

    async def review(self, guild_id: int, *, limit: int = 10) -> records.Review:
        return await records.review(self.audit, guild_id, limit=limit)

    async def export(
        self, guild_id: int, actor_id: int, *, days: int | None = None
    ) -> tuple[bytes, bytes, int, int]:
        """The guild's audit log (every prompt) and moderation log as CSV files; the export
        itself is recorded. Returns (jobs CSV, actions CSV, jobs, actions)."""
        done = await records.export(self.audit, self.log, guild_id, days=days)
        await self.record(guild_id, actor_id, "export", days=days, jobs=done.jobs)
        return done.jobs_csv, done.actions_csv, done.jobs, done.actions
