"""`sdbot`: the command line. Exit codes: 0 ok, 1 failed, 2 bad input, 3 blocked, 4 not found."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from alembic.util import CommandError as AlembicError
from pydantic import ValidationError
from redis.exceptions import RedisError
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from bot.settings import Settings, mask_url, settings_error
from generation.errors import GenerationError, InvalidOption
from storage.errors import DatabaseBehind

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BLOCKED, EXIT_NOT_FOUND = 0, 1, 2, 3, 4

Handler = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]


class CommandError(Exception):
    """A one-line message for the user, with the exit code that goes with it."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def build_parser() -> argparse.ArgumentParser:
    from bot.cli import admin, audit, bench, discord, imagine, lists, run, worker
    from bot.cli.arguments import OneLineParser

    parser = OneLineParser(
        prog="sdbot", description="Stable Diffusion for Discord communities, safely."
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (imagine, audit, lists, admin, bench, worker, run, discord):
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
            print("sdbot: already stopping: recording the job's end", file=sys.stderr)
            return
        task.cancel()

    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, on_sigterm)
    try:
        return await task
    except asyncio.CancelledError:
        raise KeyboardInterrupt from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = Settings()
    except ValidationError as error:  # one line, each value named, secrets masked
        print(f"sdbot: error: invalid settings: {settings_error(error)}", file=sys.stderr)
        return EXIT_USAGE
    handler: Handler = args.handler
    try:
        return asyncio.run(_cancel_on_sigterm(handler(args, settings)))
    except CommandError as error:
        print(f"sdbot: error: {error}", file=sys.stderr)
        return error.exit_code
    except InvalidOption as error:
        print(f"sdbot: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except DatabaseBehind as error:
        print(f"sdbot: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except GenerationError as error:
        print(f"sdbot: error: {error}", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:  # `sdbot ... | head`: the reader left, which is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except OperationalError as error:  # locked, unreachable: not the user's input
        first_line = str(error.orig).strip().splitlines()[0] if str(error.orig).strip() else ""
        print(f"sdbot: error: database: {first_line or type(error).__name__}", file=sys.stderr)
        return EXIT_FAILED
    except (SQLAlchemyError, AlembicError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        print(f"sdbot: error: database: {type(error).__name__}: {first_line}", file=sys.stderr)
        return EXIT_USAGE
    except RedisError as error:  # no Redis there, or not one sdbot can use (SDBOT_REDIS_URL)
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        where = mask_url(settings.redis_url or "")
        print(f"sdbot: error: Redis {where}: {type(error).__name__}: {first_line}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as error:  # a server that does not answer, a file that cannot be written
        print(f"sdbot: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("sdbot: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
