"""The storage package's exception family."""

from __future__ import annotations


class StorageError(Exception):
    """Base of every error raised by ``storage``."""


class JobNotFound(StorageError):
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
    """The database schema is older (or newer) than this code expects."""

    def __init__(self, current: str | None, head: str) -> None:
        where = "has no sdbot schema yet" if current is None else f"is at revision {current}"
        super().__init__(
            f"the database {where} but this sdbot needs revision {head}: run `sdbot db upgrade`"
        )
        self.current = current
        self.head = head
