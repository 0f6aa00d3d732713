"""Moved to the ``bot.discord`` package (client, tree, imagine, jobs, controls, delivery, render);
kept for the redesign's second round."""

from __future__ import annotations

from bot.discord.client import REQUEST_TIMEOUT_S as REQUEST_TIMEOUT_S
from bot.discord.client import RESTART_WAIT_S as RESTART_WAIT_S
from bot.discord.client import ImagineBot as ImagineBot
from bot.discord.controls import NOTICE_SECONDS as NOTICE_SECONDS
from bot.discord.delivery import Status as Status
from bot.discord.imagine import DISCORD_MAX_STRING as DISCORD_MAX_STRING
from bot.discord.interactions import is_moderator as is_moderator
from bot.discord.interactions import may_moderate as may_moderate
from bot.discord.render import CONTROLS as CONTROLS
from bot.discord.render import DELETE as DELETE
from bot.discord.render import OPTION_NAMES as OPTION_NAMES
from bot.discord.render import REROLL as REROLL
from bot.discord.render import UPSCALES as UPSCALES
from bot.discord.render import chosen as chosen
from bot.discord.render import progress_text as progress_text
from bot.discord.render import refusal as _refusal
from bot.discord.render import refused as _refused
from bot.discord.render import title_of as _title_of
from bot.discord_mod import mod_commands as mod_commands

__all__ = ["_refusal", "_refused", "_title_of"]
