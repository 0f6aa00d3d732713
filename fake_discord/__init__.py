"""A fake Discord for tests: the real discord.py client against a local REST API and gateway."""

from fake_discord.model import (
    Attachment,
    Channel,
    Guild,
    Message,
    Overwrite,
    Permission,
    Upload,
    User,
)
from fake_discord.rest import Call
from fake_discord.server import FakeDiscord, Interaction

__all__ = [
    "Attachment",
    "Call",
    "Channel",
    "FakeDiscord",
    "Guild",
    "Interaction",
    "Message",
    "Overwrite",
    "Permission",
    "Upload",
    "User",
]
