"""Moved to ``bot.discord.endpoints``; kept for the redesign's second round."""

from __future__ import annotations

from bot.discord.endpoints import DISCORD_API as DISCORD_API
from bot.discord.endpoints import DISCORD_GATEWAY as DISCORD_GATEWAY
from bot.discord.endpoints import Endpoints as Endpoints
from bot.discord.endpoints import current as current
from bot.discord.endpoints import from_settings as from_settings
from bot.discord.endpoints import use as use
