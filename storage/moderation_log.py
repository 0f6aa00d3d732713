"""Who did what to whom, why and when: the record of moderators' actions."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select

from storage.engine import SessionFactory
from storage.models import ModerationAction

log = logging.getLogger(__name__)


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


ActionListener = Callable[[ModerationActionRecord], None]


def _record(row: ModerationAction) -> ModerationActionRecord:
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
            record = _record(row)
        for listener in self.listeners:
            try:
                listener(record)
            except Exception:  # a listener is someone else's code: its failure is not ours
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
            return [_record(row) for row in await session.scalars(query)]
