"""The Discord client: built with its dependencies, it adds the features to its command tree and
holds what outlives one command (the jobs it follows, a restart's successor, a graceful stop).

Sharded as Discord recommends (one shard below 2,500 guilds), or as ``shard_count`` and
``shard_ids`` say when several processes share the guilds. The commands are added when the
client is built, not in ``setup_hook``: ``sdbot discord check`` reads them without logging in;
``setup_hook`` pushes them to Discord when they changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

import discord

from bot.discord import imagine, jobs, metrics, pictures, recovery
from bot.discord.controls import NOTICE_SECONDS, ReactionControls
from bot.discord.delivery import Delivery
from bot.discord.mod import mod_commands
from bot.discord.mod.text import action_text
from bot.discord.sync import CommandSync
from bot.discord.text import NO_PINGS
from bot.discord.tree import SdbotTree

if TYPE_CHECKING:
    from bot.imagine.outcomes import ImagineOutcome
    from bot.imagine.service import ImagineService
    from storage.moderation_log import ModerationActionRecord

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 30.0  # discord.py waits for an answer forever; a post is tried again
RESTART_WAIT_S = 300.0  # a result waits this long for the client `sdbot run` restarts


class ImagineBot(discord.AutoShardedClient):
    """/imagine, /edit, /describe, /job, /cancel, /help, /mod and the reaction controls, on
    ``service``."""

    def __init__(
        self,
        service: ImagineService,
        *,
        command_sync: CommandSync | None = None,
        edit_every_s: float = 2.0,
        notice_s: float = NOTICE_SECONDS,
        **options: Any,
    ) -> None:
        super().__init__(intents=discord.Intents.default(), allowed_mentions=NO_PINGS, **options)
        metrics.instrument()  # API errors by route and status, once per process
        metrics.watch_interactions(self)  # each interaction's arrival, for the ack latency
        self.service = service
        self.storage = service.storage  # the repositories, read directly
        self.command_sync = command_sync or CommandSync()
        self.edit_every_s = edit_every_s  # a progress edit at most this often
        self.notice_s = notice_s  # a reply to a control goes away after this
        self.request_timeout_s = REQUEST_TIMEOUT_S  # a post, an edit: tried again after this
        self.retry_backoff_s = 1.0  # the pause before a post's second try (doubled after)
        self.restart_wait_s = RESTART_WAIT_S
        self.successor: ImagineBot | None = None  # the client that replaced this one, if any
        self.tree = SdbotTree(self)
        self.delivery = Delivery(self)
        self.controls = ReactionControls(self)
        self._posting: set[asyncio.Task[None]] = set()  # moderators' actions on their way
        self.storage.moderation.listeners.append(self._on_moderation)
        imagine.setup(self)
        pictures.setup(self)
        jobs.setup(self)
        self.tree.add_command(mod_commands(self))

    async def setup_hook(self) -> None:
        await self.command_sync.run(self.tree)

    async def on_ready(self) -> None:
        user = self.user
        log.info(
            "connected to Discord as %s (%s) ◆ %d guilds", user, user and user.id, len(self.guilds)
        )

    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        await self.controls.on_reaction(payload)

    async def close(self) -> None:
        with contextlib.suppress(ValueError):
            self.storage.moderation.listeners.remove(self._on_moderation)
        await super().close()

    async def drain(self, grace_s: float) -> int:
        """A graceful stop: no new work; the jobs running now get ``grace_s`` to be drawn and
        posted. Returns how many did not make it (they resume at the next start)."""
        running = await self.service.stop_taking_work()
        following = self.delivery.following
        tasks = [task for job_id, task in following.items() if job_id in running]
        tasks += self.service.recovered_deliveries(running)
        if not tasks:
            return 0
        _, pending = await asyncio.wait(tasks, timeout=grace_s)
        return len(pending)

    async def post_recovered(self, outcome: ImagineOutcome) -> None:
        """A job resumed after a restart, posted to its channel (see recovery.post_recovered)."""
        await recovery.post_recovered(self.delivery, outcome)

    def _on_moderation(self, action: ModerationActionRecord) -> None:
        """A moderator's action in this bot goes to the guild's log channel, when it has one,
        without holding up the command that made it."""
        if action.guild_id is None or self.is_closed():
            return
        task = asyncio.create_task(self._post_action(action.guild_id, action))
        self._posting.add(task)
        task.add_done_callback(self._posting.discard)

    async def _post_action(self, guild_id: int, action: ModerationActionRecord) -> None:
        channel_id = (await self.storage.guild_settings.get(guild_id)).audit_channel_id
        if channel_id is None:
            return
        try:
            await self.get_partial_messageable(channel_id).send(
                f"🛡️ {action_text(action)}", allowed_mentions=NO_PINGS
            )
        except discord.HTTPException as error:
            log.warning("could not post to the log channel of guild %d ◆ %s", guild_id, error)
