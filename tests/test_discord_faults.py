"""What Discord and the network do to a job's messages, on the fake Discord with the real
discord.py client, the real worker process and the embedded model: the job is drawn and posted
whatever happens to its status message."""

from __future__ import annotations

import dataclasses
from typing import Any

from bot.discord.client import ImagineBot
from bot.discord.render import CONTROLS, DELETE
from fake_discord import Channel, FakeDiscord, Guild, Message, User
from fake_discord.client import with_controls
from generation.limits import Limits
from storage.models import JobStatus, TermKind

World = tuple[Guild, Channel, User]
ORIGINAL = "PATCH /webhooks/{application_id}/{token}/messages/{message_id}"
CHANNEL_POST = "POST /channels/{channel_id}/messages"


def _new_post(fake: FakeDiscord, channel: Channel) -> Message | None:
    """The result posted as a new channel message (not the interaction's own)."""
    for message in fake.channel_messages(channel):
        if message.interaction_id is None and with_controls(message):
            return message
    return None


async def _drawing(fake: FakeDiscord, member: User, channel: Channel, **options: Any) -> Message:
    interaction = await fake.slash(member, channel, "imagine", **options)
    await fake.wait_for(
        lambda: interaction.original and "drawing" in interaction.original.content, within=120
    )
    assert interaction.original is not None
    return interaction.original


async def test_network_errors_on_progress_edits_never_fail_the_job(
    fake_discord: FakeDiscord, bot: ImagineBot, world: World
) -> None:
    _, channel, ada = world
    bot.request_timeout_s = 1.0
    # Edits lose their connection, one stalls past the bot's timeout, one gets a 502.
    fake_discord.drop(ORIGINAL, phase="request", count=2)
    fake_discord.stall(ORIGINAL, seconds=5, count=1)
    fake_discord.drop(ORIGINAL, phase="body", count=1)
    interaction = await fake_discord.slash(ada, channel, "imagine", prompt="a red circle", steps=12)
    grid = await fake_discord.wait_for(lambda: with_controls(interaction.original), within=180)
    assert grid.attachments
    [record] = await bot.service.storage.audit.list_jobs()
    assert record.status is JobStatus.SUCCEEDED


async def test_a_deleted_status_message_gets_the_result_as_a_new_message(
    fake_discord: FakeDiscord, bot: ImagineBot, world: World
) -> None:
    _, channel, ada = world
    status = await _drawing(fake_discord, ada, channel, prompt="a green square", steps=30)
    fake_discord.delete_message(status)  # a moderator removed it: edits get 10008
    posted = await fake_discord.wait_for(lambda: _new_post(fake_discord, channel), within=180)
    assert posted.content.startswith(f"<@{ada.id}> **a green square**")
    assert posted.reacted == list(CONTROLS)
    [record] = await bot.service.storage.audit.list_jobs()
    assert record.status is JobStatus.SUCCEEDED


async def test_an_edit_refused_for_age_posts_a_new_message_and_points_to_it(
    fake_discord: FakeDiscord, bot: ImagineBot, world: World
) -> None:
    _, channel, ada = world
    status = await _drawing(fake_discord, ada, channel, prompt="a blue star", steps=30)
    fake_discord.edit_age_limit_s = 0.0  # every edit now gets 30046
    posted = await fake_discord.wait_for(lambda: _new_post(fake_discord, channel), within=180)
    assert "a blue star" in posted.content
    assert any(call.code == 30046 for call in fake_discord.calls)
    fake_discord.edit_age_limit_s = 3600.0
    assert "drawing" in status.content or "posted as a new message" in status.content


async def test_a_failed_result_post_is_tried_again_then_goes_to_the_channel(
    fake_discord: FakeDiscord, bot: ImagineBot, world: World
) -> None:
    _, channel, ada = world
    bot.request_timeout_s = 1.0
    status = await _drawing(fake_discord, ada, channel, prompt="a yellow moon", steps=30)
    # From now on the interaction's message takes no edit: every try stalls or drops.
    fake_discord.stall(ORIGINAL, seconds=3, count=2)
    fake_discord.drop(ORIGINAL, phase="request", count=100)
    posted = await fake_discord.wait_for(lambda: _new_post(fake_discord, channel), within=180)
    assert posted.content.startswith(f"<@{ada.id}> **a yellow moon**")
    assert not status.attachments
    [record] = await bot.service.storage.audit.list_jobs()
    assert record.status is JobStatus.SUCCEEDED
    linked = await bot.service.storage.posts.job_for_message(posted.id)
    assert linked is not None


async def test_a_dropped_channel_post_is_tried_again(
    fake_discord: FakeDiscord, bot: ImagineBot, world: World
) -> None:
    _, channel, ada = world
    status = await _drawing(fake_discord, ada, channel, prompt="a white cube", steps=30)
    fake_discord.delete_message(status)
    fake_discord.drop(CHANNEL_POST, phase="request", count=1)
    posted = await fake_discord.wait_for(lambda: _new_post(fake_discord, channel), within=180)
    assert "a white cube" in posted.content
    assert len([c for c in fake_discord.calls if c.route == CHANNEL_POST]) >= 2  # tried again


