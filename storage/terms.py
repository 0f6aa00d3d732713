"""Block, allow and force-safe list entries, per guild or for every guild."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, delete, or_, select

from storage.engine import SessionFactory
from storage.errors import EmptyTerm
from storage.models import Term, TermKind, utcnow


@dataclass(frozen=True)
class TermRecord:
    guild_id: int | None
    kind: TermKind
    term: str
    is_regex: bool = False
    expires_at: datetime | None = None
    added_by: int | None = None


def _record(row: Term) -> TermRecord:
    return TermRecord(
        row.guild_id, TermKind(row.kind), row.term, row.is_regex, row.expires_at, row.added_by
    )


class TermList:
    """Block, allow and force-safe entries; a ``None`` guild means every guild.

    Entries are stored as written (validate them first: ``moderation.lists.validate_rule``);
    an entry with ``expires_at`` stops applying then. Adding an entry that exists replaces its
    expiry and whether it is a pattern.
    """

    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    @staticmethod
    def _stored(term: str, is_regex: bool) -> str:
        stripped = term.strip()
        if not stripped:
            raise EmptyTerm(term)
        return stripped if is_regex else stripped.casefold()

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
            return [_record(row) for row in rows]
