"""A restart as members see it, on the fake Discord with the real discord.py client, the real
service and worker process and the embedded model: the "queued" message a stopped bot left says
where the resumed job's result went, and a job followed by a client that `sdbot run` replaced
is posted through the new client."""

from __future__ import annotations

import asyncio

from bot.app import open_service, open_storage
from bot.discord.client import ImagineBot
from bot.discord.render import CONTROLS
from bot.imagine.service import ImagineService
from bot.settings import Settings
from fake_discord import Channel, FakeDiscord, Guild, Message, User
from fake_discord.client import running, start_client, with_controls
from storage.models import JobStatus
from storage.records import JobRecord

World = tuple[Guild, Channel, User]
CHANNEL_EDIT = "PATCH /channels/{channel_id}/messages/{message_id}"


def _client(service: ImagineService) -> ImagineBot:
    return ImagineBot(service, edit_every_s=0.2, notice_s=5.0, guild_ready_timeout=0.05)


async def _ended(service: ImagineService, job_id: int, within: float = 120.0) -> JobRecord:
    """The job's record once it ended (the database is the only witness while no client runs)."""
    async with asyncio.timeout(within):
        while True:
            record = await service.storage.audit.get_job(job_id)
            assert record is not None
            if record.status.is_terminal:
                return record
            await asyncio.sleep(0.1)


async def test_after_a_restart_the_old_status_message_links_to_the_result(
    fake_discord: FakeDiscord, service: ImagineService, settings: Settings, world: World
) -> None:
    guild, channel, ada = world
    # The first run of the bot, with its own service, stops before the job starts (its queue
    # holds, as on SIGTERM), so that the job is left open with its "queued" message.
    async with open_storage(settings) as storage, open_service(settings, storage) as first:
        await first.queue.hold()
        before = _client(first)
        async with running(fake_discord, before):
            asked = await fake_discord.slash(
                ada, channel, "imagine", prompt="a green triangle", steps=4
            )
            status = await fake_discord.wait_for(lambda: asked.original, within=60)
            [record] = await first.storage.audit.list_jobs()
            # SIGTERM, as `sdbot run` handles it: nothing is running, the queued job stays open.
            assert await before.drain(grace_s=5) == 0
            first.leave_jobs_open()
        # The process would end here, and with it the task that followed the job.
        following = before.delivery.following[record.id]
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)
    assert status.content.startswith(f"**a green triangle** · job {record.id}\nqueued")
    left = await service.storage.audit.get_job(record.id)
    assert left is not None
    assert left.status is JobStatus.QUEUED

    # The next run: a new client and service resume the open job, as `sdbot run` does.
    after = _client(service)
    async with running(fake_discord, after):
        assert await service.recover(after.post_recovered) == 1

        def resumed() -> Message | None:
            for message in fake_discord.channel_messages(channel):
                if message.id != status.id and with_controls(message):
                    return message
            return None

        result = await fake_discord.wait_for(resumed, within=120)
        link = f"https://discord.com/channels/{guild.id}/{channel.id}/{result.id}"
        await fake_discord.wait_for(lambda: link in status.content, within=60)
    assert result.content.startswith(
        f"<@{ada.id}> **a green triangle** · job {record.id} (resumed after a restart)\n"
    )
    assert result.attachments
    assert status.content == (
        f"**a green triangle** · job {record.id}\n🔁 sdbot restarted meanwhile; the result: {link}"
    )
    assert not status.attachments
    finished = await service.storage.audit.get_job(record.id)
    assert finished is not None
    assert finished.status is JobStatus.SUCCEEDED
    linked = await service.storage.posts.job_for_message(result.id)
    assert linked is not None
    assert linked[0].id == record.id


async def test_a_job_followed_by_a_replaced_client_is_posted_through_its_successor(
    fake_discord: FakeDiscord, service: ImagineService, world: World
) -> None:
    _, channel, ada = world
    before = _client(service)
    before.retry_backoff_s = 0.05  # tries at 0, 0.05 and 0.15 s
    task = await start_client(fake_discord, before)
    asked = await fake_discord.slash(ada, channel, "imagine", prompt="a yellow moon", steps=4)
    status = await fake_discord.wait_for(lambda: asked.original, within=60)
    [record] = await service.storage.audit.list_jobs()
    # `sdbot run` restarts a client that stopped: the old one is closed (its session too)...
    await before.close()
    await asyncio.wait_for(task, 60)
    closed_at = len(fake_discord.calls)
    # ... and the job ends while no client is connected, before the new one exists.
    ended = await _ended(service, record.id)
    assert ended.status is JobStatus.SUCCEEDED
    # `sdbot run` pauses before it starts the next client (1 s, up to a minute after repeated
    # failures): longer than the bot's tries at posting, made quick here.
    await asyncio.sleep(1.0)
    after = _client(service)
    before.successor = after  # what `sdbot run` does for the client it starts next
    async with running(fake_discord, after):
        grid = await fake_discord.wait_for(lambda: with_controls(status), within=120)
    assert grid.content.startswith(f"**a yellow moon** · job {record.id}\n1️⃣–4️⃣ upscale")
    assert "\nseeds " in grid.content
    assert grid.reacted == list(CONTROLS)
    posted = [
        call
        for call in fake_discord.calls[closed_at:]
        if call.route == CHANNEL_EDIT and call.files and call.ok
    ]
    assert len(posted) == 1  # through the new client's session: the old one's is closed
    assert [m for m in fake_discord.channel_messages(channel) if m.id != status.id] == []
