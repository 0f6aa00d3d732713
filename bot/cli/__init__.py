"""`sdbot`: the command line. Exit codes: 0 ok, 1 failed, 2 bad input, 3 blocked, 4 not found.

``main`` is one of the two places where errors become words (the other is the Discord command
tree's ``on_error``): an ``SdbotError`` is one line on stderr and the exit code of its kind; a
library's error about the world (a database that is locked, a Redis that is not there, a file
that cannot be written) is one line too (``bot.cli.failures``); anything else is a bug and
surfaces with its traceback.

Start-up stays quick for commands that load no model: this module and every command's module
import the standard library and argument types only; a command's handler imports what it uses.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from common.errors import ErrorKind, SdbotError

if TYPE_CHECKING:
    from bot.settings import Settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BLOCKED, EXIT_NOT_FOUND = 0, 1, 2, 3, 4
EXIT_CODES = {
    ErrorKind.FAILED: EXIT_FAILED,
    ErrorKind.BAD_INPUT: EXIT_USAGE,
    ErrorKind.BLOCKED: EXIT_BLOCKED,
    ErrorKind.NOT_FOUND: EXIT_NOT_FOUND,
}

Handler = Callable[[argparse.Namespace, "Settings"], Coroutine[Any, Any, int]]


class CommandError(SdbotError):
    """A one-line message about what a command was given."""

    kind = ErrorKind.BAD_INPUT


class NothingThere(CommandError):
    """What the command names is not there (a list entry, a watermark, its record)."""

    kind = ErrorKind.NOT_FOUND


class CommandFailed(CommandError):
    """The command could not do its work; nothing was wrong with what it was given."""

    kind = ErrorKind.FAILED


def build_parser() -> argparse.ArgumentParser:
    from bot.cli import (
        admin,
        audit,
        bench,
        discord,
        guild,
        imagine,
        models,
        pictures,
        privacy,
        run,
        terms,
        worker,
    )
    from bot.cli.arguments import OneLineParser

    parser = OneLineParser(
        prog="sdbot", description="Stable Diffusion for Discord communities, safely."
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = (
        imagine,
        pictures,
        models,
        audit,
        terms,
        guild,
        admin,
        privacy,
        bench,
        worker,
        run,
        discord,
    )
    for module in modules:
        module.register(commands)
    return parser


async def _cancel_on_sigterm(command: Coroutine[Any, Any, int]) -> int:
    """SIGTERM cancels the command like Ctrl-C does, so a running job is recorded cancelled.

    Only the first one: `timeout` and process managers send it twice (to the process and to
    its group), and a second cancel would interrupt the cleanup that records the job's end,
    leaving the record open while the queue says cancelled. A command that will not stop is
    for SIGKILL (`sdbot recover` then ends its job).
    """
    task = asyncio.ensure_future(command)

    def on_sigterm() -> None:
        if task.cancelling():
            from common import logs

            logs.say("sdbot", "already stopping: recording the job's end", level=logging.WARNING)
            return
        task.cancel()

    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, on_sigterm)
    try:
        return await task
    except asyncio.CancelledError:
        raise KeyboardInterrupt from None


def _fail(message: str, code: int) -> int:
    """``sdbot: error: …`` on stderr; in JSON logs, an ERROR line from the ``sdbot`` logger."""
    from common import logs

    logs.say("sdbot", f"error: {message}", level=logging.ERROR)
    return code


def secrets_of(settings: Settings) -> list[str]:
    """What no log line may show: the bot token and the passwords (and secret-looking query
    values) of the database, Redis and Discord proxy URLs, as given and as parsed."""
    found = [settings.discord_token.get_secret_value()] if settings.discord_token else []
    if settings.database_url:
        from sqlalchemy.engine import make_url

        database = make_url(settings.database_url)  # checked by the settings: it parses
        found += [database.password or "", *_secret_values(dict(database.query))]
    urls = (settings.redis_url, settings.discord_api_url, settings.discord_gateway_url)
    for url in filter(None, urls):
        import yarl

        try:
            parsed = yarl.URL(url)
        except ValueError:  # the settings checked Redis's; a proxy URL is used as given
            continue
        found += [parsed.password or "", *_secret_values(dict(parsed.query))]
    return [secret for secret in found if secret]


def _secret_values(query: dict[str, Any]) -> list[str]:
    words = ("password", "passwd", "pwd", "token", "secret", "key", "auth", "credential")
    values: list[str] = []
    for key, value in query.items():
        if any(word in key.lower() for word in words):
            values += [value] if isinstance(value, str) else list(value)
    return values


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # --help and usage errors end here, before settings are read

    from pydantic import ValidationError

    from bot.cli.failures import kind_of, outside_failure
    from bot.masking import settings_error
    from bot.settings import Settings
    from common import logs

    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logs.configure(level)  # text until the settings say otherwise
    try:
        settings = Settings()
    except ValidationError as error:  # one line, each value named, secrets masked
        return _fail(f"invalid settings: {settings_error(error)}", EXIT_USAGE)
    logs.configure(level, settings.log_format, secrets_of(settings))
    handler: Handler = args.handler
    try:
        return asyncio.run(_cancel_on_sigterm(handler(args, settings)))
    except SdbotError as error:
        return _fail(str(error), EXIT_CODES[kind_of(error)])
    except BrokenPipeError:  # `sdbot ... | head`: the reader left, which is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        logs.say("sdbot", "interrupted", level=logging.ERROR)
        return 130
    except Exception as error:
        failure = outside_failure(error, settings)
        if failure is not None:
            return _fail(failure.message, EXIT_CODES[failure.kind])
        if settings.log_format != "json":  # a bug: its traceback is what helps
            raise
        # The same traceback as one JSON line, masked (Python's own report would be plain).
        logging.getLogger("sdbot").critical("uncaught error: %r", error, exc_info=error)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
