"""`sdbot guild show` and `sdbot guild set`: a guild's NSFW and gore policies, limits, controls.

`/mod settings` and this command change a guild's settings through the same
``GuildAdmin.change_settings``, so they refuse the same values (a server may be stricter than
the bot, never laxer) and record the same change in the moderation log, here with actor 0 (the
operator). The flags come from the one table of guild settings (``bot.guild_settings``); that
table is read only when `guild set` is used, so other commands start without it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bot.cli import EXIT_OK, CommandError
from bot.cli.arguments import guild_id, rate

if TYPE_CHECKING:
    from bot.guild_limits import BotLimits
    from bot.guild_settings import SettingSpec
    from bot.settings import Settings

OPERATOR = 0  # the actor recorded for changes made from the command line


def register(commands: Any) -> None:
    guild = commands.add_parser("guild", help="a guild's NSFW policy, limits and controls")
    guild_commands = guild.add_subparsers(dest="guild_command", required=True, metavar="COMMAND")
    show = guild_commands.add_parser("show", help="print a guild's settings")
    show.add_argument("guild", type=guild_id)
    show.set_defaults(handler=run_guild_show)
    change = guild_commands.add_parser(
        "set", help="change a guild's NSFW policy and limits", fill=_setting_flags
    )
    change.add_argument("guild", type=guild_id)
    change.set_defaults(handler=run_guild_set)


def _offered() -> list[SettingSpec]:
    from bot.guild_settings import SPECS

    return [spec for spec in SPECS if spec.flag is not None]


def _dest(spec: SettingSpec) -> str:
    return f"set_{spec.name}"


def _flag_type(spec: SettingSpec) -> Callable[[str], Any]:
    """How a flag's text becomes the setting's value; the table decides what is allowed."""
    from bot.guild_settings import Kind

    if spec.kind is Kind.CHANNELS:
        return str  # 'all' or ids separated by commas: read by _channels
    if spec.kind is Kind.RATE and spec.value_type is float:
        return rate  # within what the limiter can wait for, said in one line
    return spec.value_type


def _setting_flags(parser: argparse.ArgumentParser) -> None:
    for spec in _offered():
        assert spec.flag is not None
        parser.add_argument(
            spec.flag,
            dest=_dest(spec),
            type=_flag_type(spec),
            choices=list(spec.choices) or None,
            metavar=_metavar(spec),
            help=spec.cli_help or spec.help,
        )


def _metavar(spec: SettingSpec) -> str | None:
    """How --help shows a flag's value: its choices, or what kind of value it takes."""
    from bot.guild_settings import Kind

    if spec.choices:
        return None  # argparse shows {a,b}
    if spec.kind is Kind.CHANNELS:
        return "ID,ID|all"
    if spec.kind is Kind.CHANNEL:
        return "ID"
    if spec.kind in (Kind.MODELS, Kind.LORAS):
        return "NAME,NAME|all"  # the table reads the names, 'all' and 'none'
    return "N" if spec.value_type is int else "X"


def _channels(text: str) -> list[int] | None:
    if text.strip().lower() == "all":
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise CommandError(
            f"--channels must be channel ids separated by commas, or 'all'; got {text!r}"
        ) from None


def bot_limits(settings: Settings) -> BotLimits:
    """What the bot allows everywhere, as ``sdbot run`` builds it from the same settings."""
    from bot.guild_limits import BotLimits

    catalog = settings.catalog()
    defaults = next(m for m in catalog.models if m.name == catalog.default_model).defaults
    return BotLimits(
        options=settings.limits(defaults),
        defaults=defaults,
        rates=settings.queue_limits(),
        nsfw_threshold=settings.nsfw_threshold,
        catalog=catalog,
    )


async def run_guild_show(args: argparse.Namespace, settings: Settings) -> int:
    from bot.guild_limits import effective_limits
    from storage.repositories import open_storage

    async with open_storage(settings.effective_database_url()) as storage:
        record = await storage.guild_settings.get(args.guild)
    here = effective_limits(record, bot_limits(settings))

    def own(name: str) -> str:
        return "own" if here.own(name) else "default"

    threshold = record.nsfw_threshold
    rates, options = here.rates, here.options
    channels = "all" if record.channels is None else ", ".join(map(str, record.channels))
    models = "all" if record.allowed_models is None else ", ".join(record.allowed_models)
    loras = "all" if record.allowed_loras is None else ", ".join(record.allowed_loras) or "none"
    gore = (
        "gore prompts refused everywhere"
        if record.gore_policy.value == "block"
        else "gore prompts drawn spoilered in age-restricted channels only"
    )
    if record.paused_at is None:
        generation = "running"
    else:
        why = f": {record.pause_reason}" if record.pause_reason else ""
        generation = f"paused since {record.paused_at:%Y-%m-%d %H:%M} UTC{why}"
    print(
        f"guild {args.guild}\n"
        f"  nsfw policy     {record.nsfw_policy.value} (flagged images in NSFW channels)\n"
        f"  nsfw threshold  {here.nsfw_threshold:g} "
        f"(own: {'none' if threshold is None else threshold})\n"
        f"  gore policy     {record.gore_policy.value} ({gore})\n"
        f"  member limit    {rates.user_units_per_hour:g} standard images an hour, "
        f"{rates.user_burst:g} saved up ({own('user_images_per_hour')})\n"
        f"  guild limit     {rates.guild_units_per_hour:g} standard images an hour, "
        f"{rates.guild_burst:g} saved up ({own('guild_images_per_hour')})\n"
        f"  jobs per member {rates.max_jobs_per_user} queued + running "
        f"({own('max_jobs_per_user')})\n"
        f"  max steps       {options.max_steps} ({own('max_steps')})\n"
        f"  max side        {options.max_side} px ({own('max_side')})\n"
        f"  controls        {record.controls.value} (who may upscale and reroll a grid)\n"
        f"  vary            {record.vary or 'subtle'} (how much a vary redraws"
        f"{'' if record.vary else ', the default'})\n"
        f"  channels        {channels}\n"
        f"  models          {models}\n"
        f"  LoRAs           {loras}\n"
        f"  generation      {generation}"
    )
    return EXIT_OK


async def run_guild_set(args: argparse.Namespace, settings: Settings) -> int:
    from bot.guild_admin import GuildAdmin
    from storage.repositories import open_storage

    offered = _offered()
    changes = {
        spec.name: getattr(args, _dest(spec))
        for spec in offered
        if getattr(args, _dest(spec)) is not None
    }
    if "channels" in changes:
        changes["channels"] = _channels(changes["channels"])
    if not changes:
        flags = [spec.flag for spec in offered if spec.flag is not None]
        raise CommandError(f"nothing to change: give {', '.join(flags[:-1])} or {flags[-1]}")
    limits = bot_limits(settings)
    async with open_storage(settings.effective_database_url()) as storage:
        await GuildAdmin(storage, limits).change_settings(args.guild, OPERATOR, changes)
    return await run_guild_show(args, settings)
