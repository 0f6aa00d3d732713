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

from bot.discord import pictures, render
from bot.discord.choices import chosen_model, lora_choices, model_choices
from bot.discord.delivery import Status
from bot.discord.interactions import private, requester
from bot.discord.retries import DISCORD_ERRORS, describe
from bot.discord.text import NO_PINGS, capped
from bot.imagine.outcomes import ImagineOutcome
from generation.errors import InvalidOption
from generation.options import (
    LORA_WEIGHT_MAX,
    LORA_WEIGHT_MIN,
    MAX_LORAS,
    MAX_SEED,
    SCHEDULERS,
    RequestedOptions,
)
from generation.prompt_syntax import parse_lora_list
from generation.starts import (
    CONTROL_SCALE,
    CONTROL_SCALE_MAX,
    CONTROL_SCALE_MIN,
    CONTROL_TYPES,
    IMAGE_STRENGTH,
    STRENGTH_MAX,
    STRENGTH_MIN,
)
from storage.models import JobKind

if TYPE_CHECKING:
    from bot.discord.client import ImagineBot

log = logging.getLogger(__name__)

DISCORD_MAX_STRING = 6000  # the longest string option Discord accepts
ASPECTS = ("1:1", "3:2", "2:3", "16:9", "9:16")  # the shapes a model may declare sizes for
MAX_MODEL_CHARS = 32  # a catalog name's longest
MAX_LORA_CHARS = 200  # MAX_LORAS names of 32 characters with weights, and room to spare


