"""The controls under a grid, /job, /cancel and /help, on the fake Discord with the real client,
the real worker process and the embedded model."""

from __future__ import annotations

import asyncio
from typing import Any

from bot.discord.client import ImagineBot
from bot.discord.render import CONTROLS, DELETE, ZOOM
from bot.imagine.service import ImagineService
from fake_discord import Channel, FakeDiscord, Guild, Message, Permission, User
from fake_discord.client import running, with_controls
from storage.models import JobKind, JobStatus

World = tuple[Guild, Channel, User]


async def _grid(fake: FakeDiscord, member: User, channel: Channel, **options: Any) -> Message:
    interaction = await fake.slash(member, channel, "imagine", **options)
    message = await fake.wait_for(lambda: with_controls(interaction.original), within=120)
    return message


def _join(fake: FakeDiscord, guild: Guild, name: str, permissions: int = 0) -> User:
    """A new member; with ``permissions``, through a role of their own."""
    user = fake.create_user(name)
    roles = [fake.create_role(guild, f"{name}'s role", permissions)] if permissions else []
    fake.add_member(guild, user, roles)
    return user


def _replies(fake: FakeDiscord, channel: Channel, to: Message) -> list[Message]:
    return [
        message
        for message in fake.channel_messages(channel)
        if message.message_reference
        and str(message.message_reference.get("message_id")) == str(to.id)
    ]


async def test_a_number_upscales_its_variant_once_in_a_reply_with_its_own_delete(
    fake_discord: FakeDiscord, bot: ImagineBot, world: World
) -> None:
    guild, channel, ada = world
    grid = await _grid(fake_discord, ada, channel, prompt="a red circle", seed=11, steps=8)
    await fake_discord.add_reaction(ada, grid, "2️⃣")

    def upscaled() -> Message | None:
        for reply in _replies(fake_discord, channel, grid):
            if with_controls(reply, controls=2):
                return reply
        return None

    reply = await fake_discord.wait_for(upscaled, within=120)
    assert reply.reacted == [ZOOM, DELETE]
    assert reply.attachments[0].image().size == (512, 512)  # a 256 px tile, redrawn at twice
    assert "upscale of #2 of job" in reply.content
    assert "seed 12 · 128×128 · 8 steps" in reply.content  # the options, at the upscaled size
    assert ada.id not in grid.reactions.get("2️⃣", [])  # the member's reaction reads as a press

    parent, child = await bot.service.storage.audit.list_jobs()
    assert (child.kind, child.parent_job_id, child.parent_variant) == (
        JobKind.UPSCALE.value,
        parent.id,
        2,
    )
    assert child.status is JobStatus.SUCCEEDED
    assert child.seeds == (12,)
    [image] = child.images
    assert image.watermark_verified
    assert (image.width, image.height) == (512, 512)

    # Pressing it again (or Discord replaying the event) starts nothing; the member is told.
    await fake_discord.add_reaction(ada, grid, "2️⃣")
    notice = await fake_discord.wait_for(
        lambda: next(
            (m for m in _replies(fake_discord, channel, grid) if "already" in m.content), None
        )
    )
    assert notice.content.startswith(f"<@{ada.id}> #2 was upscaled already, as job {child.id}")
    assert f"https://discord.com/channels/{guild.id}/{channel.id}/" in notice.content  # not @me
    assert notice.allowed_mentions == {"parse": [], "users": [ada.id], "replied_user": False}
    assert len(await bot.service.storage.audit.list_jobs()) == 2
    await fake_discord.wait_for(lambda: notice.deleted)  # it goes away by itself

    # ❌ on the upscale deletes that post only.
    await fake_discord.add_reaction(ada, reply, DELETE)
    await fake_discord.wait_for(lambda: reply.deleted)
    assert not grid.deleted
    assert await bot.service.storage.posts.job_for_message(reply.id) is None


async def test_reroll_draws_new_seeds_and_two_presses_at_once_start_one_job(
    fake_discord: FakeDiscord, bot: ImagineBot, world: World
) -> None:
    guild, channel, ada = world
    mod = _join(fake_discord, guild, "mod", Permission.MANAGE_MESSAGES)
    grid = await _grid(fake_discord, ada, channel, prompt="a blue square", seed=3, steps=8)
    # The requester and a moderator press 🔄 in the same instant: one reroll.
    await asyncio.gather(
        fake_discord.add_reaction(ada, grid, "🔄"), fake_discord.add_reaction(mod, grid, "🔄")
    )

    def rerolled() -> Message | None:
        for reply in _replies(fake_discord, channel, grid):
            if with_controls(reply):
                return reply
        return None

    reply = await fake_discord.wait_for(rerolled, within=120)
    assert reply.reacted == list(CONTROLS)  # a reroll is a grid with the controls of its own
    assert "reroll of job" in reply.content
    jobs = await bot.service.storage.audit.list_jobs()
    assert [job.kind for job in jobs] == [JobKind.IMAGINE.value, JobKind.REROLL.value]
    parent, child = jobs
    assert child.parent_job_id == parent.id
    assert child.status is JobStatus.SUCCEEDED
    assert set(child.seeds).isdisjoint(parent.seeds)
    assert (child.prompt, child.steps) == (parent.prompt, parent.steps)


