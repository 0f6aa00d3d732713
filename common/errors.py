"""The one root of sdbot's own errors.

Each package keeps a small family under it (``GenerationError``, ``StorageError``,
``ModerationError``, the bot's refusals), so the two places that turn errors into words (the
Discord command tree's ``on_error`` and ``bot.cli.main``) catch ``SdbotError`` and nothing
broader, and anything else is a bug that is logged with its traceback.
"""

from __future__ import annotations


class SdbotError(Exception):
    """An error sdbot expects and can explain to the person who caused it."""
