"""`/mod`: a guild's moderators run sdbot from Discord.

Discord shows the group only to members with Manage Server (``default_permissions``), and the
bot checks it again on every call (a channel override or a modified client cannot get past it);
a refused attempt is recorded. Every answer is ephemeral: what moderators see stays with them.

The rules live in :class:`bot.guild_admin.GuildAdmin`; each module here (``bans``, ``lists``,
``settings``, ``record``, ``actions``) adds its subcommands, which call it and render the
outcome; ``forget`` calls the service's deletion (``bot.ops.privacy``). A refusal is raised,
and the command tree's ``on_error`` words it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.discord.mod import actions, bans, forget, lists, record, settings
from bot.discord.mod.group import ModGroup as ModGroup
from bot.discord.mod.group import ModSubgroup as ModSubgroup
from bot.discord.mod.group import may_administer as may_administer
from bot.discord.mod.text import action_text as action_text
from bot.guild_admin import GuildAdmin

if TYPE_CHECKING:
    from bot.discord.client import ImagineBot


def mod_commands(bot: ImagineBot) -> ModGroup:
    """The /mod group over the bot's service, every feature's subcommands added."""
    mod = ModGroup(GuildAdmin.for_service(bot.service))
    for feature in (bans, lists, settings, record, actions):
        feature.add_commands(mod)
    forget.add_commands(mod, bot.service)  # the deletion is the service's, not GuildAdmin's
    return mod
