"""`sdbot terms ...`: the block, allow and force-safe lists from a shell.

`/mod blocklist` and friends change the same records through the same ``GuildAdmin``, so an
entry is checked by the same rules and recorded in the moderation log the same way, here with
actor 0 (the operator). Without ``--guild`` an entry holds in every guild.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from bot.cli import EXIT_OK, NothingThere
from bot.cli.arguments import guild_id, term

if TYPE_CHECKING:
    from bot.settings import Settings
    from storage.models import TermKind

OPERATOR = 0  # the actor recorded for changes made from the command line
KINDS = {"block": "block", "allow": "allow", "force-safe": "force_safe"}  # flag → TermKind


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
        command.add_argument("--kind", choices=list(KINDS), default="block")
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


def _kind(flag: str) -> TermKind:
    from storage.models import TermKind

    return TermKind(KINDS[flag])


def _scope(guild: int | None) -> str:
    return "every guild" if guild is None else f"guild {guild}"


async def run_terms_add(args: argparse.Namespace, settings: Settings) -> int:
    from bot.guild_admin import GuildAdmin, expiry
    from storage.repositories import open_storage

    expires_at = expiry(args.expires, "--expires")  # refused before anything is opened
    async with open_storage(settings.effective_database_url()) as storage:
        added = await GuildAdmin(storage).add_term(
            args.guild,
            OPERATOR,
            _kind(args.kind),
            args.term,
            is_regex=args.regex,
            expires_at=expires_at,
        )
    until = "" if expires_at is None else f" until {expires_at:%Y-%m-%d %H:%M} UTC"
    state = "added to" if added else "already on (expiry updated)"
    print(f"{args.term!r} {state} the {args.kind} list of {_scope(args.guild)}{until}")
    return EXIT_OK


async def run_terms_remove(args: argparse.Namespace, settings: Settings) -> int:
    from bot.guild_admin import GuildAdmin
    from storage.repositories import open_storage

    async with open_storage(settings.effective_database_url()) as storage:
        removed = await GuildAdmin(storage).remove_term(
            args.guild, OPERATOR, _kind(args.kind), args.term
        )
    if not removed:
        raise NothingThere(f"{args.term!r} is not on the {args.kind} list of {_scope(args.guild)}")
    print(f"{args.term!r} removed from the {args.kind} list of {_scope(args.guild)}")
    return EXIT_OK


async def run_terms_list(args: argparse.Namespace, settings: Settings) -> int:
    from storage.repositories import open_storage

    async with open_storage(settings.effective_database_url()) as storage:
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
