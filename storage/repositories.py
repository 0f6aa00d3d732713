"""Every repository over one session factory, and the database opened and checked for them.

The composition root (``bot.app``) and the CLI take one ``Storage`` and hand its repositories to
whoever needs them; storage itself knows nothing of the bot, so it is opened from a URL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from storage.audit import AuditLog
from storage.bans import BanList
from storage.claims import ActionClaims
from storage.engine import SessionFactory, create_engine, create_session_factory
from storage.guild_settings import GuildSettingsRepository
from storage.leases import JobLeases
from storage.moderation_log import ModerationLog
from storage.posts import PostedMessages
from storage.retention import Retention
from storage.terms import TermList


@dataclass(frozen=True)
class Storage:
    """The repositories of one database; build it with ``repositories()``, not by position."""

    sessions: SessionFactory
    audit: AuditLog  # jobs and their images
    terms: TermList
    guild_settings: GuildSettingsRepository
    bans: BanList
    moderation: ModerationLog
    posts: PostedMessages  # which messages show which job
    leases: JobLeases  # which process follows which open job
    claims: ActionClaims  # controls used on a job, once each
    retention: Retention  # purging records: retention and a member's deletion


def repositories(sessions: SessionFactory) -> Storage:
    """Every repository over ``sessions``; nothing connects until one is used."""
    return Storage(
        sessions=sessions,
        audit=AuditLog(sessions),
        terms=TermList(sessions),
        guild_settings=GuildSettingsRepository(sessions),
        bans=BanList(sessions),
        moderation=ModerationLog(sessions),
        posts=PostedMessages(sessions),
        leases=JobLeases(sessions),
        claims=ActionClaims(sessions),
        retention=Retention(sessions),
    )


@asynccontextmanager
async def open_storage(url: str) -> AsyncIterator[Storage]:
    """The database at ``url``, refused (``DatabaseBehind``) when its schema is not this code's
    head revision; the engine is disposed on the way out."""
    # alembic is slow to import and only opening needs it: commands without a database skip it
    from storage.migrations import ensure_up_to_date

    engine = create_engine(url)
    try:
        await ensure_up_to_date(engine)
        yield repositories(create_session_factory(engine))
    finally:
        await engine.dispose()


def unopened_storage(url: str) -> Storage:
    """Repositories over an engine that has not connected (it connects on first use): for what
    needs the bot's objects but not its data, such as ``sdbot discord check``."""
    return repositories(create_session_factory(create_engine(url)))
