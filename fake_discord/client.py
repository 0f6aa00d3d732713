"""Running a real discord.py client against the fake, for the length of a test."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TypeVar

import discord

from fake_discord.model import Message
from fake_discord.server import FakeDiscord

C = TypeVar("C", bound=discord.Client)


async def start_client(fake: FakeDiscord, client: discord.Client) -> asyncio.Task[None]:
    """Logs the client in and waits until it is ready; returns its task."""
    task = asyncio.create_task(client.start(fake.token))
    try:
        await asyncio.wait_for(client.wait_until_ready(), 60)  # a ceiling for a busy machine
    except BaseException:
        await client.close()
        task.cancel()
        raise
    return task


@contextlib.asynccontextmanager
async def running(fake: FakeDiscord, client: C) -> AsyncIterator[C]:
    """The client logged in and ready; closed (and its task awaited) on the way out."""
    task = await start_client(fake, client)
    try:
        yield client
    finally:
        await client.close()
        await asyncio.wait_for(task, 60)


GRID_CONTROLS = 10  # 1️⃣–4️⃣, ↖️ ↗️ ↙️ ↘️, 🔄 and ❌ (bot.discord.render.CONTROLS)


def with_controls(message: Message | None, controls: int = GRID_CONTROLS) -> Message | None:
    """The message once it holds a picture and the bot's ``controls`` reactions, else None."""
    if message is not None and message.attachments and len(message.reacted) == controls:
        return message
    return None
