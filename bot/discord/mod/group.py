"""The ``/mod`` group and its subgroups: Manage Server, checked on the bot's side for every
subcommand, a refused attempt recorded."""

from __future__ import annotations

import logging

import discord
from discord import app_commands

from bot.discord.mod.text import say
from bot.guild_admin import MOD_PERMISSION, GuildAdmin

log = logging.getLogger(__name__)


def may_administer(permissions: discord.Permissions) -> bool:
    """Who may use /mod: Manage Server (administrators have it)."""
    return permissions.manage_guild


class ModGroup(app_commands.Group):
    """The ``/mod`` group, checked on the bot's side for every subcommand."""

    def __init__(self, admin: GuildAdmin) -> None:
        super().__init__(
            name="mod",
            description="Moderate sdbot on this server (Manage Server)",
            guild_only=True,
            default_permissions=discord.Permissions(manage_guild=True),
        )
        self.admin = admin

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if interaction.guild_id is not None and may_administer(interaction.permissions):
            return True
        command = interaction.command.qualified_name if interaction.command else "mod"
        if interaction.guild_id is not None:  # who tried, for the moderators to see
            await self.admin.record(
                interaction.guild_id, interaction.user.id, "denied", command=command
            )
        await say(interaction, f"⛔ `/{command}` is for members with {MOD_PERMISSION}")
        log.info("refused /%s ◆ user %d ◆ no %s", command, interaction.user.id, MOD_PERMISSION)
        return False


class ModSubgroup(app_commands.Group):
    """A group under /mod: discord.py runs only a command's direct parent's check, so this one
    passes it on to /mod's."""

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        assert self.parent is not None
        return await self.parent.interaction_check(interaction)
