"""The storage package's exception family, under sdbot's one root.

Each error's message already reads well to the person who caused it; an error about a value
also carries the value's name, so a front end that calls it something else (``/mod settings``
says ``max_size`` where storage says ``max_side``) renders it with ``message_for`` instead of
rewriting the text.
"""

from __future__ import annotations

from typing import ClassVar

from common.errors import ErrorKind, SdbotError


class StorageError(SdbotError):
    """Base of every error raised by ``storage``."""


class InvalidValue(StorageError):
    """A value storage will not keep: ``name`` must ``requirement``, and ``value`` does not."""

    kind: ClassVar[ErrorKind] = ErrorKind.BAD_INPUT

    def __init__(self, name: str, value: object, requirement: str) -> None:
        self.name = name
        self.value = value
        self.requirement = requirement
        super().__init__(self.message_for(name))

    def message_for(self, name: str) -> str:
        """The message with the value called ``name`` (what the person typed)."""
        return f"{name} must {self.requirement}, got {self.value!r}"


class UnknownSettings(StorageError):
    """Settings storage does not have."""

    kind: ClassVar[ErrorKind] = ErrorKind.BAD_INPUT

    def __init__(self, names: set[str], known: tuple[str, ...]) -> None:
        self.names = sorted(names)
        self.known = known
        super().__init__(f"unknown guild settings {self.names}; known: {', '.join(known)}")


class EmptyTerm(InvalidValue):
    """A block/allow/force-safe entry that is only blank."""

    def __init__(self, term: str) -> None:
        super().__init__("term", term, "not be empty")

    def message_for(self, name: str) -> str:
        return f"a {name} must not be empty"


class InvalidDatabaseUrl(StorageError, ValueError):
    """A database URL sdbot cannot use; the message never repeats the URL (it may carry a
    password). A ``ValueError`` too: settings validation (pydantic) turns those into its own."""

    kind: ClassVar[ErrorKind] = ErrorKind.BAD_INPUT


class JobNotFound(StorageError):
    kind: ClassVar[ErrorKind] = ErrorKind.NOT_FOUND

    def __init__(self, job_id: int) -> None:
        super().__init__(f"no job with id {job_id}")
        self.job_id = job_id


class JobAlreadyFinished(StorageError):
    """A job reaches exactly one terminal status; a second outcome is a bug upstream."""

    def __init__(self, job_id: int, status: str) -> None:
        super().__init__(f"job {job_id} already finished with status {status!r}")
        self.job_id = job_id
        self.status = status


class DatabaseBehind(StorageError):
    """The database schema is older (or newer) than this code expects: the person running sdbot
    fixes it with ``sdbot db upgrade``, which the message says."""

    kind: ClassVar[ErrorKind] = ErrorKind.BAD_INPUT

    def __init__(self, current: str | None, head: str) -> None:
        where = "has no sdbot schema yet" if current is None else f"is at revision {current}"
        super().__init__(
            f"the database {where} but this sdbot needs revision {head}: run `sdbot db upgrade`"
        )
        self.current = current
        self.head = head
