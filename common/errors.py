"""The one root of sdbot's own errors.

Each package keeps a small family under it (``GenerationError``, ``StorageError``,
``ModerationError``, the bot's refusals), so the two places that turn errors into words (the
Discord command tree's ``on_error`` and ``bot.cli.main``) catch ``SdbotError`` and nothing
broader, and anything else is a bug that is logged with its traceback.

An error says what *kind* of trouble it is, not how to show it: the command line turns the kind
into an exit code, Discord into the tone of its answer. A family sets ``kind`` once on a class;
the translators never need to import the family to tell it apart.
"""

from __future__ import annotations

import enum
from typing import ClassVar


class ErrorKind(enum.StrEnum):
    """Whose move it is after the error."""

    FAILED = "failed"  # sdbot could not do it (a worker crashed, a model would not load)
    BAD_INPUT = "bad_input"  # the request is wrong: it names the value and what is allowed
    BLOCKED = "blocked"  # moderation refused it
    NOT_FOUND = "not_found"  # what it names does not exist (a job, an entry, a watermark)


class SdbotError(Exception):
    """An error sdbot expects and can explain to the person who caused it."""

    kind: ClassVar[ErrorKind] = ErrorKind.FAILED
