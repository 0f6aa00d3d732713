"""What ``bot.cli.main`` needs to put an error in one line: the kind of an ``SdbotError``, and
the errors of the libraries sdbot stands on that say something about the world, not a bug.

Nothing here imports those libraries: an error of theirs can only have been raised once they
were imported, so their classes are looked up in ``sys.modules`` (a command that never opened
the database does not pay for SQLAlchemy to report an error).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from common.errors import ErrorKind, SdbotError

if TYPE_CHECKING:
    from bot.settings import Settings


@dataclass(frozen=True)
class Failure:
    message: str
    kind: ErrorKind


def kind_of(error: SdbotError) -> ErrorKind:
    """The error's kind, as it or its family declares it (``SdbotError``'s own: failed)."""
    return error.kind


def _loaded(module: str, name: str) -> type[BaseException] | None:
    """A library's exception class when the library is imported; None when it is not."""
    found = getattr(sys.modules.get(module), name, None)
    return found if isinstance(found, type) and issubclass(found, BaseException) else None


def _is(error: BaseException, *where: tuple[str, str]) -> bool:
    return any(
        (cls := _loaded(module, name)) is not None and isinstance(error, cls)
        for module, name in where
    )


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] if lines else ""


def outside_failure(error: Exception, settings: Settings) -> Failure | None:
    """The database, Redis or the file system, in one line; None for anything else (a bug)."""
    from bot.masking import mask_url

    if _is(error, ("sqlalchemy.exc", "OperationalError")):  # locked, unreachable: not the input
        first = _first_line(str(getattr(error, "orig", "")))
        return Failure(f"database: {first or type(error).__name__}", ErrorKind.FAILED)
    if _is(error, ("sqlalchemy.exc", "SQLAlchemyError"), ("alembic.util.exc", "CommandError")):
        first = _first_line(str(error))
        return Failure(f"database: {type(error).__name__}: {first}", ErrorKind.BAD_INPUT)
    if _is(error, ("redis.exceptions", "RedisError")):  # no Redis there, or not one sdbot can use
        where = mask_url(settings.redis_url or "")
        first = _first_line(str(error))
        return Failure(f"Redis {where}: {type(error).__name__}: {first}", ErrorKind.BAD_INPUT)
    if isinstance(error, OSError):  # a server that does not answer, a file that cannot be written
        return Failure(str(error), ErrorKind.BAD_INPUT)
    return None
