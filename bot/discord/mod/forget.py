"""`/mod forget`: a member's prompts and images on this server deleted, at a moderator's word.

The deletion and its record are :func:`bot.ops.privacy.forget_member`'s; the record reaches the
log channel as every moderator's action does. Confirmed as `/privacy delete` is (see
``bot.discord.privacy``): without ``confirm`` it counts what would go; with it, it deletes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot.discord.mod.group import ModGroup
from bot.discord.mod.text import guild_of, say
from bot.discord.privacy import (
    CONFIRM_HELP,
    CONFIRMED,
    KEPT,
    check_confirmed,
    forget_safely,
    preview_text,
    report_lines,
)
from bot.ops.privacy import ForgetReport, forget_preview

if TYPE_CHECKING:
    from bot.imagine.service import ImagineService

MOD_CHOICE = "yes, delete their prompts and images on this server"


def nothing_text(mention: str) -> str:
    return f"✅ nothing to delete: sdbot holds no prompts or images of {mention} here"


def forget_preview_text(report: ForgetReport, mention: str) -> str:
    """/mod forget's answer without ``confirm``."""
    if report.nothing:
        return nothing_text(mention)
    heading = f"**`/mod forget` would delete on this server, for {mention}:**"
    return preview_text(report, heading, "mod forget", MOD_CHOICE)


def forget_text(report: ForgetReport, mention: str) -> str:
    """/mod forget's answer for the member ``mention``."""
    if report.nothing:
        return nothing_text(mention)
    lines = [f"🗑️ **{mention}'s prompts and images on this server are deleted**"]
    lines += report_lines(report)
    lines += [KEPT, "their posts stay in the channels: `/mod purge` deletes them"]
    return "\n".join(lines)


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
            preview = await forget_preview(service, user_id=user.id, guild_id=guild_id)
            await say(interaction, forget_preview_text(preview, user.mention))
            return
        report = await forget_safely(
            service, interaction, user_id=user.id, guild_id=guild_id, via="mod"
        )
        if report is not None:
            await say(interaction, forget_text(report, user.mention))
