"""The Discord bot on the fake Discord, with the real discord.py client, the real worker
process and the embedded model: /imagine from a member to a posted grid with its controls."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from bot.discord.client import ImagineBot
from bot.discord.render import CONTROLS
from fake_discord import Channel, FakeDiscord, Guild, Message, User
from fake_discord.client import with_controls as _posted
from generation.limits import Limits
from storage.models import JobStatus


async def test_imagine_answers_at_once_then_posts_the_grid_with_its_controls(
    fake_discord: FakeDiscord, bot: ImagineBot, world: tuple[Guild, Channel, User]
) -> None:
    guild, channel, ada = world
    interaction = await fake_discord.slash(
        ada, channel, "imagine", prompt="@everyone a red circle", seed=3
    )
    message = await fake_discord.wait_for(lambda: _posted(interaction.original), within=120)
    assert interaction.ack_latency is not None
    assert interaction.ack_latency < 2.0
    assert not interaction.ephemeral
    [attachment] = message.attachments
    assert attachment.filename.endswith(".png")
    assert attachment.image().size == (512, 512)  # four 256 px variants
    assert message.reacted == list(CONTROLS)
    assert message.allowed_mentions == {"parse": []}  # the echoed @everyone pings no one
    # The options chosen are echoed: size, steps, guidance (the sampler only when not default),
    # the model by its name in the catalog.
    assert (
        "seeds 3, 4, 5, 6 · 64×64 · 20 steps · guidance 3 · sampler dpmpp · model `embedded`"
    ) in message.content  # the embedded model's own defaults
    assert message.edits >= 2  # queued → drawing → the grid

    [record] = await bot.service.storage.audit.list_jobs()
    assert (record.status, record.guild_id, record.user_id) == (
        JobStatus.SUCCEEDED,
        guild.id,
        ada.id,
    )
    assert f"job {record.id}" in message.content
    linked = await bot.service.storage.posts.job_for_message(message.id)
    assert linked is not None
    assert linked[0].id == record.id


@pytest.mark.parametrize(
    ("options", "answer"),
    [
        ({"prompt": "a nude child"}, "🚫 This prompt was not accepted: "),
        ({"prompt": "a red circle", "steps": 400}, "⚠️ steps must be a whole number from 1 to 50"),
        # The member's own option is named: guidance (not cfg). The embedded model draws
        # well at 64 px only (1024 took 76 s and stalled the worker): its one size, 1:1.
        ({"prompt": "a red circle", "aspect": "16:9"}, "⚠️ aspect must be one of 1:1, got '16:9'"),
        ({"prompt": "a red circle", "model": "sd15"}, "⚠️ model must be one of embedded, got"),
        ({"prompt": "a red circle", "guidance": 30.0}, "⚠️ guidance must be a number from 0 to 20"),
    ],
)
async def test_what_is_not_accepted_gets_an_ephemeral_reason(
    fake_discord: FakeDiscord,
    bot: ImagineBot,
    world: tuple[Guild, Channel, User],
    options: dict[str, Any],
    answer: str,
) -> None:
    _, channel, ada = world
    # Discord's client would not send what is outside the command's ranges; a modified one can.
    interaction = await fake_discord.slash(ada, channel, "imagine", checked=False, **options)
    message = await fake_discord.wait_for(lambda: interaction.original, within=30)
    assert interaction.ephemeral
    assert message.content.startswith(answer), message.content


async def test_a_rate_limited_member_is_told_the_wait(
    fake_discord: FakeDiscord, bot: ImagineBot, world: tuple[Guild, Channel, User]
) -> None:
    guild, channel, ada = world
    limits = Limits(user_units_per_hour=0.01, user_burst=0.1)
    bot.service.admission.bot_limits = dataclasses.replace(bot.service.bot_limits, rates=limits)
    await bot.service.queue.admit(guild.id, ada.id, 0.1, limits)  # the saved-up tenth, spent
    await bot.service.queue.release(guild.id, ada.id)
    interaction = await fake_discord.slash(ada, channel, "imagine", prompt="a red circle")
    message = await fake_discord.wait_for(lambda: interaction.original, within=30)
    assert interaction.ephemeral
    assert message.content.startswith("⏳ you can make this in ")
    assert message.content.endswith("(your limit is 0.01 standard images an hour)")
    [record] = await bot.service.storage.audit.list_jobs()
    assert record.status is JobStatus.REFUSED


async def test_after_the_token_expires_the_grid_goes_to_the_channel_mentioning_the_member(
    fake_discord: FakeDiscord, bot: ImagineBot, world: tuple[Guild, Channel, User]
) -> None:
    _, channel, ada = world
    interaction = await fake_discord.slash(
        ada, channel, "imagine", prompt="a blue square", steps=50
    )
    await fake_discord.wait_for(
        lambda: interaction.original and "drawing" in interaction.original.content, within=120
    )
    fake_discord.advance(16 * 60)  # a long queue: the interaction token is 15 min old

    def posted() -> Message | None:
        for message in fake_discord.channel_messages(channel):
            if message.interaction_id is None and _posted(message):
                return message
        return None

    message = await fake_discord.wait_for(posted, within=120)
    assert message.content.startswith(f"<@{ada.id}> **a blue square**")
    assert message.allowed_mentions == {"parse": [], "users": [ada.id]}
    [record] = await bot.service.storage.audit.list_jobs()
    assert record.status is JobStatus.SUCCEEDED
    linked = await bot.service.storage.posts.job_for_message(message.id)
    assert linked is not None
    assert linked[0].id == record.id
