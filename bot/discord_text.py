"""Moved to ``bot.discord.text``; kept for the redesign's second round."""

from __future__ import annotations

from bot.discord.text import ELLIPSIS as ELLIPSIS
from bot.discord.text import MESSAGE_LIMIT as MESSAGE_LIMIT
from bot.discord.text import NO_PINGS as NO_PINGS
from bot.discord.text import capped as capped
from bot.discord.text import channel_nsfw as channel_nsfw
from bot.discord.text import code as code
from bot.discord.text import fit as fit
from bot.discord.text import plural as plural
from bot.discord.text import quoted as quoted
