"""The imagine path's refusals and errors: each says, in words a member may read, what stopped
the request; the Discord tree and the CLI turn them into text (they derive from the one root)."""

from __future__ import annotations

from common.errors import ErrorKind, SdbotError


class ImagineError(SdbotError):
    """Base of every error the imagine path raises of its own."""


class NotYours(ImagineError):
    """A user asked to act on a job that does not exist or belongs to someone else."""

    kind = ErrorKind.NOT_FOUND


class ShuttingDown(ImagineError):
    """The bot is stopping: it takes no new work until it starts again."""


class ControlUnavailable(ImagineError):
    """A control (upscale, vary, reroll, zoom) that cannot start a job on this one; the message
    says why."""

    kind = ErrorKind.BAD_INPUT


class SaveFailed(ImagineError):
    """The images could not be written to the output folder."""
