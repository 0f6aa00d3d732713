"""`/mod forget`: a member's prompts and images on this server deleted, at a moderator's word.

As `/privacy delete` (``bot.discord.privacy``), in this server only: sdbot's posts of the
member's jobs here are taken down first, as /mod purge does (recorded as a purge), then the
deletion and its record are :func:`bot.ops.privacy.forget_member`'s; both records reach the log
channel as every moderator's action does. Without ``confirm`` it counts what would go; with
it, it deletes."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import discord
from discord import app_commands

from bot.discord.mod.group import ModGroup
from bot.discord.mod.text import guild_of, say
from bot.discord.privacy import (
    CONFIRM_HELP,
    CONFIRMED,
    Deletion,
    Preview,
    check_confirmed,
    deletion_text,
    forget_safely,
    preview_deletion,
    preview_text,
)

if TYPE_CHECKING:
    from bot.discord.client import ImagineBot
    from bot.imagine.service import ImagineService

MOD_CHOICE = "yes, delete their prompts and images on this server"


def nothing_text(mention: str) -> str:
    return f"✅ nothing to delete: sdbot holds no prompts or images of {mention} here"


def forget_preview_text(preview: Preview, mention: str) -> str:
    """/mod forget's answer without ``confirm``."""
    if preview.nothing:
        return nothing_text(mention)
    heading = f"**`/mod forget` would delete on this server, for {mention}:**"
    return preview_text(preview, heading, "mod forget", MOD_CHOICE)


def forget_text(deletion: Deletion, mention: str) -> str:
    """/mod forget's answer for the member ``mention``."""
    if deletion.nothing:
        return nothing_text(mention)
    heading = f"🗑️ **{mention}'s prompts and images on this server are deleted**"
    return deletion_text(deletion, heading)


def add_commands(mod: ModGroup, service: ImagineService) -> None:
    @mod.command(name="forget", description="Delete a member's prompts and images on this server")
    @app_commands.describe(user="the member", confirm=CONFIRM_HELP)
    @app_commands.choices(confirm=[app_commands.Choice(name=MOD_CHOICE, value=CONFIRMED)])
    async def forget(
        interaction: discord.Interaction, user: discord.User, confirm: str | None = None
    ) -> None:
        guild_id = guild_of(interaction)
        if confirm is not None:
            check_confirmed(confirm, MOD_CHOICE)
        await interaction.response.defer(ephemeral=True, thinking=True)
        if confirm is None:
            preview = await preview_deletion(service, user_id=user.id, guild_id=guild_id)
            await say(interaction, forget_preview_text(preview, user.mention))
            return
        bot = cast("ImagineBot", interaction.client)  # /mod is only added to sdbot's client
        deletion = await forget_safely(
            bot, mod.admin, interaction, user_id=user.id, guild_id=guild_id, via="mod"
        )
        if deletion is not None:
            await say(interaction, forget_text(deletion, user.mention))
