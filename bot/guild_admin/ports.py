"""What GuildAdmin is given: the repositories it uses, the bot's limits, and a way to stop a
job; an ImagineService has all three (round 1's callers pass it whole)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from bot.guild_limits import BotLimits
from generation.limits import Limits
from generation.options import ModelDefaults, OptionLimits
from storage.audit import AuditLog
from storage.bans import BanList
from storage.guild_settings import GuildSettingsRepository
from storage.moderation_log import ModerationLog
from storage.terms import TermList

StopJob = Callable[[int, str], Awaitable[str]]  # job id, why (public) → the queue's CancelOutcome
CanPost = Callable[[int], bool]  # channel id → sdbot may view and send messages there


class AdminStorage(Protocol):
    """The repositories GuildAdmin uses (``storage.repositories.Storage`` has them)."""

    @property
    def audit(self) -> AuditLog: ...
    @property
    def terms(self) -> TermList: ...
    @property
    def guild_settings(self) -> GuildSettingsRepository: ...
    @property
    def bans(self) -> BanList: ...
    @property
    def moderation(self) -> ModerationLog: ...


@runtime_checkable
class ServiceParts(Protocol):
    """An ImagineService, as round 1's callers pass it: ``GuildAdmin(service)``."""

    @property
    def limits(self) -> OptionLimits: ...
    @property
    def defaults(self) -> ModelDefaults: ...
    @property
    def default_limits(self) -> Limits: ...
    @property
    def nsfw_threshold(self) -> float: ...

    async def stop(self, job_id: int, why: str) -> str: ...


class ServiceLike(AdminStorage, ServiceParts, Protocol):
    """An ImagineService: its repositories, its limits and its way to stop a job."""


def bot_limits(service: ServiceParts) -> BotLimits:
    """The bot's own limits, as an ImagineService holds them."""
    return BotLimits(
        options=service.limits,
        defaults=service.defaults,
        rates=service.default_limits,
        nsfw_threshold=service.nsfw_threshold,
    )
