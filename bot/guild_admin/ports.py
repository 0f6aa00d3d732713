"""What GuildAdmin is given: the repositories it uses, the bot's limits, and a way to stop a
job. The bot's ImagineService has all three (``GuildAdmin.for_service``); the CLI gives the
repositories alone."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from bot.guild_limits import BotLimits
from storage.audit import AuditLog
from storage.bans import BanList
from storage.guild_settings import GuildSettingsRepository
from storage.moderation_log import ModerationLog
from storage.posts import PostedMessages
from storage.retention import Retention
from storage.terms import TermList

StopJob = Callable[[int, str], Awaitable[str]]  # job id, why (public) → the queue's CancelOutcome
CanPost = Callable[[int], bool]  # channel id → sdbot may view and send messages there


class AdminStorage(Protocol):
    """The repositories GuildAdmin uses (``storage.repositories.Storage`` has them)."""

    @property
    def audit(self) -> AuditLog: ...
    @property
    def posts(self) -> PostedMessages: ...
    @property
    def terms(self) -> TermList: ...
    @property
    def guild_settings(self) -> GuildSettingsRepository: ...
    @property
    def bans(self) -> BanList: ...
    @property
    def moderation(self) -> ModerationLog: ...
    @property
    def retention(self) -> Retention: ...


class AdminService(Protocol):
    """What ``GuildAdmin.for_service`` takes from the bot's ImagineService: its repositories,
    the limits a guild may only tighten, and its way to stop a job."""

    @property
    def storage(self) -> AdminStorage: ...
    @property
    def bot_limits(self) -> BotLimits: ...

    async def stop(self, job_id: int, why: str) -> str: ...
