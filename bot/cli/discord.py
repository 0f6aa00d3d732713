"""`sdbot discord check` and `sdbot discord sync`: the bot's commands and texts against what
Discord accepts, offline; and pushing the commands to Discord."""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from bot.cli import EXIT_OK, EXIT_USAGE, CommandError, CommandFailed
from bot.cli.arguments import guild_id

if TYPE_CHECKING:
    from bot.discord.client import ImagineBot
    from bot.discord_schema import Problem
    from bot.settings import Settings

COMMANDS_ROUTE = "/applications/0/commands"
MESSAGE_ROUTE = "/channels/0/messages"


def register(commands: Any) -> None:
    discord_parser = commands.add_parser("discord", help="the bot's commands on Discord")
    actions = discord_parser.add_subparsers(
        dest="discord_command", required=True, metavar="COMMAND"
    )
    check = actions.add_parser(
        "check",
        help="check the bot's commands and texts against Discord's limits (offline, no token)",
        description=(
            "Builds the slash commands the bot would sync and the texts it can send with the "
            "longest values it accepts, and checks them against Discord's published schema and "
            "documented limits. Exit 0 when Discord would take them all, 2 when not."
        ),
    )
    check.set_defaults(handler=run_check)
    sync = actions.add_parser(
        "sync",
        help="push the slash commands to Discord now (needs SDBOT_DISCORD_TOKEN)",
        description=(
            "The bot pushes its commands at start-up only when they changed; this pushes them "
            "regardless. With --guild, to that guild only (they show there at once)."
        ),
    )
    sync.add_argument("--guild", type=guild_id, help="a guild id (default: every guild)")
    sync.set_defaults(handler=run_sync)


async def offline_bot(settings: Settings) -> ImagineBot:
    """The bot as ``sdbot run`` builds it, without a database connection, a worker or a token."""
    from discord import VoiceClient

    from bot.app import build_service, unopened_storage, worker_spec
    from bot.discord.client import ImagineBot
    from generation.queue import BatchPolicy, LocalQueue
    from generation.supervisor import WorkerSupervisor

    VoiceClient.warn_nacl = VoiceClient.warn_dave = False  # sdbot has no voice
    queue = LocalQueue(
        WorkerSupervisor(worker_spec(settings)),
        BatchPolicy(settings.batch_max_jobs, settings.batch_max_images),
    )
    return ImagineBot(build_service(settings, unopened_storage(settings), queue))


async def run_check(args: argparse.Namespace, settings: Settings) -> int:
    from bot import discord_schema
    from bot.discord.sync import command_payload

    client = await offline_bot(settings)  # never logged in: nothing to close
    payload = command_payload(client.tree, settings.discord_commands_guild)
    found = [
        f"PUT commands: {_where(payload, problem)}: {problem.message} ({problem.code})"
        for problem in discord_schema.problems("PUT", COMMANDS_ROUTE, body=payload)
    ]
    texts = [text async for text in sample_texts(client)]
    for label, text in texts:
        body = {"content": text, "allowed_mentions": {"parse": []}}
        found += [
            f"text {label}: {problem.message} ({len(text)} characters)"
            for problem in discord_schema.problems("POST", MESSAGE_ROUTE, body=body)
        ]
    names = ", ".join(f"/{command['name']}" for command in payload)
    if found:
        for line in found:
            print(line)
        print(f"sdbot discord check: Discord would refuse {len(found)} of these", file=sys.stderr)
        return EXIT_USAGE
    print(f"commands: {names} ({_options(payload)} options and subcommands): ok")
    print(f"texts: {len(texts)} checked with the longest values the bot accepts: ok")
    return EXIT_OK


