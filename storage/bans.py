"""Members a guild's moderators stopped from generating, with the reason and for how long."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, or_, select

from storage.engine import SessionFactory
from storage.models import Ban, utcnow


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


def _record(row: Ban) -> BanRecord:
    return BanRecord(
        row.guild_id, row.user_id, row.reason, row.banned_by, row.created_at, row.expires_at
    )


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
        record = _record(row)
        return record if record.active_at(utcnow()) else None

    async def list(self, guild_id: int, *, active: bool = False) -> list[BanRecord]:
        """The guild's bans, oldest first; with ``active``, only those in force now."""
        query = select(Ban).where(Ban.guild_id == guild_id).order_by(Ban.created_at, Ban.id)
        if active:
            query = query.where(or_(Ban.expires_at.is_(None), Ban.expires_at > utcnow()))
        async with self._sessions() as session:
            return [_record(row) for row in await session.scalars(query)]
