"""Argument types shared by the commands: each refuses a value the database cannot hold."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from generation.limits import MAX_RATE, MIN_RATE
from generation.options import UnstorableText, check_storable

MAX_GUILD_ID = 2**63 - 1  # Discord ids are 64-bit, and the database's BIGINT is signed


class OneLineParser(argparse.ArgumentParser):
    """argparse's parser, but a usage error is one line (the exit code stays 2).

    A parser made with ``fill`` gets its arguments only when it is used, to parse or to show its
    help: a command whose flags come from a module that is slow to import (the guild settings'
    table) registers without importing it, so every other command starts without paying for it.
    """

    def __init__(
        self, *args: Any, fill: Callable[[argparse.ArgumentParser], None] | None = None, **kw: Any
    ) -> None:
        super().__init__(*args, **kw)
        self._fill = fill

    def _filled(self) -> None:
        if self._fill is not None:
            fill, self._fill = self._fill, None
            fill(self)

    def parse_known_args(  # type: ignore[override]  # typeshed's overloads, one body
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        self._filled()
        return super().parse_known_args(args, namespace)

    def format_usage(self) -> str:
        self._filled()
        return super().format_usage()

    def format_help(self) -> str:
        self._filled()
        return super().format_help()

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def check_guild_id(value: int) -> str | None:
    """Why ``value`` cannot be a guild id, or None when it can."""
    if 0 < value <= MAX_GUILD_ID:
        return None
    return f"a guild id must be a whole number from 1 to 2^63-1, got {value}"


def guild_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"a guild id must be a whole number from 1 to 2^63-1, got {text!r}"
        ) from None
    problem = check_guild_id(value)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return value


def term(text: str) -> str:
    """A list entry: UTF-8 text without NUL characters (PostgreSQL stores no other)."""
    try:
        return check_storable("term", text)
    except UnstorableText as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def rate(text: str) -> float:
    """Standard images an hour, within what the limiter can wait for."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not MIN_RATE <= value <= MAX_RATE:  # nan and inf fail too
        raise argparse.ArgumentTypeError(
            f"a rate must be from {MIN_RATE:g} to {MAX_RATE:.0f} standard images an hour, "
            f"got {text!r}"
        )
    return value


def date(text: str) -> datetime:
    """An ISO date or time, read as UTC when it names no zone."""
    try:
        value = datetime.fromisoformat(text)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date; use YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][+HH:MM]"
        ) from None
    except OverflowError:  # 0001-01-01T00:00+01:00 is before the first UTC datetime
        raise argparse.ArgumentTypeError(
            f"{text!r} is outside the dates sdbot can compare: from 0001-01-01 to 9999-12-31 in UTC"
        ) from None


def control_spec(text: str) -> tuple[str, Path]:
    """``--control KIND:FILE``: a ControlNet kind and the picture its input is made from."""
    from generation.starts import CONTROL_TYPES

    kind, colon, file = text.partition(":")
    if not colon or kind not in CONTROL_TYPES or not file:
        kinds = ", ".join(f"{known}:FILE" for known in CONTROL_TYPES)
        raise argparse.ArgumentTypeError(f"a control must be one of {kinds}, got {text!r}")
    return kind, Path(file)
