"""The bot's command tree: the one place where an error in a command becomes the member's words.

Our errors (every one an :class:`~common.errors.SdbotError`, worded by ``render.explain``) are
answered with their message, privately; anything else is a bug: it is logged with its traceback
and the member reads that something broke on sdbot's side.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot.discord import render
from bot.discord.interactions import private
from bot.discord.privacy import privacy_commands
from bot.discord.retries import best_effort

if TYPE_CHECKING:
    from bot.discord.client import ImagineBot

log = logging.getLogger(__name__)


class SdbotTree(app_commands.CommandTree["ImagineBot"]):
    """``on_error`` words errors; ``interaction_check`` holds the gates every command shares.
    It starts with /privacy, which every client has (the client adds the other features)."""

    def __init__(self, client: ImagineBot) -> None:
        super().__init__(client)
        self.add_command(privacy_commands(client))

    async def interaction_check(self, interaction: discord.Interaction[ImagineBot]) -> bool:
        """Every command is open everywhere, direct messages included: a DM's /imagine is
        refused by the admission path (it records the refusal, and SDBOT_DISCORD_ALLOW_DMS
        lifts it), while /job and /help answer there for one's own jobs."""
        return True

    async def on_error(
        self, interaction: discord.Interaction[ImagineBot], error: app_commands.AppCommandError
    ) -> None:
        """A command that broke still answers its member; a refused check already did."""
        if isinstance(error, app_commands.CheckFailure):
            return
        command = interaction.command.qualified_name if interaction.command else "?"
        cause = error.original if isinstance(error, app_commands.CommandInvokeError) else error
        text = render.explain(cause)
        if text is None:
            log.error("/%s failed", command, exc_info=error)
            text = render.SOMETHING_WENT_WRONG
        else:
            log.info("/%s refused ◆ %s", command, cause)
        await best_effort(lambda: private(interaction, text), f"answering /{command}")
