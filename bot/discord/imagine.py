"""``/imagine``: a request checked, recorded and queued before the bot answers (milliseconds),
then followed by :mod:`bot.discord.delivery`.

A blocked prompt or a rate limit gets an ephemeral reply with the reason; a bad option or a
stopping bot raises, and the command tree's ``on_error`` words it; an accepted request a public
"queued" message that then shows its place, its progress and finally the grid.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot.discord import render
from bot.discord.delivery import Status
from bot.discord.interactions import private, requester
from bot.discord.retries import DISCORD_ERRORS, describe
from bot.discord.text import NO_PINGS, capped
from bot.imagine.outcomes import ImagineOutcome
from generation.options import MAX_SEED, SCHEDULERS, RequestedOptions
from storage.models import JobKind

if TYPE_CHECKING:
    from bot.discord.client import ImagineBot

log = logging.getLogger(__name__)

DISCORD_MAX_STRING = 6000  # the longest string option Discord accepts


def setup(bot: ImagineBot) -> None:
    """Adds /imagine to the bot's tree, its ranges from the bot's own limits."""

    async def imagine(
        interaction: discord.Interaction,
        prompt: str,
        negative: str = "",
        size: int | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        seed: int | None = None,
        sampler: str | None = None,
    ) -> None:
        requested = RequestedOptions(
            prompt=prompt,
            negative_prompt=negative,
            seed=seed,
            steps=steps,
            guidance_scale=guidance,
            width=size,
            height=size,
            scheduler=sampler,
        )
        await run_imagine(bot, interaction, requested)

    # Discord shows and enforces the bot's own limits (a guild may allow less; the bot says
    # so). The annotations are strings here (PEP 563): the ranges, built from the settings,
    # replace them before discord.py reads the signature.
    limits = bot.service.bot_limits.options
    text = min(limits.max_prompt_chars, DISCORD_MAX_STRING)
    imagine.__annotations__.update(
        prompt=app_commands.Range[str, 1, text],
        negative=app_commands.Range[str, 0, text],
        size=app_commands.Range[int, limits.min_side, limits.max_side] | None,
        steps=app_commands.Range[int, 1, limits.max_steps] | None,
        guidance=app_commands.Range[float, limits.min_guidance, limits.max_guidance] | None,
        seed=app_commands.Range[int, 0, MAX_SEED] | None,
    )
    described = app_commands.describe(
        prompt="what to draw",
        negative="what not to draw",
        size="width and height in pixels, a multiple of 8 (default: the model's)",
        steps="denoising steps (more: slower, finer)",
        guidance="how closely to follow the prompt (cfg)",
        seed="the same seed and prompt make the same grid",
        sampler="the scheduler",
    )(imagine)
    chosen = app_commands.choices(
        sampler=[app_commands.Choice(name=name, value=name) for name in SCHEDULERS]
    )(described)
    bot.tree.command(name="imagine", description="Make a 2×2 grid of images from a prompt")(chosen)


async def run_imagine(
    bot: ImagineBot, interaction: discord.Interaction, requested: RequestedOptions
) -> None:
    """Submits the request (fast: rules, a record, a queue push, well inside Discord's 3 s),
    answers, then follows the job to its result."""
    submitted = await bot.service.submit(requested, requester(interaction))
    if isinstance(submitted, ImagineOutcome):
        await private(interaction, render.refusal(submitted))
        return
    job_id = submitted.job.job_id
    title = render.title_of(requested.prompt, job_id, JobKind.IMAGINE, None, None)
    status = Status(interaction.channel_id, interaction.guild_id, interaction.user.id)
    try:
        answer = await interaction.response.send_message(
            capped(f"{title}\nqueued"), allowed_mentions=NO_PINGS
        )
    except DISCORD_ERRORS as error:  # too late (Discord's 3 s): the job still posts
        log.warning("could not answer ◆ job %d ◆ %s", job_id, describe(error))
    else:
        status.interaction = interaction
        status.message_id = answer.message_id
        await bot.delivery.link_status(status, job_id)
    await bot.delivery.deliver(submitted, title, status)
