"""``/job``, ``/cancel`` and ``/help``: a job's settings and its grid posted again, stopping
one's own job, and what sdbot does here.

Glue only: who may see a job is :mod:`bot.access`, the texts are :mod:`bot.discord.render`; a
refusal is raised and the command tree's ``on_error`` words it.
"""

from __future__ import annotations

import asyncio
import io
import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot import access
from bot.discord import render
from bot.discord.interactions import may_moderate, private, requester
from bot.discord.text import NO_PINGS, capped, channel_nsfw
from bot.imagine.outcomes import Refusal

if TYPE_CHECKING:
    from bot.discord.client import ImagineBot

log = logging.getLogger(__name__)


def setup(bot: ImagineBot) -> None:
    """Adds /job, /cancel and /help to the bot's tree."""

    @bot.tree.command(name="job", description="A job's settings, and its grid posted again")
    @app_commands.describe(id="the job number shown under the grid")
    async def job(interaction: discord.Interaction, id: app_commands.Range[int, 1]) -> None:
        await show_job(bot, interaction, id)

    @bot.tree.command(name="cancel", description="Cancel your queued or running job")
    @app_commands.describe(id="the job number (default: your latest one here)")
    async def cancel(
        interaction: discord.Interaction, id: app_commands.Range[int, 1] | None = None
    ) -> None:
        await cancel_job(bot, interaction, id)

    @bot.tree.command(name="help", description="What sdbot does, and this server's limits")
    async def help(interaction: discord.Interaction) -> None:
        await private(interaction, await help_text(bot, interaction.guild_id))


async def show_job(bot: ImagineBot, interaction: discord.Interaction, job_id: int) -> None:
    """/job: the settings of a job of this server, and its grid posted again with the controls
    where it may be shown here; otherwise the settings alone, to the caller."""
    service, guild_id, user_id = bot.service, interaction.guild_id, interaction.user.id
    record = await bot.storage.audit.get_job(job_id)
    missing = access.job_refusal(record, job_id, guild_id=guild_id, user_id=user_id)
    if missing is not None:
        raise missing
    assert record is not None
    if guild_id is not None:  # a banned member, a channel the bot is not in
        settings = await bot.storage.guild_settings.get(guild_id)
        gate = await service.gate(requester(interaction), settings)
        if gate is not None and gate[0] is not Refusal.PAUSED:
            raise access.Gated(*gate)
    moderator = may_moderate(interaction.permissions)
    hidden = access.hidden_refusal(record, user_id=user_id, moderator=moderator)
    if hidden is not None:
        raise hidden
    text = render.details(record, service.model_label)
    stored, why_not = render.stored_post(record, channel_nsfw(interaction.channel))
    if stored is None:
        await private(interaction, f"{text}\n*{why_not}*" if why_not else text)
        return
    # An upload can outlast Discord's 3 s: the answer goes first, the picture follows it.
    await interaction.response.defer(thinking=True)
    path, name = stored
    try:
        png = await asyncio.to_thread(path.read_bytes)
        message = await interaction.followup.send(
            capped(text),
            file=discord.File(io.BytesIO(png), filename=name),
            allowed_mentions=NO_PINGS,
            wait=True,
        )
    except (OSError, discord.HTTPException) as error:  # gone, too large, no permission, …
        why = (
            "its picture is no longer stored"
            if isinstance(error, OSError)
            else f"the picture could not be posted here: {error.text or error.status}"
        )
        await interaction.followup.send(capped(f"{text}\n*{why}*"), allowed_mentions=NO_PINGS)
        return
    await bot.delivery.add_controls(message, record)


async def cancel_job(bot: ImagineBot, interaction: discord.Interaction, job_id: int | None) -> None:
    """/cancel: the caller's job (by default their latest open one here) stops."""
    user = interaction.user.id
    if job_id is None:
        latest = await bot.storage.audit.latest_open_job(user, interaction.guild_id)
        if latest is None:
            raise access.NoOpenJob()
        job_id = latest.id
    said = await bot.service.cancel(job_id, user)  # NotYours: on_error says why
    await private(interaction, f"✅ {said}")


async def help_text(bot: ImagineBot, guild_id: int | None) -> str:
    """/help's text for a guild (None: a direct message)."""
    here = await bot.service.limits_here(guild_id)
    return render.help_text(bot.service.model_label, here)
