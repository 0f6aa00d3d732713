"""The generation package's exception family."""

from __future__ import annotations

from common.errors import ErrorKind, SdbotError


class GenerationError(SdbotError):
    """Base of every error raised by ``generation``."""


class InvalidOption(GenerationError):
    """A request option outside what is allowed; the message names the value and the range."""

    kind = ErrorKind.BAD_INPUT

    def __init__(self, option: str, value: object, allowed: str) -> None:
        super().__init__(f"{option} must be {allowed}, got {value!r}")
        self.option = option
        self.value = value
        self.allowed = allowed


class RateLimited(GenerationError):
    """A request refused by a limit: ``retry_after`` seconds until it would pass (None when it
    depends on other jobs finishing)."""

    kind = ErrorKind.BAD_INPUT

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ModelLoadError(GenerationError):
    """The worker could not load the configured model."""


class CatalogError(ModelLoadError):
    """The operator's catalog cannot be read: a models file, a model, a LoRA or an embedding
    named by a setting (the message starts with it). A settings error: exit 2 on the CLI."""

    kind = ErrorKind.BAD_INPUT


class WorkerCrashed(GenerationError):
    """The worker process died while it held a job."""


class JobTimedOut(GenerationError):
    """A job made no progress for too long; the worker was stopped."""


class WorkerFailed(GenerationError):
    """The worker reported an error for a job (its message carries the cause)."""


class JobCancelled(GenerationError):
    """A running job was cancelled by its owner; it stopped between denoising steps."""

    def __init__(self, step: int, total: int) -> None:
        super().__init__(f"cancelled at step {step} of {total}")
        self.step = step
        self.total = total