async def test_a_refusal_of_a_long_prompt_fits_in_one_message(
    fake_discord: FakeDiscord, bot: ImagineBot, world: World
) -> None:
    guild, channel, ada = world
    words = [f"zq{index:03d}word" for index in range(90)]  # 90 of the guild's own entries
    for word in words:
        await bot.service.storage.terms.add(guild.id, TermKind.BLOCK, word)
    prompt = " ".join(words)
    assert len(prompt) <= 1000
    interaction = await fake_discord.slash(ada, channel, "imagine", prompt=prompt)
    message = await fake_discord.wait_for(lambda: interaction.original, within=30)
    assert interaction.ephemeral
    assert message.content.startswith("🚫 This prompt was not accepted: ")
    assert len(message.content) <= 2000
    # As many reasons as fit, then how many more (all 90 are in the audit log).
    shown = message.content.count("is not allowed")
    assert message.content.endswith(f"; and {90 - shown} more")


async def test_job_answers_first_and_uploads_the_picture_as_a_follow_up(
    fake_discord: FakeDiscord, bot: ImagineBot, world: World
) -> None:
    _, channel, ada = world
    first = await fake_discord.slash(ada, channel, "imagine", prompt="a red circle", steps=4)
    await fake_discord.wait_for(lambda: with_controls(first.original), within=120)
    [record] = await bot.service.storage.audit.list_jobs()
    shown = await fake_discord.slash(ada, channel, "job", id=record.id)
    await shown.acknowledged.wait()
    assert shown.response_type == 5  # deferred: no upload inside Discord's 3 s
    posted = await fake_discord.wait_for(lambda: with_controls(shown.messages[-1]), within=60)
    assert posted.attachments
    assert "4 steps" in posted.content


async def test_a_dm_is_refused_by_default_and_allowed_by_the_setting(
    fake_discord: FakeDiscord, bot: ImagineBot, world: World
) -> None:
    _, _, ada = world
    dm = fake_discord.dm_channel(ada)
    refused = await fake_discord.slash(ada, dm, "imagine", prompt="a red circle", steps=4)
    answer = await fake_discord.wait_for(lambda: refused.original, within=30)
    assert refused.ephemeral
    assert "does not draw in direct messages" in answer.content
    [record] = await bot.service.storage.audit.list_jobs()
    assert record.status is JobStatus.REFUSED

    bot.service.gatekeeper.direct_messages = True  # SDBOT_DISCORD_ALLOW_DMS=true
    allowed = await fake_discord.slash(ada, dm, "imagine", prompt="a red circle", steps=4)
    grid = await fake_discord.wait_for(lambda: with_controls(allowed.original), within=120)
    assert grid.attachments


async def test_a_thread_takes_its_parent_channels_age_restriction(
    fake_discord: FakeDiscord, bot: ImagineBot, world: World
) -> None:
    guild, _, ada = world
    adults = fake_discord.create_channel(guild, "adults", nsfw=True)
    thread = fake_discord.create_thread(adults, "night drawings")
    interaction = await fake_discord.slash(ada, thread, "imagine", prompt="a red circle", steps=4)
    await fake_discord.wait_for(lambda: with_controls(interaction.original), within=120)
    [record] = await bot.service.storage.audit.list_jobs()
    assert record.channel_nsfw
    assert record.channel_id == thread.id


async def test_a_cancelled_job_says_why_and_can_be_deleted(
    fake_discord: FakeDiscord, bot: ImagineBot, world: World
) -> None:
    _, channel, ada = world
    running = await fake_discord.slash(ada, channel, "imagine", prompt="a red circle", steps=40)
    waiting = await fake_discord.slash(ada, channel, "imagine", prompt="a blue circle", steps=4)
    await fake_discord.wait_for(lambda: waiting.original, within=30)
    jobs = await bot.service.storage.audit.list_jobs()
    cancel = await fake_discord.slash(ada, channel, "cancel", id=jobs[-1].id)
    await fake_discord.wait_for(lambda: cancel.original, within=30)

    def cancelled() -> Message | None:
        post = waiting.original
        if post is not None and "❌ cancelled" in post.content and DELETE in post.reacted:
            return post
        return None

    post = await fake_discord.wait_for(cancelled, within=60)
    assert "(by its requester)" in post.content
    await fake_discord.wait_for(lambda: with_controls(running.original), within=180)


async def test_a_rate_limit_refusal_of_a_long_prompt_fits_in_one_message(
    fake_discord: FakeDiscord, bot: ImagineBot, world: World
) -> None:
    guild, channel, ada = world
    limits = Limits(user_units_per_hour=0.01, user_burst=0.1)
    bot.service.admission.bot_limits = dataclasses.replace(bot.service.bot_limits, rates=limits)
    await bot.service.queue.admit(guild.id, ada.id, 0.1, limits)  # the saved-up tenth, spent
    await bot.service.queue.release(guild.id, ada.id)
    prompt = ", ".join(f"lighthouse {number}" for number in range(100, 180))[:1000]
    interaction = await fake_discord.slash(ada, channel, "imagine", prompt=prompt)
    message = await fake_discord.wait_for(lambda: interaction.original, within=30)
    assert interaction.ephemeral
    assert message.content.startswith("⏳ you can make this in ")
    assert len(message.content) <= 2000
    [record] = await bot.service.storage.audit.list_jobs()
    assert record.status is JobStatus.REFUSED
    assert record.prompt == prompt
    assert len(prompt) == 1000
