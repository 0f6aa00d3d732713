"""`sdbot bench gpu` (skeleton: its measurement is another change)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from bot.cli import CommandError

if TYPE_CHECKING:
    from bot.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true")


async def run(args: argparse.Namespace, settings: Settings) -> int:
    raise CommandError("sdbot bench gpu is not built yet")
