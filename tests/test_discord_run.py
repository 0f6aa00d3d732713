"""`sdbot run` as an operator starts it, against the fake Discord: a refused first gateway
connect, start-up recovery of an open job, /imagine end to end, retention of an old job's prompt
(SDBOT_RETENTION_DAYS) and a clean SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import timedelta
from pathlib import Path

from sqlalchemy import update

from bot.app import open_storage
from bot.discord.render import CONTROLS
from bot.settings import Settings
from fake_discord import FakeDiscord, Message
from storage import migrations
from storage.models import Job, JobStatus, Verdict, utcnow
from storage.records import NewJob
from tests.processes import read_log, wait_for_line


async def test_sdbot_run_serves_imagine_and_resumes_open_jobs(
    fake_discord: FakeDiscord, settings: Settings, tmp_path: Path
) -> None:
    guild = fake_discord.create_guild("art club")
    channel = fake_discord.create_channel(guild, "images")
    ada = fake_discord.create_user("ada")
    fake_discord.add_member(guild, ada)
    await asyncio.to_thread(migrations.upgrade, settings.effective_database_url())
    async with open_storage(settings) as storage:  # a job the last run of the bot left queued
        left = await storage.audit.create_job(
            NewJob(
                source="discord", guild_id=guild.id, channel_id=channel.id, user_id=ada.id,
                prompt="a green triangle", negative_prompt="", steps=4, guidance_scale=3.0,
                width=64, height=64, variants=4, scheduler="dpmpp", model=settings.model,
                seeds=(1, 2, 3, 4), verdict=Verdict.ALLOWED,
            )
        )  # fmt: skip
        old = await storage.audit.create_job(  # blocked ten days ago: its prompt is past keeping
            NewJob(
                source="discord", guild_id=guild.id, channel_id=channel.id, user_id=ada.id,
                prompt="an old forgotten square", negative_prompt="", steps=4, guidance_scale=3.0,
                width=64, height=64, variants=4, scheduler="dpmpp", model=settings.model,
                seeds=(1, 2, 3, 4), verdict=Verdict.BLOCKED, verdict_reasons=("a test",),
            )
        )  # fmt: skip
        async with storage.sessions.begin() as session:
            ended = utcnow() - timedelta(days=10)
            await session.execute(update(Job).where(Job.id == old).values(finished_at=ended))
    fake_discord.gateway.refuse_connects = 1  # the first gateway connect fails

    log = tmp_path / "run.log"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SDBOT_")} | {
        "SDBOT_MODEL": settings.model,
        "SDBOT_DEVICE": "cpu",
        "SDBOT_DATA_DIR": str(settings.data_dir),
        "SDBOT_DATABASE_URL": settings.effective_database_url(),
        "SDBOT_DISCORD_TOKEN": fake_discord.token,
        "SDBOT_DISCORD_API_URL": fake_discord.api_url,
        "SDBOT_DISCORD_GATEWAY_URL": fake_discord.gateway_url,
        "SDBOT_RETENTION_DAYS": "7",
    }
    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "bot", "run", "--ready-timeout", "0.05"],
            env=environment,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        await wait_for_line(log, "connected to Discord as")
        # The sharded client tries a refused connect again by itself (a plain Client gave up).
        assert "Failed to connect for shard_id: 0. Retrying" in read_log(log)
        assert fake_discord.gateway.connects >= 2

        def resumed() -> Message | None:
            for message in fake_discord.channel_messages(channel):
                if "a green triangle" in message.content and message.attachments:
                    return message
            return None

        recovered = await fake_discord.wait_for(resumed, within=120)
        assert recovered.content.startswith(f"<@{ada.id}> **a green triangle** · job {left}")

        interaction = await fake_discord.slash(ada, channel, "imagine", prompt="a red circle")
        posted = await fake_discord.wait_for(
            lambda: (
                interaction.original
                and len(interaction.original.reacted) == len(CONTROLS)
                and interaction.original
            ),
            within=120,
        )
        assert posted.attachments
    finally:
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 60)
    assert code == 0, read_log(log)
    assert "sdbot run: stopped" in read_log(log)
    async with open_storage(settings) as storage:
        jobs = await storage.audit.list_jobs()
    assert [(job.prompt, job.status, job.purge_reason) for job in jobs] == [
        ("a green triangle", JobStatus.SUCCEEDED, None),
        ("", JobStatus.BLOCKED, "retention"),  # purged at start: the record stays
        ("a red circle", JobStatus.SUCCEEDED, None),
    ]
