"""What guild admins control: settings, bans, block/allow terms, and the log of their actions."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, or_, select

from storage.engine import SessionFactory
from storage.models import (
    Ban,
    Controls,
    GuildSettings,
    ModerationAction,
    NsfwPolicy,
    Term,
    TermKind,
    utcnow,
)

log = logging.getLogger(__name__)

_SETTING_FIELDS = (
    "nsfw_policy",
    "nsfw_threshold",
    "user_images_per_hour",
    "guild_images_per_hour",
    "max_jobs_per_user",
    "max_steps",
    "audit_channel_id",
    "controls",
    "max_side",
    "channels",
    "paused_at",
    "pause_reason",
)
MAX_CHANNELS = 50  # channels a guild may limit the bot to


@dataclass(frozen=True)
class GuildSettingsRecord:
    guild_id: int
    nsfw_policy: NsfwPolicy = NsfwPolicy.BLOCK
    nsfw_threshold: float | None = None
    user_images_per_hour: float | None = None  # standard images (512², 20 steps) an hour
    guild_images_per_hour: float | None = None
    max_jobs_per_user: int | None = None  # queued + running
    max_steps: int | None = None
    audit_channel_id: int | None = None
    controls: Controls = Controls.REQUESTER
    max_side: int | None = None  # pixels, a multiple of 8
    channels: tuple[int, ...] | None = None  # None: the bot answers in every channel
    paused_at: datetime | None = None  # None: generating
    pause_reason: str | None = None

    @property
    def paused(self) -> bool:
        return self.paused_at is not None

    def answers_in(self, channel_id: int | None) -> bool:
        return self.channels is None or channel_id in self.channels


@dataclass(frozen=True)
class BanRecord:
    guild_id: int
    user_id: int
    reason: str
    banned_by: int
    created_at: datetime
    expires_at: datetime | None

    def active_at(self, when: datetime) -> bool:
        return self.expires_at is None or self.expires_at > when


@dataclass(frozen=True)
class TermRecord:
    guild_id: int | None
    kind: TermKind
    term: str
    is_regex: bool = False
    expires_at: datetime | None = None
    added_by: int | None = None


@dataclass(frozen=True)
class ModerationActionRecord:
    id: int
    guild_id: int | None
    actor_id: int
    action: str
    target_user_id: int | None
    target_job_id: int | None
    details: dict[str, Any]
    reason: str
    created_at: datetime


class GuildSettingsRepository:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    async def get(self, guild_id: int) -> GuildSettingsRecord:
        """The guild's settings; a guild never configured gets the defaults."""
        async with self._sessions() as session:
            row = await session.get(GuildSettings, guild_id)
            if row is None:
                return GuildSettingsRecord(guild_id=guild_id)
            values = {name: getattr(row, name) for name in _SETTING_FIELDS}
            try:
                values["nsfw_policy"] = NsfwPolicy(values["nsfw_policy"])
            except ValueError:  # written by hand or by older code: the safe policy stands
                log.warning("guild %d has nsfw_policy %r; using block", guild_id, row.nsfw_policy)
                values["nsfw_policy"] = NsfwPolicy.BLOCK
            try:
                values["controls"] = Controls(values["controls"] or Controls.REQUESTER)
            except ValueError:
                log.warning("guild %d has controls %r; using requester", guild_id, row.controls)
                values["controls"] = Controls.REQUESTER
            if values["channels"] is not None:
                values["channels"] = tuple(int(channel) for channel in values["channels"])
            return GuildSettingsRecord(guild_id=guild_id, **values)

    async def update(self, guild_id: int, **changes: Any) -> GuildSettingsRecord:
        unknown = set(changes) - set(_SETTING_FIELDS)
        if unknown:
            raise ValueError(f"unknown guild settings {sorted(unknown)}; known: {_SETTING_FIELDS}")
        for name, choices in (("nsfw_policy", NsfwPolicy), ("controls", Controls)):
            if name in changes:
                allowed = [choice.value for choice in choices]
                if changes[name] not in allowed:
                    raise ValueError(
                        f"{name} must be one of {', '.join(allowed)}, got {changes[name]!r}"
                    )
                changes[name] = str(changes[name])
        threshold = changes.get("nsfw_threshold")
        if threshold is not None and not 0.0 < threshold <= 1.0:
            raise ValueError(f"nsfw_threshold must be in (0, 1], got {threshold}")
        for name in ("user_images_per_hour", "guild_images_per_hour", "max_jobs_per_user"):
            value = changes.get(name)
            if value is not None and not 0 < value <= 1_000_000:
                raise ValueError(f"{name} must be above 0 and at most 1000000, got {value}")
        steps = changes.get("max_steps")
        if steps is not None and (isinstance(steps, bool) or not 1 <= steps <= 500):
            raise ValueError(f"max_steps must be a whole number from 1 to 500, got {steps}")
        side = changes.get("max_side")
        if side is not None and (isinstance(side, bool) or not 64 <= side <= 4096 or side % 8):
            raise ValueError(f"max_side must be a multiple of 8 from 64 to 4096, got {side}")
        if changes.get("channels") is not None:
            channels = sorted({int(channel) for channel in changes["channels"]})
            if not channels or len(channels) > MAX_CHANNELS:
                raise ValueError(
                    f"channels must name 1 to {MAX_CHANNELS} channels (None: every channel), "
                    f"got {len(channels)}"
                )
            changes["channels"] = channels
        async with self._sessions.begin() as session:
            row = await session.get(GuildSettings, guild_id)
            if row is None:
                row = GuildSettings(guild_id=guild_id)
                session.add(row)
            for name, value in changes.items():
                setattr(row, name, value)
        return await self.get(guild_id)


