"""`/mod ban`, `/mod unban`, `/mod bans`: who may not use sdbot on this server."""

from __future__ import annotations

import discord
from discord import app_commands

from bot.discord.mod.group import ModGroup, may_administer
from bot.discord.mod.text import ban_line, guild_of, jobs_text, mention, say, until
from bot.discord.text import fit, quoted
from bot.guild_admin import Member, check_ban, expiry


def member_of(user: discord.User | discord.Member) -> Member:
    """What a ban's rules look at: a bot, and Manage Server (which could lift it at once)."""
    manages = isinstance(user, discord.Member) and may_administer(
        user.resolved_permissions or user.guild_permissions
    )
    return Member(user.id, is_bot=user.bot, manages_guild=manages)


def add_commands(mod: ModGroup) -> None:
    admin = mod.admin

    @mod.command(name="ban", description="Stop a member from using sdbot on this server")
    @app_commands.describe(
        user="the member",
        reason="why (they are told)",
        duration="how long: 30m, 12h, 7d, 2w (default: until unbanned)",
    )
    async def ban(
        interaction: discord.Interaction,
        user: discord.User,
        reason: app_commands.Range[str, 0, 300] = "",
        duration: app_commands.Range[str, 1, 40] | None = None,
    ) -> None:
        member = member_of(user)
        check_ban(interaction.user.id, member)  # before the duration, as moderators expect
        expires_at = expiry(duration)
        done = await admin.ban(
            guild_of(interaction), interaction.user.id, member, reason=reason, expires_at=expires_at
        )
        lines = [f"🔨 {user.mention} is banned from sdbot here{until(expires_at)}"]
        if reason:
            lines.append(f"reason: {quoted(reason)}")
        if done.replaced is not None:
            lines.append(f"(this replaces the ban by {mention(done.replaced.banned_by)})")
        if done.stopped:
            lines.append(f"cancelled their {jobs_text(done.stopped)}")
        await say(interaction, "\n".join(lines))

    @mod.command(name="unban", description="Let a banned member use sdbot again")
    @app_commands.describe(user="the member", reason="why (recorded)")
    async def unban(
        interaction: discord.Interaction,
        user: discord.User,
        reason: app_commands.Range[str, 0, 300] = "",
    ) -> None:
        if await admin.unban(guild_of(interaction), interaction.user.id, user.id, reason):
            await say(interaction, f"✅ {user.mention} may use sdbot here again")
        else:
            await say(interaction, f"⚠️ {user.mention} is not banned here")

    @mod.command(name="bans", description="Who is banned from sdbot here")
    async def bans(interaction: discord.Interaction) -> None:
        records = await admin.active_bans(guild_of(interaction))
        if not records:
            await say(interaction, "nobody is banned from sdbot here")
            return
        lines = [f"**{len(records)} banned from sdbot here**"]
        lines += [ban_line(record) for record in records]
        await say(interaction, fit(lines, "… and {left} more"))
