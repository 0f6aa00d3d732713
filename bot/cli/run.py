"""`sdbot run`: the Discord bot, with its queue and worker, until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from typing import TYPE_CHECKING, Any

from bot.cli import EXIT_OK, CommandError
from common import logs

if TYPE_CHECKING:
    from bot.discord.sync import CommandSync
    from bot.settings import Settings

log = logging.getLogger(__name__)


def register(commands: Any) -> None:
    run = commands.add_parser(
        "run",
        help="run the Discord bot (needs SDBOT_DISCORD_TOKEN)",
        description=(
            "Checks the database and the worker, resumes the jobs a stopped bot left open, then "
            "serves /imagine until SIGTERM or Ctrl-C. A failed gateway connect is tried again "
            "every 5 s; a client that stops otherwise is restarted with a growing pause."
        ),
    )
    run.add_argument(
        "--ready-timeout", type=float, default=2.0, help=argparse.SUPPRESS
    )  # discord.py's guild_ready_timeout; tests shorten it
    run.set_defaults(handler=run_bot)


async def run_bot(args: argparse.Namespace, settings: Settings) -> int:
    import discord
    from discord import app_commands

    from bot.app import open_service, open_storage
    from bot.discord import endpoints as discord_endpoints
    from bot.discord.client import ImagineBot
    from bot.imagine.outcomes import ImagineOutcome
    from bot.ops.retention import keeping_retention
    from bot.ops.server import bot_metrics

    token = settings.discord_token.get_secret_value() if settings.discord_token else ""
    if not token:
        raise CommandError("sdbot run needs the bot token: set SDBOT_DISCORD_TOKEN")
    discord_endpoints.use(discord_endpoints.from_settings(settings))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    client: ImagineBot | None = None
    async with (
        open_storage(settings) as storage,
        open_service(settings, storage) as service,
        bot_metrics(settings, storage, service.queue, lambda: client) as metrics,
        keeping_retention(settings, storage),  # SDBOT_RETENTION_DAYS: at start, then hourly
    ):
        if metrics is not None:  # /livez answers while the model loads; /readyz says so
            _say(f"metrics on {metrics.url}")
        ready = await service.queue.start_workers()  # a model that cannot load stops us here
        if ready is not None:
            where = f"{ready.model} on {ready.device} ({ready.dtype})"
        else:  # the workers are `sdbot worker` processes of their own
            where = f"Redis workers (prefix {settings.redis_prefix})"
        _say(f"worker: {where}")
        pause, recovered = 1.0, False

        async def post_recovered(outcome: ImagineOutcome) -> None:
            if client is not None:
                await client.post_recovered(outcome)

        while not stop.is_set():
            previous = client
            client = ImagineBot(
                service,
                command_sync=command_sync(settings),
                guild_ready_timeout=args.ready_timeout,
                shard_count=settings.discord_shard_count,
                shard_ids=settings.discord_shard_ids,
            )
            if previous is not None:  # the jobs it was following post through this one
                previous.successor = client
            task = asyncio.create_task(client.start(token))
            ready_wait = asyncio.create_task(client.wait_until_ready())
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({task, ready_wait, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if ready_wait.done() and not stop.is_set():
                user = client.user
                from bot.masking import mask_web_url  # a proxy URL's password stays unsaid

                api_url = mask_web_url(settings.discord_api_url)
                _say(
                    f"connected to Discord as {user} ({user and user.id}) at "
                    f"{api_url}, {len(client.guilds)} guilds"
                )
                if not recovered:
                    recovered = True
                    resumed = await service.recover(post_recovered)
                    if resumed:
                        _say(f"resumed {resumed} open jobs")
                pause = 1.0
                await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
            ready_wait.cancel()
            stopping.cancel()
            if stop.is_set():
                break
            error = task.exception() if task.done() else None
            await client.close()
            if isinstance(error, discord.LoginFailure):
                raise CommandError(f"Discord refused the token: {error}")
            if isinstance(error, app_commands.CommandSyncFailure):  # a restart cannot mend it
                raise CommandError(
                    f"Discord refused the bot's commands ({error}); `sdbot discord check` "
                    "lists what is wrong"
                )
            log.warning("the Discord client stopped (%r); restarting in %.0f s", error, pause)
            _say(f"the Discord client stopped ({type(error).__name__}); restarting")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), pause)
            pause = min(pause * 2, 60.0)

        if client is not None and client.is_ready():
            grace = settings.shutdown_grace_s
            _say(f"shutting down: running jobs get {grace:g} s to finish and post")
            unfinished = await client.drain(grace)
            if unfinished:
                _say(f"{unfinished} running {_jobs(unfinished)} did not finish in time")
        _say("open jobs stay recorded and resume at the next start")
        service.leave_jobs_open()
        if client is not None:
            await client.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 10)
    _say("stopped")
    return EXIT_OK


def command_sync(settings: Settings) -> CommandSync:
    """Commands pushed when they changed since the last push recorded in the data folder."""
    from bot.discord.sync import CommandSync

    return CommandSync(settings.data_dir / "discord-commands.json", settings.discord_commands_guild)


def _jobs(count: int) -> str:
    return "job" if count == 1 else "jobs"


def _say(text: str) -> None:
    """A line for the operator: ``sdbot run: text``, or a JSON line (SDBOT_LOG_FORMAT)."""
    logs.say("sdbot run", text)
