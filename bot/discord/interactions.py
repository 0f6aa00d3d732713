"""What the features read from Discord's objects (who asks, where, with which permissions) and
the one way they answer a member privately."""

from __future__ import annotations

from typing import Any

import discord

from bot.discord.text import NO_PINGS, capped, channel_nsfw
from bot.imagine.types import Requester


def requester(interaction: discord.Interaction) -> Requester:
    """The member behind an interaction, and where they asked."""
    return requester_in(
        interaction.channel, interaction.guild_id, interaction.channel_id, interaction.user.id
    )


def requester_in(
    channel: object, guild_id: int | None, channel_id: int | None, user_id: int
) -> Requester:
    """A member asking in ``channel`` (an interaction's, or the one a reaction was added in)."""
    return Requester(
        source="discord",
        guild_id=guild_id,
        channel_id=channel_id,
        user_id=user_id,
        channel_nsfw=channel_nsfw(channel),
        parent_channel_id=parent_id(channel),
    )


def parent_id(channel: object) -> int | None:
    """The channel a thread is in (None for anything else): where a guild's channel list
    allows a channel, it allows its threads."""
    parent = getattr(channel, "parent_id", None)
    return parent if isinstance(channel, discord.Thread) and isinstance(parent, int) else None


def may_moderate(permissions: discord.Permissions) -> bool:
    """Manage Messages or Manage Server: who may delete others' posts and see hidden jobs."""
    return permissions.manage_messages or permissions.manage_guild


def is_moderator(member: discord.abc.User | None, channel: Any) -> bool:
    """Manage Messages in the channel, or Manage Server: who may delete others' posts."""
    if not isinstance(member, discord.Member):
        return False
    if isinstance(channel, discord.abc.GuildChannel):
        return may_moderate(channel.permissions_for(member))
    return may_moderate(member.guild_permissions)


async def private(interaction: discord.Interaction, text: str) -> None:
    """An answer for the member alone, within Discord's limits (a follow-up once deferred)."""
    if interaction.response.is_done():
        await interaction.followup.send(capped(text), ephemeral=True, allowed_mentions=NO_PINGS)
    else:
        await interaction.response.send_message(
            capped(text), ephemeral=True, allowed_mentions=NO_PINGS
        )
