"""Pictures in on Discord: a member's attachments read for a request (their declared size
checked before a byte is downloaded), ``/edit`` (a picture and a mask whose white is redrawn)
and ``/describe`` (a picture in, prompts out).

Glue only: what a picture may be is :mod:`generation.inputs` (read at admission, by the
service), the moderation of pictures given in is :mod:`bot.imagine.inputs`, the prompts
:mod:`bot.imagine.describe`. A request with pictures is answered "thinking…" at once: reading,
scoring and tracing pictures may outlast Discord's 3 s.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot.discord import render
from bot.discord.choices import model_choices
from bot.discord.interactions import private, requester
from bot.discord.retries import DISCORD_ERRORS, best_effort, describe
from bot.discord.text import NO_PINGS, capped, code, quoted
from bot.imagine.types import Attachment, PicturesIn
from generation.errors import InvalidOption
from generation.inputs import ALLOWED
from generation.options import RequestedOptions
from generation.starts import STRENGTH_MAX, STRENGTH_MIN

if TYPE_CHECKING:
    from bot.discord.client import ImagineBot
    from bot.imagine.describe import Described

log = logging.getLogger(__name__)

MAX_DESCRIBE_MODEL_CHARS = 32  # a catalog name's longest (as /imagine's model option)


async def read_attachment(
    attachment: discord.Attachment | None, option: str, max_bytes: int
) -> Attachment | None:
    """The file a member gave in ``option``, downloaded once its declared size is within
    ``max_bytes`` (a larger one is refused unread, naming the file). What the bytes are is
    read at admission, never trusted from the name or the content type."""
    if attachment is None:
        return None
    if attachment.size > max_bytes:
        raise InvalidOption(
            option,
            f"{attachment.filename} ({attachment.size / 2**20:.1f} MB)",
            f"{ALLOWED} of at most {max_bytes / 2**20:g} MB",
        )
    try:
        data = await attachment.read()
    except discord.HTTPException as error:  # the CDN's answer: gone, forbidden, failing
        raise InvalidOption(
            option, attachment.filename, f"a file Discord still has ({describe(error)})"
        ) from error
    return Attachment(data, attachment.filename, attachment.content_type)


async def pictures_in(
    bot: ImagineBot,
    *,
    image: discord.Attachment | None = None,
    mask: discord.Attachment | None = None,
    control: discord.Attachment | None = None,
) -> PicturesIn | None:
    """The request's pictures (None: it has none), each checked against the bot's byte limit
    before it is downloaded."""
    if image is None and mask is None and control is None:
        return None
    limit = bot.service.config.max_input_bytes
    return PicturesIn(
        image=await read_attachment(image, "image", limit),
        mask=await read_attachment(mask, "mask", limit),
        control=await read_attachment(control, "control", limit),
    )


async def thinking(interaction: discord.Interaction) -> None:
    """ "sdbot is thinking…" in the channel at once: the pictures are read after it."""
    await interaction.response.defer(thinking=True)


async def retract(interaction: discord.Interaction) -> None:
    """Takes the public "thinking…" back before a refusal, so that the refusal goes to its
    member alone (a followup after a public defer would replace it publicly)."""
    await best_effort(interaction.delete_original_response, "taking back the thinking message")


def setup(bot: ImagineBot) -> None:
    """Adds /edit and /describe to the bot's tree."""
    from bot.discord.imagine import run_imagine  # /imagine's path, shared by /edit

    limits = bot.service.bot_limits.options

    async def edit(
        interaction: discord.Interaction,
        image: discord.Attachment,
        mask: discord.Attachment,
        prompt: str,
        strength: float | None = None,
    ) -> None:
        requested = RequestedOptions(prompt=prompt, strength=strength)
        await run_imagine(bot, interaction, requested, image=image, mask=mask)

    edit.__annotations__.update(
        prompt=app_commands.Range[str, 1, min(limits.max_prompt_chars, 6000)],
        strength=app_commands.Range[float, STRENGTH_MIN, STRENGTH_MAX] | None,
    )
    described = app_commands.describe(
        image="the picture to change (PNG, JPEG or WebP)",
        mask="white where the picture is redrawn, black where it stays; the picture's size",
        prompt="what to draw in the white of the mask",
        strength=f"how much of the white is redrawn ({STRENGTH_MIN:g} to {STRENGTH_MAX:g}; "
        "default 1: all of it)",
    )(edit)
    bot.tree.command(name="edit", description="Redraw the white part of a mask on your picture")(
        described
    )

    async def describe_command(
        interaction: discord.Interaction,
        image: discord.Attachment,
        model: app_commands.Range[str, 1, MAX_DESCRIBE_MODEL_CHARS] | None = None,
    ) -> None:
        await run_describe(bot, interaction, image, model.strip() if model else None)

    async def complete_model(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        here = await bot.service.limits_here(interaction.guild_id)
        nsfw = requester(interaction).channel_nsfw
        return model_choices(here, bot.service.config.catalog, nsfw, current)

    described_describe = app_commands.describe(
        image="the picture to describe (PNG, JPEG or WebP)",
        model="the model the prompts are for (default: the server's)",
    )(describe_command)
    completed = app_commands.autocomplete(model=complete_model)(described_describe)
    bot.tree.command(name="describe", description="Prompts that would draw a picture like yours")(
        completed
    )


async def run_describe(
    bot: ImagineBot, interaction: discord.Interaction, image: discord.Attachment, model: str | None
) -> None:
    """/describe: "thinking…", the picture read and described, the prompts posted in the
    channel (as Midjourney does: others learn from them); a refusal to its member alone."""
    await thinking(interaction)
    try:
        picture = await read_attachment(image, "image", bot.service.config.max_input_bytes)
        assert picture is not None
        described = await bot.service.describer.describe(
            picture, requester(interaction), model=model
        )
    except Exception:
        await retract(interaction)
        raise  # the tree's on_error words it, privately
    if described.refusal is not None or described.error is not None:
        await retract(interaction)
        await private(interaction, describe_refusal(described))
        return
    try:
        await interaction.followup.send(
            capped(describe_text(described, image.filename)), allowed_mentions=NO_PINGS
        )
    except DISCORD_ERRORS as error:
        log.warning("could not post /describe ◆ job %d ◆ %s", described.job_id, describe(error))


def describe_refusal(described: Described) -> str:
    if described.refusal is not None:
        return render.refused(described.refusal, described.error or "refused")
    return f"⚠️ {described.error}"


def describe_text(described: Described, filename: str) -> str:
    """The prompts, numbered (1️⃣ … best first), for a picture; where sdbot made it, the job."""
    where = f" · made by job {described.parent_job_id}" if described.parent_job_id else ""
    model = f" · for model {code(described.model, 40)}" if described.model else ""
    lines = [f"**prompts for {quoted(filename, 100)}**{model}{where} · job {described.job_id}"]
    marks = (*render.UPSCALES, "5️⃣", "6️⃣", "7️⃣", "8️⃣")
    for mark, prompt in zip(marks, described.prompts, strict=False):
        lines.append(f"{mark} {quoted(prompt, 300)}")
    return capped("\n".join(lines))  # eight long captions would pass Discord's 2,000
