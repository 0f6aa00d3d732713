"""Moved to ``bot.discord.sync``; kept for the redesign's second round."""

from __future__ import annotations

from bot.discord.sync import CommandSync as CommandSync
from bot.discord.sync import command_payload as command_payload
from bot.discord.sync import digest as digest
