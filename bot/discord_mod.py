"""Moved to ``bot.discord.mod`` (one module per feature; the rules in ``bot.guild_admin``, the
settings in ``bot.guild_settings``); kept for the redesign's second round."""

from __future__ import annotations

from bot.discord.mod import ModGroup, mod_commands
from bot.discord.mod.group import ModSubgroup as _ModSubgroup
from bot.discord.mod.group import may_administer
from bot.discord.mod.text import action_text
from bot.discord.mod.text import jobs_text as _jobs
from bot.discord.mod.text import recent as _recent
from bot.guild_admin import MOD_PERMISSION

__all__ = [
    "MOD_PERMISSION",
    "ModGroup",
    "_ModSubgroup",
    "_jobs",
    "_recent",
    "action_text",
    "may_administer",
    "mod_commands",
]
