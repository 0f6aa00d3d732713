"""`sdbot config` and `sdbot db ...`: what the operator runs."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import TYPE_CHECKING, Any

from bot.cli import EXIT_OK

if TYPE_CHECKING:
    from bot.settings import Settings


def register(commands: Any) -> None:
    config = commands.add_parser("config", help="print the effective settings, secrets masked")
    config.add_argument("--json", action="store_true")
    config.set_defaults(handler=run_config)

    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    upgrade = db_commands.add_parser("upgrade", help="apply the migrations")
    upgrade.add_argument("revision", nargs="?", default="head")
    upgrade.set_defaults(handler=run_upgrade)
    current = db_commands.add_parser("current", help="print the schema revision")
    current.set_defaults(handler=run_current)


async def run_config(args: argparse.Namespace, settings: Settings) -> int:
    values = settings.masked()
    if args.json:
        print(json.dumps(values, indent=2))
    else:
        width = max(map(len, values))
        for name, value in values.items():
            print(f"SDBOT_{name.upper():<{width}} = {value}")
    return EXIT_OK


def _shown_url(settings: Settings) -> str:
    from bot.masking import mask_url

    return mask_url(settings.effective_database_url())


async def run_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from storage import migrations
    from storage.engine import ensure_sqlite_folder

    url = settings.effective_database_url()
    ensure_sqlite_folder(url)
    await asyncio.to_thread(migrations.upgrade, url, args.revision)
    print(f"database {_shown_url(settings)} is at revision {args.revision}")
    return EXIT_OK


async def run_current(args: argparse.Namespace, settings: Settings) -> int:
    from storage import migrations
    from storage.engine import create_engine

    engine = create_engine(settings.effective_database_url())
    try:
        current = await migrations.current_revision(engine)
    finally:
        await engine.dispose()
    head = migrations.head_revision()
    state = "up to date" if current == head else "behind: run `sdbot db upgrade`"
    print(f"database {_shown_url(settings)}: revision {current or '(none)'}, head {head} ({state})")
    return EXIT_OK
