"""Moved to ``bot.discord.retries``; kept for the redesign's second round."""

from __future__ import annotations

from bot.discord.retries import DISCORD_ERRORS as DISCORD_ERRORS
from bot.discord.retries import GONE_CODES as GONE_CODES
from bot.discord.retries import NETWORK_ERRORS as NETWORK_ERRORS
from bot.discord.retries import DeliveryFailed as DeliveryFailed
from bot.discord.retries import Gone as Gone
from bot.discord.retries import Restarting as Restarting
from bot.discord.retries import best_effort as best_effort
from bot.discord.retries import describe as describe
from bot.discord.retries import is_gone as is_gone
from bot.discord.retries import is_token_gone as is_token_gone
from bot.discord.retries import is_transient as is_transient
from bot.discord.retries import with_retries as with_retries