async def sample_texts(client: ImagineBot) -> AsyncIterator[tuple[str, str]]:
    """The texts the bot writes, each with the longest inputs it accepts: a prompt of the most
    characters, markdown that escaping doubles, a blocked prompt with every reason it can get."""
    # The module, not its names: a test replaces render.refusal.
    from bot.discord import jobs, pictures, render
    from bot.imagine.describe import Described
    from bot.imagine.outcomes import ImagineOutcome
    from moderation.lists import PromptRules, data_lines
    from moderation.prompts import check_prompt
    from storage.models import JobKind, JobStatus

    limits = client.service.bot_limits.options
    longest = limits.max_prompt_chars
    escaped = ("*_~`|>" * longest)[:longest]
    title = render.title_of(escaped, 2**31, JobKind.UPSCALE, 2**31, 4)
    yield "queued", f"{title}\nqueued: 999 ahead · about 999 min"
    yield "progress", f"{title}\ndrawing: step {limits.max_steps}/{limits.max_steps}"
    for kind, start, control in (
        (JobKind.VARY, "image", None),
        (JobKind.EDIT, "inpaint", None),
        (JobKind.IMAGINE, "text", "canny"),
    ):
        made = render.title_of(
            escaped, 2**31, kind, 2**31, 4, start=start, strength=0.35, control=control,
            control_scale=1.75,
        )  # fmt: skip
        yield f"{kind.value} title", f"{made}\nqueued: 999 ahead · about 999 min"
    described = Described(2**31, ("x" * longest,) * 8, "0" * 64, 2**31, model="m" * 32)
    yield "/describe", pictures.describe_text(described, "f" * 200)
    words = " ".join(t for t in data_lines("block_terms.txt") if t.isalpha())
    # The shipped rules, which the bot's are (bot.app); a guild's entries only add reasons.
    verdict = check_prompt(words[:longest], PromptRules.default(), words[-longest:])
    blocked = ImagineOutcome(2**31, JobStatus.BLOCKED, verdict, words[:longest])
    yield "blocked prompt", render.refusal(blocked)
    yield "/help", await jobs.help_text(client, None)  # as in a direct message: no settings read


def _options(payload: list[dict[str, Any]]) -> int:
    def count(item: dict[str, Any]) -> int:
        return sum(1 + count(option) for option in item.get("options") or [])

    return sum(count(command) for command in payload)


def _where(payload: list[dict[str, Any]], problem: Problem) -> str:
    """``/mod allowlist: description`` for ``0.options.5.description``."""
    node: Any = payload
    names: list[str] = []
    rest = list(problem.path)
    while rest and rest[0].isdigit() and isinstance(node, list) and int(rest[0]) < len(node):
        node = node[int(rest.pop(0))]
        names.append(str(node.get("name", "?")))
        if rest[:1] == ["options"]:
            rest.pop(0)
            node = node.get("options") or []
    return f"/{' '.join(names)}: {'.'.join(rest) or 'the command'}"


async def run_sync(args: argparse.Namespace, settings: Settings) -> int:
    import discord

    from bot.cli.run import command_sync
    from bot.discord import endpoints as discord_endpoints

    token = settings.discord_token.get_secret_value() if settings.discord_token else ""
    if not token:
        raise CommandError("sdbot discord sync needs the bot token: set SDBOT_DISCORD_TOKEN")
    discord_endpoints.use(discord_endpoints.from_settings(settings))
    client = await offline_bot(settings)
    sync = command_sync(settings)
    guild = args.guild if args.guild is not None else sync.guild_id
    client.command_sync = type(sync)(sync.state_file, guild, force=True)
    try:
        await client.login(token)  # its setup_hook pushes the commands
    except discord.LoginFailure as error:
        raise CommandError(f"Discord refused the token: {error}") from None
    except discord.app_commands.CommandSyncFailure as error:
        raise CommandError(
            f"Discord refused the commands ({error}); `sdbot discord check` lists what is wrong"
        ) from None
    except discord.HTTPException as error:
        raise CommandFailed(f"Discord answered {error.status}: {error.text}") from None
    finally:
        await client.close()
    count = len(client.tree.get_commands(guild=discord.Object(guild) if guild else None))
    where = f"guild {guild}" if guild is not None else "every guild (global)"
    print(f"pushed {count} commands to {where}")
    return EXIT_OK
