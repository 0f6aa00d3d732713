"""`sdbot terms ...` and `sdbot guild ...`: the moderation lists and NSFW policy from a shell.

The Discord admin commands change the same records; these serve operators and scripts. Every
change is written to the moderation log with actor 0 (the operator).
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from typing import Any

from bot.app import open_storage
from bot.cli import EXIT_NOT_FOUND, EXIT_OK, CommandError
from bot.cli.arguments import guild_id, rate, term
from bot.durations import parse_expiry
from bot.guild_admin import change_settings
from bot.service import guild_limits
from bot.settings import Settings
from moderation.policy import NsfwPolicy
from moderation.prompts import GuildRule, InvalidTerm, RuleAction, validate_rule
from storage.models import Controls, TermKind

OPERATOR = 0  # the actor recorded for changes made from the command line
_KINDS = {"block": TermKind.BLOCK, "allow": TermKind.ALLOW, "force-safe": TermKind.FORCE_SAFE}


def register(commands: Any) -> None:
    terms = commands.add_parser("terms", help="block, allow and force-safe lists")
    term_commands = terms.add_subparsers(dest="terms_command", required=True, metavar="COMMAND")
    add = term_commands.add_parser(
        "add",
        help="add an entry",
        description="A term is one or more words ('*' at an end widens one word: porn*); "
        "with --regex, a regular expression matched against the normalised prompt.",
    )
    remove = term_commands.add_parser("remove", help="remove an entry")
    for command in (add, remove):
        command.add_argument("term", type=term)
        command.add_argument("--kind", choices=list(_KINDS), default="block")
        command.add_argument("--guild", type=guild_id, help="default: every guild")
    add.add_argument("--regex", action="store_true", help="the entry is a regular expression")
    add.add_argument("--expires", help="a duration (30m, 12h, 7d, 2w) or an ISO date")
    add.set_defaults(handler=run_terms_add)
    remove.set_defaults(handler=run_terms_remove)
    listing = term_commands.add_parser("list", help="the entries in force")
    listing.add_argument(
        "--guild", type=guild_id, help="that guild's entries and the global ones (default: all)"
    )
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=run_terms_list)

    guild = commands.add_parser("guild", help="a guild's NSFW policy, limits and controls")
    guild_commands = guild.add_subparsers(dest="guild_command", required=True, metavar="COMMAND")
    show = guild_commands.add_parser("show", help="print a guild's settings")
    show.add_argument("guild", type=guild_id)
    show.set_defaults(handler=run_guild_show)
    change = guild_commands.add_parser("set", help="change a guild's NSFW policy and limits")
    change.add_argument("guild", type=guild_id)
    change.add_argument(
        "--nsfw-policy",
        choices=[policy.value for policy in NsfwPolicy],
        help="flagged images in NSFW channels: block, or spoiler",
    )
    change.add_argument(
        "--nsfw-threshold", type=float, help="a stricter open_nsfw threshold for this guild"
    )
    change.add_argument(
        "--user-images-per-hour", type=rate, help="each member's rate, in standard images"
    )
    change.add_argument("--guild-images-per-hour", type=rate, help="the whole guild's rate")
    change.add_argument("--max-jobs-per-user", type=int, help="a member's jobs queued + running")
    change.add_argument("--max-steps", type=int, help="fewer denoising steps than the bot allows")
    change.add_argument("--max-side", type=int, help="a smaller largest side, in pixels")
    change.add_argument(
        "--channels",
        help="the channel ids the bot answers in, comma-separated; 'all' for every channel",
    )
    change.add_argument(
        "--controls",
        choices=[controls.value for controls in Controls],
        help="who may upscale and reroll a grid: its requester and moderators, or everyone",
    )
    change.set_defaults(handler=run_guild_set)


def _expiry(text: str) -> datetime:
    try:
        return parse_expiry(text)
    except ValueError as error:
        raise CommandError(f"--expires {error}") from None


async def run_terms_add(args: argparse.Namespace, settings: Settings) -> int:
    kind = _KINDS[args.kind]
    try:  # the same check the rules make, before anything is stored
        validate_rule(GuildRule(RuleAction(kind), args.term, args.regex))
    except InvalidTerm as error:
        raise CommandError(str(error)) from error
    expires_at = None if args.expires is None else _expiry(args.expires)
    async with open_storage(settings) as storage:
        added = await storage.terms.add(
            args.guild,
            kind,
            args.term,
            is_regex=args.regex,
            expires_at=expires_at,
            added_by=OPERATOR,
        )
        await storage.moderation.record(
            guild_id=args.guild,
            actor_id=OPERATOR,
            action=f"{kind.value}_term_add",
            details={"term": args.term, "regex": args.regex, "expires": args.expires},
        )
    scope = "every guild" if args.guild is None else f"guild {args.guild}"
    until = "" if expires_at is None else f" until {expires_at:%Y-%m-%d %H:%M} UTC"
    state = "added to" if added else "already on (expiry updated)"
    print(f"{args.term!r} {state} the {args.kind} list of {scope}{until}")
    return EXIT_OK


async def run_terms_remove(args: argparse.Namespace, settings: Settings) -> int:
    kind = _KINDS[args.kind]
    async with open_storage(settings) as storage:
        removed = await storage.terms.remove(args.guild, kind, args.term)
        if removed:
            await storage.moderation.record(
                guild_id=args.guild,
                actor_id=OPERATOR,
                action=f"{kind.value}_term_remove",
                details={"term": args.term},
            )
    scope = "every guild" if args.guild is None else f"guild {args.guild}"
    if not removed:
        raise CommandError(
            f"{args.term!r} is not on the {args.kind} list of {scope}", EXIT_NOT_FOUND
        )
    print(f"{args.term!r} removed from the {args.kind} list of {scope}")
    return EXIT_OK


async def run_terms_list(args: argparse.Namespace, settings: Settings) -> int:
    async with open_storage(settings) as storage:
        terms = storage.terms
        records = await (terms.every_guild() if args.guild is None else terms.for_guild(args.guild))
    if args.json:
        rows = [
            {
                "guild": r.guild_id,
                "kind": r.kind.value,
                "term": r.term,
                "regex": r.is_regex,
                "expires_at": None if r.expires_at is None else r.expires_at.isoformat(),
            }
            for r in records
        ]
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    if not records:
        print("no entries (the shipped lists still apply)")
    for r in records:
        scope = "all guilds" if r.guild_id is None else f"guild {r.guild_id}"
        until = "" if r.expires_at is None else f"  until {r.expires_at:%Y-%m-%d %H:%M} UTC"
        shown = f"/{r.term}/" if r.is_regex else r.term
        print(f"{r.kind.value:<10} {scope:<24} {shown}{until}")
    return EXIT_OK


async def run_guild_show(args: argparse.Namespace, settings: Settings) -> int:
    async with open_storage(settings) as storage:
        record = await storage.guild_settings.get(args.guild)
    threshold = record.nsfw_threshold
    effective = (
        settings.nsfw_threshold if threshold is None else min(threshold, settings.nsfw_threshold)
    )
    print(f"guild {args.guild}")
    print(f"  nsfw policy     {record.nsfw_policy.value} (flagged images in NSFW channels)")
    print(f"  nsfw threshold  {effective:g} (own: {'none' if threshold is None else threshold})")
    limits = guild_limits(
        settings.queue_limits(),
        user_per_hour=record.user_images_per_hour,
        guild_per_hour=record.guild_images_per_hour,
        max_jobs_per_user=record.max_jobs_per_user,
    )

    def own(value: float | None) -> str:
        return "default" if value is None else "own"

    print(
        f"  member limit    {limits.user_units_per_hour:g} standard images an hour, "
        f"{limits.user_burst:g} saved up ({own(record.user_images_per_hour)})"
    )
    print(
        f"  guild limit     {limits.guild_units_per_hour:g} standard images an hour, "
        f"{limits.guild_burst:g} saved up ({own(record.guild_images_per_hour)})"
    )
    print(
        f"  jobs per member {limits.max_jobs_per_user} queued + running "
        f"({own(record.max_jobs_per_user)})"
    )
    steps = (
        settings.max_steps
        if record.max_steps is None
        else min(record.max_steps, settings.max_steps)
    )
    print(f"  max steps       {steps} ({own(record.max_steps)})")
    side = settings.max_side if record.max_side is None else min(record.max_side, settings.max_side)
    print(f"  max side        {side} px ({own(record.max_side)})")
    print(f"  controls        {record.controls.value} (who may upscale and reroll a grid)")
    channels = "all" if record.channels is None else ", ".join(map(str, record.channels))
    print(f"  channels        {channels}")
    if record.paused_at is None:
        print("  generation      running")
    else:
        why = f": {record.pause_reason}" if record.pause_reason else ""
        print(f"  generation      paused since {record.paused_at:%Y-%m-%d %H:%M} UTC{why}")
    return EXIT_OK


def _channels(text: str) -> list[int] | None:
    if text.strip().lower() == "all":
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise CommandError(
            f"--channels must be channel ids separated by commas, or 'all'; got {text!r}"
        ) from None


async def run_guild_set(args: argparse.Namespace, settings: Settings) -> int:
    changes: dict[str, Any] = {}
    if args.nsfw_policy is not None:
        changes["nsfw_policy"] = args.nsfw_policy
    if args.nsfw_threshold is not None:
        changes["nsfw_threshold"] = args.nsfw_threshold
    names = ("user_images_per_hour", "guild_images_per_hour", "max_jobs_per_user", "max_steps")
    for name in (*names, "max_side", "controls"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    if args.channels is not None:
        changes["channels"] = _channels(args.channels)
    if not changes:
        raise CommandError(
            "nothing to change: give --nsfw-policy, --nsfw-threshold, --user-images-per-hour, "
            "--guild-images-per-hour, --max-jobs-per-user, --max-steps, --max-side, --controls "
            "or --channels"
        )
    async with open_storage(settings) as storage:
        try:
            await change_settings(
                storage.guild_settings, storage.moderation, args.guild, OPERATOR, changes
            )
        except ValueError as error:
            raise CommandError(str(error)) from error
    return await run_guild_show(args, settings)
