"""Where discord.py sends its REST calls and opens its gateway: Discord itself, a REST proxy
(e.g. twilight-http-proxy or nirn-proxy in front of a fleet of bots), or a local test server.

discord.py keeps both as class attributes, so this is process-wide: call it once at start-up,
before the client connects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route

if TYPE_CHECKING:
    from bot.settings import Settings

DISCORD_API = "https://discord.com/api/v10"
DISCORD_GATEWAY = "wss://gateway.discord.gg/"


@dataclass(frozen=True)
class Endpoints:
    api_url: str = DISCORD_API
    gateway_url: str = DISCORD_GATEWAY


def from_settings(settings: Settings) -> Endpoints:
    return Endpoints(settings.discord_api_url, settings.discord_gateway_url)


def current() -> Endpoints:
    return Endpoints(Route.BASE, str(DiscordWebSocket.DEFAULT_GATEWAY))


def use(endpoints: Endpoints) -> Endpoints:
    """Points discord.py at these endpoints; returns the ones in use before."""
    before = current()
    Route.BASE = endpoints.api_url.rstrip("/")
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(endpoints.gateway_url)
    return before