def setup(bot: ImagineBot) -> None:
    """Adds /imagine to the bot's tree, its ranges from the bot's own limits."""

    async def imagine(
        interaction: discord.Interaction,
        prompt: str,
        negative: str = "",
        model: str | None = None,
        lora: str | None = None,
        aspect: str | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        seed: int | None = None,
        sampler: str | None = None,
        image: discord.Attachment | None = None,
        strength: float | None = None,
        control: discord.Attachment | None = None,
        control_type: str | None = None,
        control_strength: float | None = None,
    ) -> None:
        if control_type is not None and control is None:
            raise InvalidOption("control", None, f"a picture with control_type {control_type}")
        requested = RequestedOptions(
            prompt=prompt,
            negative_prompt=negative,
            seed=seed,
            steps=steps,
            guidance_scale=guidance,
            scheduler=sampler,
            model=model.strip() if model else None,
            loras=parse_lora_list(lora) if lora else (),
            aspect=aspect,
            strength=strength,
            control=control_type or (CONTROL_TYPES[0] if control is not None else None),
            control_scale=control_strength,
        )
        await run_imagine(bot, interaction, requested, image=image, control=control)

    async def complete_model(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        here = await bot.service.limits_here(interaction.guild_id)
        nsfw = requester(interaction).channel_nsfw
        return model_choices(here, bot.service.config.catalog, nsfw, current)

    async def complete_lora(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        here = await bot.service.limits_here(interaction.guild_id)
        model = chosen_model(bot.service.config.catalog, interaction.namespace.model)
        return lora_choices(here, model, current)

    # Discord shows and enforces the bot's own limits (a guild may allow less; the bot says
    # so). The annotations are strings here (PEP 563): the ranges, built from the settings,
    # replace them before discord.py reads the signature.
    limits = bot.service.bot_limits.options
    text = min(limits.max_prompt_chars, DISCORD_MAX_STRING)
    imagine.__annotations__.update(
        prompt=app_commands.Range[str, 1, text],
        negative=app_commands.Range[str, 0, text],
        model=app_commands.Range[str, 1, MAX_MODEL_CHARS] | None,
        lora=app_commands.Range[str, 1, MAX_LORA_CHARS] | None,
        steps=app_commands.Range[int, 1, limits.max_steps] | None,
        guidance=app_commands.Range[float, limits.min_guidance, limits.max_guidance] | None,
        seed=app_commands.Range[int, 0, MAX_SEED] | None,
        strength=app_commands.Range[float, STRENGTH_MIN, STRENGTH_MAX] | None,
        control_strength=app_commands.Range[float, CONTROL_SCALE_MIN, CONTROL_SCALE_MAX] | None,
    )
    described = app_commands.describe(
        prompt="what to draw; (word:1.3) weighs a word more, [word] less",
        negative="what not to draw",
        model="the model to draw with (default: the bot's)",
        lora=f"styles: NAME or NAME:WEIGHT ({LORA_WEIGHT_MIN:g} to {LORA_WEIGHT_MAX:g}), "
        f"up to {MAX_LORAS}, comma-separated",
        aspect="the picture's shape, in one of the model's sizes (default: its first)",
        steps="denoising steps (more: slower, finer)",
        guidance="how closely to follow the prompt (cfg)",
        seed="the same seed and prompt make the same grid",
        sampler="the scheduler",
        image="a picture to start from (PNG, JPEG or WebP); its shape picks the size",
        strength=f"with image: how much of it is redrawn ({STRENGTH_MIN:g} to {STRENGTH_MAX:g}; "
        f"default {IMAGE_STRENGTH:g})",
        control="a picture whose outlines the drawing follows (ControlNet)",
        control_type="what is taken from the control picture (default: canny edges)",
        control_strength=f"how closely the outlines are followed ({CONTROL_SCALE_MIN:g} to "
        f"{CONTROL_SCALE_MAX:g}; default {CONTROL_SCALE:g})",
    )(imagine)
    chosen = app_commands.choices(
        sampler=[app_commands.Choice(name=name, value=name) for name in SCHEDULERS],
        aspect=[app_commands.Choice(name=name, value=name) for name in ASPECTS],
        control_type=[app_commands.Choice(name=name, value=name) for name in CONTROL_TYPES],
    )(described)
    completed = app_commands.autocomplete(model=complete_model, lora=complete_lora)(chosen)
    bot.tree.command(name="imagine", description="Make a 2×2 grid of images from a prompt")(
        completed
    )


async def run_imagine(
    bot: ImagineBot,
    interaction: discord.Interaction,
    requested: RequestedOptions,
    *,
    image: discord.Attachment | None = None,
    mask: discord.Attachment | None = None,
    control: discord.Attachment | None = None,
) -> None:
    """Submits the request (fast: rules, a record, a queue push, well inside Discord's 3 s),
    answers, then follows the job to its result. With pictures, "thinking…" goes first: they
    are downloaded, read, scored and traced before the request is recorded."""
    given = image is not None or mask is not None or control is not None
    if given:
        await pictures.thinking(interaction)
    try:
        read = await pictures.pictures_in(bot, image=image, mask=mask, control=control)
        submitted = await bot.service.submit(requested, requester(interaction), pictures=read)
    except Exception:
        if given:
            await pictures.retract(interaction)
        raise  # the tree's on_error words it, privately
    if isinstance(submitted, ImagineOutcome):
        if given:
            await pictures.retract(interaction)
        await private(interaction, render.refusal(submitted))
        return
    job_id, options = submitted.job.job_id, submitted.job.request.options
    kind = JobKind.EDIT if mask is not None else JobKind.IMAGINE
    title = render.title_of(
        requested.prompt,
        job_id,
        kind,
        None,
        None,
        start=options.start,
        strength=options.strength if options.start != "text" else None,
        control=options.control,
        control_scale=options.control_scale if options.control else None,
    )
    status = Status(interaction.channel_id, interaction.guild_id, interaction.user.id)
    text = capped(f"{title}\nqueued")
    answer_id: int | None
    try:
        if given:  # "thinking…" becomes the status message
            edited = await interaction.edit_original_response(
                content=text, allowed_mentions=NO_PINGS
            )
            answer_id = edited.id
        else:
            sent = await interaction.response.send_message(text, allowed_mentions=NO_PINGS)
            answer_id = sent.message_id
    except DISCORD_ERRORS as error:  # too late (Discord's 3 s): the job still posts
        log.warning("could not answer ◆ job %d ◆ %s", job_id, describe(error))
    else:
        status.interaction = interaction
        status.message_id = answer_id
        await bot.delivery.link_status(status, job_id)
    await bot.delivery.deliver(submitted, title, status)