async def test_who_may_use_the_controls_and_that_they_survive_a_restart(
    fake_discord: FakeDiscord, service: ImagineService, world: World
) -> None:
    guild, channel, ada = world
    bob = _join(fake_discord, guild, "bob")
    mod = _join(fake_discord, guild, "mod", Permission.MANAGE_MESSAGES)
    first = ImagineBot(service, edit_every_s=0.2, guild_ready_timeout=0.05)
    async with running(fake_discord, first):
        grid = await _grid(fake_discord, ada, channel, prompt="a yellow star", steps=6)

    # A new process: what the message shows is read from the database.
    second = ImagineBot(service, edit_every_s=0.2, guild_ready_timeout=0.05)
    async with running(fake_discord, second):
        # Someone else's presses are taken back; nothing starts, the post stays.
        for emoji in ("1️⃣", "🔄", DELETE):
            await fake_discord.add_reaction(bob, grid, emoji)
        await fake_discord.wait_for(
            lambda: all(bob.id not in grid.reactions.get(e, []) for e in ("1️⃣", "🔄", DELETE))
        )
        assert len(await service.storage.audit.list_jobs()) == 1
        assert not grid.deleted
        # Other emoji are the members' own.
        await fake_discord.add_reaction(bob, grid, "🎉")

        # The guild opens the controls to everyone: bob's reroll is made, for bob.
        await service.storage.guild_settings.update(guild.id, controls="everyone")
        await fake_discord.add_reaction(bob, grid, "🔄")
        reply = await fake_discord.wait_for(
            lambda: next(
                (m for m in _replies(fake_discord, channel, grid) if with_controls(m)), None
            ),
            within=120,
        )
        _, reroll = await service.storage.audit.list_jobs()
        assert (reroll.kind, reroll.user_id) == (JobKind.REROLL.value, bob.id)

        # ❌ stays with the requester and moderators, whatever the setting.
        await fake_discord.add_reaction(bob, grid, DELETE)
        await fake_discord.wait_for(lambda: bob.id not in grid.reactions.get(DELETE, []))
        assert not grid.deleted
        await fake_discord.add_reaction(mod, grid, DELETE)
        await fake_discord.wait_for(lambda: grid.deleted)
        assert not reply.deleted
        assert grid.reactions["🎉"] == [bob.id]


async def test_job_shows_the_settings_and_posts_the_grid_again_with_controls(
    fake_discord: FakeDiscord, bot: ImagineBot, world: World
) -> None:
    guild, channel, ada = world
    bob = _join(fake_discord, guild, "bob")
    await _grid(fake_discord, ada, channel, prompt="a green tree", seed=7, steps=6, sampler="euler")
    blocked = await fake_discord.slash(ada, channel, "imagine", prompt="a nude child")
    await fake_discord.wait_for(lambda: blocked.original)
    made, refused = await bot.service.storage.audit.list_jobs()

    interaction = await fake_discord.slash(bob, channel, "job", id=made.id)
    again = await fake_discord.wait_for(lambda: with_controls(interaction.original))
    assert not interaction.ephemeral
    assert again.content.startswith(f"**a green tree** · job {made.id}\nby <@{ada.id}>")
    assert "6 steps · guidance" in again.content
    assert "sampler euler · seeds 7, 8, 9, 10" in again.content
    assert again.allowed_mentions == {"parse": []}
    assert again.attachments[0].image().size == (512, 512)
    linked = await bot.service.storage.posts.job_for_message(again.id)
    assert linked is not None
    assert linked[0].id == made.id

    # A blocked prompt is for its requester and the moderators only.
    hidden = await fake_discord.slash(bob, channel, "job", id=refused.id)
    answer = await fake_discord.wait_for(lambda: hidden.original)
    assert hidden.ephemeral
    assert answer.content == (
        f"⚠️ job {refused.id} was blocked; only its requester and moderators can see it"
    )
    own = await fake_discord.slash(ada, channel, "job", id=refused.id)
    shown = await fake_discord.wait_for(lambda: own.original)
    assert own.ephemeral
    assert "**a nude child**" in shown.content
    assert "· blocked" in shown.content

    # Another server's job does not exist here.
    other = fake_discord.create_guild("elsewhere")
    there = fake_discord.create_channel(other, "general")
    fake_discord.add_member(other, ada)
    elsewhere = await fake_discord.slash(ada, there, "job", id=made.id)
    missing = await fake_discord.wait_for(lambda: elsewhere.original)
    assert missing.content == f"⚠️ there is no job {made.id} in this server"

    # In DMs, one's own jobs only.
    private = await fake_discord.slash(
        ada, fake_discord.dm_channel(ada), "imagine", prompt="a nude child"
    )
    await fake_discord.wait_for(lambda: private.original)
    dm_job = (await bot.service.storage.audit.list_jobs())[-1]
    assert dm_job.guild_id is None
    snooping = await fake_discord.slash(bob, fake_discord.dm_channel(bob), "job", id=dm_job.id)
    answer = await fake_discord.wait_for(lambda: snooping.original)
    assert answer.content == f"⚠️ there is no job {dm_job.id} here"
    own_dm = await fake_discord.slash(ada, fake_discord.dm_channel(ada), "job", id=dm_job.id)
    assert "**a nude child**" in (await fake_discord.wait_for(lambda: own_dm.original)).content


