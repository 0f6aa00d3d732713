"""The rules a moderator's request can break, as typed refusals whose message is what the person
reads (the command tree's ``on_error`` and ``bot.cli.main`` word them), and the pure checks that
raise them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.durations import parse_expiry
from common.errors import ErrorKind, SdbotError

MOD_PERMISSION = "Manage Server"  # who may administer sdbot in a guild


class AdminRefusal(SdbotError):
    """A moderator's request refused by a rule; the message says why and what to do instead."""

    kind = ErrorKind.BAD_INPUT


class BanRefused(AdminRefusal):
    """This member may not be banned: oneself, a bot, or someone who could lift it at once."""


class ChannelRefused(AdminRefusal):
    """A channel change that would not do what was asked."""


class LogChannelRefused(AdminRefusal):
    """sdbot cannot post in the channel named as the moderation log."""


class SettingsConflict(AdminRefusal):
    """One setting both set and reset."""


class InvalidDuration(AdminRefusal):
    """A ban's or an entry's duration that is no duration, or not in the future."""


@dataclass(frozen=True)
class Member:
    """Who a ban would fall on, as the caller sees them."""

    user_id: int
    is_bot: bool = False
    manages_guild: bool = False  # has Manage Server: could lift a ban at once


def check_ban(actor_id: int, member: Member) -> None:
    """Raises :class:`BanRefused` for oneself, a bot, or a member with Manage Server."""
    if member.user_id == actor_id:
        raise BanRefused("you cannot ban yourself")
    if member.is_bot:
        raise BanRefused(f"<@{member.user_id}> is a bot; bots do not use sdbot")
    if member.manages_guild:
        raise BanRefused(
            f"<@{member.user_id}> has {MOD_PERMISSION} and could lift a ban at once; "
            "take that permission away first"
        )


def expiry(text: str | None, called: str = "duration") -> datetime | None:
    """When a ban or an entry given ``text`` ends (None: never); ``called`` names the option
    in the refusal (``duration`` on Discord, ``--expires`` in a shell)."""
    if text is None:
        return None
    try:
        return parse_expiry(text)
    except ValueError as error:
        raise InvalidDuration(f"{called} {error}") from None
