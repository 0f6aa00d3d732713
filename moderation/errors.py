"""The moderation package's errors, one family under sdbot's ``SdbotError``.

Each says what was wrong with what a person gave (a list entry, a labelled prompt set) and what
is allowed instead, so the two places that turn errors into words can show it as it is.
"""

from __future__ import annotations

from common.errors import ErrorKind, SdbotError


class ModerationError(SdbotError):
    """Something the moderation rules cannot use; the message names it and what is allowed.

    A prompt the rules refuse is not an error: that is a ``PromptVerdict``.
    """

    kind = ErrorKind.BAD_INPUT


class InvalidTerm(ModerationError):
    """A list entry (a term or a pattern) that cannot be used; the message names it and says
    what is allowed."""


class InvalidThreshold(ModerationError):
    """An open_nsfw threshold outside (0, 1]: the bot's settings refuse one at start-up, so what
    reaches this is a guild's stored value edited by hand."""

    def __init__(self, name: str, value: float) -> None:
        super().__init__(f"{name} must be in (0, 1], got {value}")
        self.name = name
        self.value = value


class InvalidPromptSet(ModerationError):
    """A labelled prompt set (``sdbot bench moderation --set``) that cannot be read as one."""