async def test_cancel_stops_the_callers_queued_job_and_only_theirs(
    fake_discord: FakeDiscord, bot: ImagineBot, world: World
) -> None:
    guild, channel, ada = world
    bob = _join(fake_discord, guild, "bob")
    first = await fake_discord.slash(ada, channel, "imagine", prompt="a long one", steps=50)
    await fake_discord.wait_for(
        lambda: first.original and "drawing" in first.original.content, within=60
    )
    second = await fake_discord.slash(ada, channel, "imagine", prompt="a queued one", steps=6)
    await fake_discord.wait_for(lambda: second.original and "queued" in second.original.content)
    _, queued = await bot.service.storage.audit.list_jobs()

    theirs = await fake_discord.slash(bob, channel, "cancel", id=queued.id)
    refusal = await fake_discord.wait_for(lambda: theirs.original)
    assert refusal.content == f"⚠️ job {queued.id} is not yours to cancel"
    nothing = await fake_discord.slash(bob, channel, "cancel")
    assert (await fake_discord.wait_for(lambda: nothing.original)).content == (
        "⚠️ you have no queued or running job here"
    )

    mine = await fake_discord.slash(ada, channel, "cancel")  # the latest: the queued one
    answer = await fake_discord.wait_for(lambda: mine.original)
    assert mine.ephemeral
    assert answer.content == f"✅ job {queued.id} was cancelled before it started"
    await fake_discord.wait_for(
        lambda: second.original and "❌ cancelled" in second.original.content, within=30
    )
    cancelled = await bot.service.storage.audit.get_job(queued.id)
    assert cancelled is not None
    assert cancelled.status is JobStatus.CANCELLED
    await fake_discord.wait_for(lambda: with_controls(first.original), within=120)


async def test_help_and_imagine_follow_the_guilds_own_limits(
    fake_discord: FakeDiscord, bot: ImagineBot, world: World
) -> None:
    guild, channel, ada = world
    await bot.service.storage.guild_settings.update(guild.id, max_steps=12, user_images_per_hour=30)
    interaction = await fake_discord.slash(ada, channel, "help")
    text = (await fake_discord.wait_for(lambda: interaction.original)).content
    assert interaction.ephemeral
    assert "steps 1–12 (default 12)" in text
    assert "- models (`model`, `aspect`): `embedded` (default): 1:1 64×64" in text
    synced = next(command for (_, name), command in fake_discord.commands.items()
                  if name == "imagine")  # fmt: skip
    aspect = next(option for option in synced["options"] if option["name"] == "aspect")
    assert [choice["value"] for choice in aspect["choices"]] == [
        "1:1",
        "3:2",
        "2:3",
        "16:9",
        "9:16",
    ]
    assert "30 standard images an hour for each member" in text
    assert "(for the requester and moderators)" in text

    too_many = await fake_discord.slash(ada, channel, "imagine", prompt="a cat", steps=20)
    answer = await fake_discord.wait_for(lambda: too_many.original)
    assert answer.content == "⚠️ steps must be a whole number from 1 to 12, got 20"
    # A bad option is refused before a record.
    assert await bot.service.storage.audit.list_jobs() == []


async def test_a_graceful_stop_lets_the_running_job_post_and_refuses_new_ones(
    fake_discord: FakeDiscord, bot: ImagineBot, world: World
) -> None:
    _, channel, ada = world
    running_one = await fake_discord.slash(ada, channel, "imagine", prompt="a red moon", steps=40)
    await fake_discord.wait_for(
        lambda: running_one.original and "drawing" in running_one.original.content, within=60
    )
    waiting = await fake_discord.slash(ada, channel, "imagine", prompt="a blue moon", steps=6)
    await fake_discord.wait_for(lambda: waiting.original and "queued" in waiting.original.content)

    unfinished = await bot.drain(60)
    assert unfinished == 0
    assert with_controls(running_one.original) is not None  # drawn and posted before the stop
    late = await fake_discord.slash(ada, channel, "imagine", prompt="a green moon")
    refusal = await fake_discord.wait_for(lambda: late.original)
    assert late.ephemeral
    assert refusal.content == "🔁 sdbot is restarting; try again in a minute"
    done, queued = await bot.service.storage.audit.list_jobs()
    assert done.status is JobStatus.SUCCEEDED
    assert queued.status is JobStatus.QUEUED  # left for the next start, which resumes it
