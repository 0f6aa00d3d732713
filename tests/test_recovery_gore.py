"""A gore job left queued across a restart, after its guild came to refuse gore everywhere: the
next start ends it as blocked under the policy of now (not the verdict it was queued with), in
the audit log and for its member, while the other open job is resumed. On the fake Discord with
the real client, service, worker process and embedded model, as ``test_discord_recovery``."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY

from bot.app import open_service, open_storage
from bot.imagine.outcomes import ImagineOutcome
from bot.imagine.records import verdict_of
from bot.imagine.service import ImagineService
from bot.imagine.types import Requester
from bot.settings import Settings
from fake_discord import Channel, FakeDiscord, Guild, Interaction, Message, User
from fake_discord.client import running, with_controls
from generation.options import RequestedOptions
from moderation.reasons import GORE_EVERYWHERE
from storage import migrations
from storage.models import JobStatus, Verdict
from tests.conftest import REDIS_URL
from tests.test_discord_recovery import _client
from tests.test_gore_policy import GORE

World = tuple[Guild, Channel, User]


def _gore_blocks() -> float:
    found = REGISTRY.get_sample_value(
        "sdbot_prompt_blocks_total", {"rule": "gore", "layer": "guild"}
    )
    return found or 0.0


async def _original(fake_discord: FakeDiscord, asked: Interaction) -> Message:
    return await fake_discord.wait_for(lambda: asked.original, within=60)


async def test_a_gore_job_recovered_after_the_guild_blocks_gore_ends_blocked(
    fake_discord: FakeDiscord, service: ImagineService, settings: Settings, world: World
) -> None:
    guild, _, ada = world
    lounge = fake_discord.create_channel(guild, "lounge", nsfw=True)
    # The first run queues a gore prompt (force-safe in an age-restricted channel) and a plain
    # one, then stops before either starts: both stay open with their "queued" messages.
    async with open_storage(settings) as storage, open_service(settings, storage) as first:
        await first.queue.hold()
        before = _client(first)
        async with running(fake_discord, before):
            asked = [
                await fake_discord.slash(ada, lounge, "imagine", prompt=prompt, steps=2)
                for prompt in (GORE, "a green triangle")
            ]
            statuses = [await _original(fake_discord, one) for one in asked]
            gory, plain = sorted(await first.storage.audit.list_jobs(), key=lambda job: job.id)
            assert await asyncio.wait_for(before.drain(grace_s=5), 120) == 0
            first.leave_jobs_open()
        for job in (gory, plain):
            following = before.delivery.following[job.id]
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)
    assert (gory.status, gory.verdict) == (JobStatus.QUEUED, Verdict.FORCE_SAFE.value)
    assert verdict_of(gory).gore  # its record says why it reads as gore

    # Meanwhile the guild refuses gore everywhere.
    await service.storage.guild_settings.update(guild.id, gore_policy="block")
    blocks = _gore_blocks()

    after = _client(service)
    async with running(fake_discord, after):
        # Ceilings on every wait, so that a hang names where it stopped (one CI run under load
        # timed out at pytest's 300 s with no clue where).
        resumed = await asyncio.wait_for(service.recover(after.post_recovered), 120)
        assert resumed == 1  # the plain job alone

        def posted(job_id: int) -> Message | None:
            for message in fake_discord.channel_messages(lounge):
                if (
                    message.id not in {s.id for s in statuses}
                    and f"job {job_id} " in message.content
                ):
                    return message
            return None

        told = await fake_discord.wait_for(lambda: posted(gory.id), within=60)
        drawn = await fake_discord.wait_for(
            lambda: with_controls(posted(plain.id)) if posted(plain.id) else None, within=120
        )
        link = f"https://discord.com/channels/{guild.id}/{lounge.id}/{told.id}"
        await fake_discord.wait_for(lambda: link in statuses[0].content, within=60)
        await asyncio.wait_for(service.recovery.wait(), 120)

    assert told.content.startswith(f"<@{ada.id}> ")
    assert told.content.endswith(f"❌ blocked: {GORE_EVERYWHERE}")
    assert not told.attachments
    assert drawn.attachments
    ended = await service.storage.audit.get_job(gory.id)
    assert ended is not None
    assert (ended.status, ended.error) == (JobStatus.BLOCKED, GORE_EVERYWHERE)
    resumed = await service.storage.audit.get_job(plain.id)
    assert resumed is not None
    assert resumed.status is JobStatus.SUCCEEDED
    assert _gore_blocks() - blocks == 1  # the guild's word, counted as the gore rule


@pytest.mark.redis
async def test_a_gore_job_redis_still_holds_is_taken_out_when_the_guild_blocks_gore(
    settings: Settings, redis_prefix: str
) -> None:
    """With Redis the queued job outlives the bot: the next start reads it under the policy of
    now too, ends it blocked and takes it out of Redis, so no worker ever draws it."""
    await asyncio.to_thread(migrations.upgrade, settings.effective_database_url())
    settings = settings.model_copy(update={"redis_url": REDIS_URL, "redis_prefix": redis_prefix})
    guild_id = 4242
    async with open_storage(settings) as storage:
        # No worker runs: the job waits in Redis. The channel is age-restricted, so the gore
        # prompt is queued (force-safe) under the default policy.
        async with open_service(settings, storage) as first:
            submitted = await first.submit(
                RequestedOptions(prompt=GORE, steps=2, seed=1),
                Requester("test", guild_id=guild_id, user_id=7, channel_nsfw=True),
            )
            assert not isinstance(submitted, ImagineOutcome), submitted
            assert len(await first.queue.positions()) == 1
            first.leave_jobs_open()
        [left] = await storage.audit.open_jobs()
        assert (left.status, left.verdict) == (JobStatus.QUEUED, Verdict.FORCE_SAFE.value)

        await storage.guild_settings.update(guild_id, gore_policy="block")
        outcomes: list[ImagineOutcome] = []
        async with open_service(settings, storage) as restarted:
            assert await restarted.recover(outcomes.append) == 0
            await asyncio.wait_for(restarted.wait_recovered(), 60)
            assert await restarted.queue.positions() == {}  # no worker can take it any more
        [outcome] = outcomes
        assert (outcome.job_id, outcome.status) == (left.id, JobStatus.BLOCKED)
        ended = await storage.audit.get_job(left.id)
        assert ended is not None
        assert (ended.status, ended.error) == (JobStatus.BLOCKED, GORE_EVERYWHERE)
