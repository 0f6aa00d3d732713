"""`/mod purge`, `/mod pause`, `/mod resume`: acting on this server's posts and generation."""

from __future__ import annotations

import discord
from discord import app_commands

from bot.discord.mod.group import ModGroup
from bot.discord.mod.text import guild_of, jobs_text, say
from bot.discord.privacy import deleter  # shared with a deletion's first step
from bot.discord.text import fit, plural


def add_commands(mod: ModGroup) -> None:
    admin = mod.admin

    @mod.command(name="purge", description="Delete every post sdbot made for a member here")
    @app_commands.describe(user="the member", reason="why (recorded)")
    async def purge(
        interaction: discord.Interaction,
        user: discord.User,
        reason: app_commands.Range[str, 0, 300] = "",
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        done = await admin.purge(
            guild_of(interaction),
            interaction.user.id,
            user.id,
            deleter(interaction.client),
            reason,
        )
        lines = [f"🧹 deleted {plural(done.deleted, 'post')} sdbot made for {user.mention}"]
        if done.already_gone:
            were = "was" if done.already_gone == 1 else "were"
            lines.append(f"{done.already_gone} {were} already gone")
        for channel_id, why in done.failed.items():
            lines.append(f"⚠️ could not delete in <#{channel_id}>: {why}")
        await say(interaction, fit(lines, "… and {left} more channels"))

    @mod.command(name="pause", description="Stop image generation here (queued jobs too)")
    @app_commands.describe(reason="what members are told")
    async def pause(
        interaction: discord.Interaction, reason: app_commands.Range[str, 0, 300] = ""
    ) -> None:
        started, stopped = await admin.pause(guild_of(interaction), interaction.user.id, reason)
        lines = ["⏸️ image generation is paused here" if started else "⏸️ it was paused already"]
        if stopped:
            lines.append(f"cancelled {jobs_text(stopped)}")
        lines.append("`/mod resume` starts it again")
        await say(interaction, "\n".join(lines))

    @mod.command(name="resume", description="Start image generation here again")
    @app_commands.describe(reason="why (recorded)")
    async def resume(
        interaction: discord.Interaction, reason: app_commands.Range[str, 0, 300] = ""
    ) -> None:
        if await admin.resume(guild_of(interaction), interaction.user.id, reason):
            await say(interaction, "▶️ image generation goes on here")
        else:
            await say(interaction, "⚠️ image generation was not paused here")
