"""Application commands go to Discord only when they changed.

Discord limits how often an application may create commands (200 a day per guild), and every
sync is a request at start-up, so the bot keeps a digest of the payload it last pushed for each
scope (global, or one guild) in a small JSON file in its data folder and pushes again only when
the digest differs. ``sdbot discord sync`` pushes regardless, for an operator who changed them
by hand or moved the bot to another data folder. Commands can be scoped to one guild
(``SDBOT_DISCORD_COMMANDS_GUILD``): they show there at once, which suits a test server.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import discord
from discord import app_commands

log = logging.getLogger(__name__)


def command_payload(
    tree: app_commands.CommandTree[Any], guild_id: int | None = None
) -> list[dict[str, Any]]:
    """What ``tree.sync`` sends for this scope (a guild gets the global commands copied in)."""
    guild = discord.Object(guild_id) if guild_id is not None else None
    if guild is not None and not tree.get_commands(guild=guild):
        tree.copy_global_to(guild=guild)
    commands = tree.get_commands(guild=guild)
    return [command.to_dict(tree) for command in commands]


def digest(payload: list[dict[str, Any]]) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class CommandSync:
    """How a client pushes its commands at start-up: to ``guild_id`` or globally, and only when
    they differ from what ``state_file`` says was pushed last (no file, or ``force``: always)."""

    state_file: Path | None = None
    guild_id: int | None = None
    force: bool = False

    def _key(self, application_id: int | None) -> str:
        return f"{application_id}/{self.guild_id if self.guild_id is not None else 'global'}"

    def _pushed(self) -> dict[str, str]:
        if self.state_file is None or not self.state_file.is_file():
            return {}
        try:
            loaded = json.loads(self.state_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:  # unreadable: push again, then rewrite it
            log.warning("command sync state %s unreadable ◆ %s", self.state_file, error)
            return {}
        return {str(k): str(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}

    async def run(self, tree: app_commands.CommandTree[Any]) -> bool:
        """Pushes the commands when they changed (or ``force``); True when it pushed."""
        payload = command_payload(tree, self.guild_id)
        key, new = self._key(tree.client.application_id), digest(payload)
        pushed = self._pushed()
        if not self.force and pushed.get(key) == new:
            log.info("commands unchanged since the last sync ◆ %s ◆ not pushed", key)
            return False
        guild = discord.Object(self.guild_id) if self.guild_id is not None else None
        await tree.sync(guild=guild)
        log.info("commands synced ◆ %s ◆ %d commands", key, len(payload))
        if self.state_file is not None:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            pushed[key] = new
            temporary = self.state_file.with_suffix(".tmp")
            temporary.write_text(json.dumps(pushed, indent=1), encoding="utf-8")
            temporary.replace(self.state_file)
        return True
