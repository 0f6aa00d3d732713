"""What the guild's moderators decided stands in the way of a member: a ban, a pause, a channel
the bot does not answer in; outside a guild, a direct message when they are not allowed.

It comes before the prompt lists are applied, so a banned member hears of the ban and cannot
probe the lists.
"""

from __future__ import annotations

from datetime import datetime

from bot.imagine.outcomes import Refusal
from bot.imagine.types import Requester
from storage.bans import BanList
from storage.guild_settings import GuildSettingsRecord

GateRefusal = tuple[Refusal, str]  # by what, and in words a member may read

DIRECT_MESSAGES_REFUSED = (
    "sdbot does not draw in direct messages: a server's bans, lists and limits cannot apply "
    "here. Use /imagine in a server"
)


def ban_message(reason: str, expires_at: datetime | None) -> str:
    """What a banned member is told (and what their refused requests record)."""
    until = "" if expires_at is None else f" until {expires_at:%Y-%m-%d %H:%M} UTC"
    why = f" ({reason})" if reason else ""
    return f"you are banned from sdbot on this server{until}{why}"


class Gate:
    """The moderators' decisions about who may draw where (the guild's settings are read once
    per request, by the caller, and handed in)."""

    def __init__(self, bans: BanList, *, direct_messages: bool = False) -> None:
        self.bans = bans
        self.direct_messages = direct_messages  # Discord DMs draw under the global rules only

    async def check(
        self, requester: Requester, settings: GuildSettingsRecord | None
    ) -> GateRefusal | None:
        """What stands in the way of this member here, in words (None: nothing)."""
        if requester.guild_id is None and requester.source == "discord":
            return None if self.direct_messages else (Refusal.DIRECT, DIRECT_MESSAGES_REFUSED)
        if requester.guild_id is None or settings is None:
            return None
        if requester.user_id is not None:
            ban = await self.bans.active_ban(requester.guild_id, requester.user_id)
            if ban is not None:
                return Refusal.BANNED, ban_message(ban.reason, ban.expires_at)
        if settings.paused:
            why = f": {settings.pause_reason}" if settings.pause_reason else ""
            return Refusal.PAUSED, f"the moderators paused image generation here{why}"
        if not (
            settings.answers_in(requester.channel_id)
            or (requester.parent_channel_id and settings.answers_in(requester.parent_channel_id))
        ):
            assert settings.channels is not None
            where = ", ".join(f"<#{channel}>" for channel in settings.channels)
            return Refusal.CHANNEL, f"sdbot answers only in {where} on this server"
        return None
