"""`/mod history`, `/mod review`, `/mod export`: reading this server's record."""

from __future__ import annotations

import asyncio
import io
import zipfile
from pathlib import Path

import discord
from discord import app_commands

from bot.discord.mod.group import ModGroup
from bot.discord.mod.text import (
    guild_of,
    history_line,
    job_member,
    job_prompt,
    recent,
    say,
    size,
    when,
)
from bot.discord.text import channel_nsfw, fit, plural, quoted
from storage.models import Disposition

ATTACHED_AT_MOST = 10  # flagged pictures attached to a review (Discord's limit a message)


def add_commands(mod: ModGroup) -> None:
    admin = mod.admin

    @mod.command(name="history", description="Recent prompts and moderators' actions here")
    @app_commands.describe(
        user="only this member's prompts, and actions by or on them",
        limit="how many entries (default 15)",
    )
    async def history(
        interaction: discord.Interaction,
        user: discord.User | None = None,
        limit: app_commands.Range[int, 1, 50] = 15,
    ) -> None:
        entries = await admin.history(
            guild_of(interaction), user_id=None if user is None else user.id, limit=limit
        )
        who = f" of {user.mention}" if user else ""
        if not entries:
            await say(interaction, f"no prompts or actions{who} recorded here")
            return
        lines = [f"**history{who}, newest first**"] + [history_line(e) for e in entries]
        await say(interaction, fit(lines, "… {left} more: `/mod export` has everything"))

    @mod.command(name="review", description="Recent blocked prompts and flagged images")
    @app_commands.describe(limit="how many of each (default 5)")
    async def review(
        interaction: discord.Interaction, limit: app_commands.Range[int, 1, 10] = 5
    ) -> None:
        # Pictures may be attached: the answer goes first, within Discord's 3 s.
        await interaction.response.defer(ephemeral=True, thinking=True)
        found = await admin.review(guild_of(interaction), limit=limit)
        lines = [recent("blocked prompts", len(found.blocked), limit)]
        for job in found.blocked:
            reasons = "; ".join(job.verdict_reasons) or "blocked"
            lines.append(
                f"- job {job.id} · {job_member(job)} · {when(job.created_at)} · "
                f"{job_prompt(job, 120)} — {quoted(reasons, 150)}"
            )
        lines.append(recent("flagged images", len(found.flagged), limit))
        nsfw_here = channel_nsfw(interaction.channel)
        files: list[discord.File] = []
        budget = interaction.filesize_limit
        for job, image in found.flagged:
            threshold = (
                ""
                if image.safety_threshold is None
                else f" (flags at ≥ {image.safety_threshold:g})"
            )
            model = " · the model's own checker flagged it" if image.model_flagged else ""
            lines.append(
                f"- job {job.id} #{image.variant} · {job_member(job)} · score "
                f"{image.safety_score:.2f}{threshold}{model} · {image.disposition} · "
                f"{job_prompt(job, 80)}"
            )
            if nsfw_here and image.path is not None and len(files) < ATTACHED_AT_MOST:
                data = await asyncio.to_thread(_stored, image.path)
                if data is not None and len(data) <= budget:
                    name = f"SPOILER_sdbot-{job.id}-{image.variant}.png"
                    files.append(discord.File(io.BytesIO(data), filename=name))
        if found.flagged and not nsfw_here:
            lines.append("*the pictures are attached only in an age-restricted channel*")
        elif found.flagged:
            withheld = sum(1 for _, i in found.flagged if i.disposition == Disposition.WITHHELD)
            if withheld:
                were = "was" if withheld == 1 else "were"
                lines.append(f"*{plural(withheld, 'withheld picture')} {were} never stored*")
        await say(interaction, fit(lines, "… {left} more lines"), files=files)

    @mod.command(name="export", description="This server's audit log as CSV files")
    @app_commands.describe(days="only the last this many days (default: everything)")
    async def export(
        interaction: discord.Interaction, days: app_commands.Range[int, 1, 3650] | None = None
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        guild_id = guild_of(interaction)
        jobs, actions, job_count, action_count = await admin.export(
            guild_id, interaction.user.id, days=days
        )
        limit = interaction.filesize_limit
        span = {None: "everything", 1: "the last day"}.get(days, f"the last {days} days")
        said = (
            f"📄 {plural(job_count, 'prompt')} and {plural(action_count, 'moderator’s action')}"
            f" ({span})"
        )
        names = (f"sdbot-{guild_id}-prompts.csv", f"sdbot-{guild_id}-actions.csv")
        if len(jobs) + len(actions) <= limit:  # Discord's limit: the whole upload
            files = [
                discord.File(io.BytesIO(data), filename=name)
                for name, data in zip(names, (jobs, actions), strict=True)
            ]
            await say(interaction, said, files=files)
            return
        packed = await asyncio.to_thread(_zipped, dict(zip(names, (jobs, actions), strict=True)))
        if len(packed) > limit:
            await say(
                interaction,
                f"⚠️ the export is {size(len(packed))} even zipped, over this server's upload "
                f"limit of {size(limit)}: give `days` for a shorter span, or "
                f"ask the bot's operator for `sdbot audit export --guild {guild_id}`",
            )
            return
        archive = discord.File(io.BytesIO(packed), filename=f"sdbot-{guild_id}-audit.zip")
        await say(interaction, f"{said}, zipped to fit", files=[archive])


def _zipped(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return out.getvalue()


def _stored(path: str) -> bytes | None:
    """A stored picture's bytes; None when it is no longer there."""
    try:
        return Path(path).read_bytes()
    except OSError:
        return None