class BanList:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    async def ban(
        self,
        guild_id: int,
        user_id: int,
        *,
        banned_by: int,
        reason: str = "",
        expires_at: datetime | None = None,
    ) -> None:
        """Bans a user in a guild; banning again replaces the reason and the expiry."""
        async with self._sessions.begin() as session:
            row = await session.scalar(
                select(Ban).where(Ban.guild_id == guild_id, Ban.user_id == user_id)
            )
            if row is None:
                session.add(
                    Ban(
                        guild_id=guild_id,
                        user_id=user_id,
                        banned_by=banned_by,
                        reason=reason,
                        expires_at=expires_at,
                    )
                )
            else:
                row.banned_by, row.reason, row.expires_at = banned_by, reason, expires_at
                row.created_at = utcnow()

    async def unban(self, guild_id: int, user_id: int) -> bool:
        async with self._sessions.begin() as session:
            result = await session.execute(
                delete(Ban).where(Ban.guild_id == guild_id, Ban.user_id == user_id)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def active_ban(self, guild_id: int, user_id: int) -> BanRecord | None:
        async with self._sessions() as session:
            row = await session.scalar(
                select(Ban).where(Ban.guild_id == guild_id, Ban.user_id == user_id)
            )
        if row is None:
            return None
        record = BanRecord(
            row.guild_id, row.user_id, row.reason, row.banned_by, row.created_at, row.expires_at
        )
        return record if record.active_at(utcnow()) else None

    async def list(self, guild_id: int, *, active: bool = False) -> list[BanRecord]:
        """The guild's bans, oldest first; with ``active``, only those in force now."""
        query = select(Ban).where(Ban.guild_id == guild_id).order_by(Ban.created_at, Ban.id)
        if active:
            query = query.where(or_(Ban.expires_at.is_(None), Ban.expires_at > utcnow()))
        async with self._sessions() as session:
            rows = await session.scalars(query)
            return [
                BanRecord(r.guild_id, r.user_id, r.reason, r.banned_by, r.created_at, r.expires_at)
                for r in rows
            ]


class TermList:
    """Block, allow and force-safe entries; a ``None`` guild means every guild.

    Entries are stored as written (validate them first: ``moderation.prompts.validate_rule``);
    an entry with ``expires_at`` stops applying then. Adding an entry that exists replaces its
    expiry and whether it is a pattern.
    """

    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    @staticmethod
    def _stored(term: str, is_regex: bool) -> str:
        term = term.strip()
        if not term:
            raise ValueError("a term must not be empty")
        return term if is_regex else term.casefold()

    @staticmethod
    def _scope(guild_id: int | None) -> ColumnElement[bool]:
        return Term.guild_id.is_(None) if guild_id is None else Term.guild_id == guild_id

    async def add(
        self,
        guild_id: int | None,
        kind: TermKind,
        term: str,
        *,
        is_regex: bool = False,
        expires_at: datetime | None = None,
        added_by: int | None = None,
    ) -> bool:
        """Adds an entry; False when it was already there (its expiry is then updated)."""
        term = self._stored(term, is_regex)
        async with self._sessions.begin() as session:
            existing = await session.scalar(
                select(Term).where(
                    self._scope(guild_id), Term.kind == kind.value, Term.term == term
                )
            )
            if existing is not None:
                existing.expires_at, existing.is_regex = expires_at, is_regex
                return False
            session.add(
                Term(
                    guild_id=guild_id,
                    kind=kind.value,
                    term=term,
                    is_regex=is_regex,
                    expires_at=expires_at,
                    added_by=added_by,
                )
            )
            return True

    async def remove(self, guild_id: int | None, kind: TermKind, term: str) -> bool:
        async with self._sessions.begin() as session:
            result = await session.execute(
                delete(Term).where(
                    self._scope(guild_id),
                    Term.kind == kind.value,
                    or_(Term.term == term.strip(), Term.term == term.strip().casefold()),
                )
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def for_guild(self, guild_id: int | None) -> list[TermRecord]:
        """The entries in force for a guild now: its own and the global ones, unexpired."""
        scope: ColumnElement[bool] = Term.guild_id.is_(None)
        if guild_id is not None:
            scope = or_(scope, Term.guild_id == guild_id)
        return await self._unexpired(scope)

    async def every_guild(self) -> list[TermRecord]:
        """Every unexpired entry, global and per guild (for the operator)."""
        return await self._unexpired(Term.id.is_not(None))

    async def _unexpired(self, scope: ColumnElement[bool]) -> list[TermRecord]:
        unexpired = or_(Term.expires_at.is_(None), Term.expires_at > utcnow())
        async with self._sessions() as session:
            rows = await session.scalars(select(Term).where(scope, unexpired).order_by(Term.id))
            return [
                TermRecord(
                    r.guild_id,
                    TermKind(r.kind),
                    r.term,
                    r.is_regex,
                    r.expires_at,
                    r.added_by,
                )
                for r in rows
            ]


ActionListener = Callable[["ModerationActionRecord"], None]


class ModerationLog:
    """Who did what to whom, why and when. ``listeners`` hear of each action once it is
    stored (the bot posts it to a guild's log channel); one that fails is logged, not raised."""

    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions
        self.listeners: list[ActionListener] = []

    async def record(
        self,
        *,
        guild_id: int | None,
        actor_id: int,
        action: str,
        target_user_id: int | None = None,
        target_job_id: int | None = None,
        details: dict[str, Any] | None = None,
        reason: str = "",
    ) -> int:
        async with self._sessions.begin() as session:
            row = ModerationAction(
                guild_id=guild_id,
                actor_id=actor_id,
                action=action,
                target_user_id=target_user_id,
                target_job_id=target_job_id,
                details=details or {},
                reason=reason,
            )
            session.add(row)
            await session.flush()
            record = _action_record(row)
        for listener in self.listeners:
            try:
                listener(record)
            except Exception:
                log.exception("a moderation log listener failed on action %d", record.id)
        return record.id

    async def list(
        self, guild_id: int, *, user_id: int | None = None, limit: int | None = 50
    ) -> list[ModerationActionRecord]:
        """The guild's actions, newest first; with ``user_id``, those by or on that user."""
        query = (
            select(ModerationAction)
            .where(ModerationAction.guild_id == guild_id)
            .order_by(ModerationAction.id.desc())
            .limit(limit)
        )
        if user_id is not None:
            query = query.where(
                or_(
                    ModerationAction.target_user_id == user_id,
                    ModerationAction.actor_id == user_id,
                )
            )
        async with self._sessions() as session:
            rows = await session.scalars(query)
            return [_action_record(r) for r in rows]


def _action_record(row: ModerationAction) -> ModerationActionRecord:
    return ModerationActionRecord(
        row.id,
        row.guild_id,
        row.actor_id,
        row.action,
        row.target_user_id,
        row.target_job_id,
        dict(row.details),
        row.reason,
        row.created_at,
    )
