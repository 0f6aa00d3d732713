"""Which process follows which open job, until when: a restart or `sdbot recover` takes only
jobs whose holder is gone."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import update

from storage.engine import SessionFactory
from storage.models import OPEN_STATUSES, Job, JobStatus, utcnow
from storage.records import JobRecord, Lease, job_record


def _span(lease: Lease) -> timedelta:
    return timedelta(seconds=lease.seconds)


class JobLeases:
    """Takes, renews and releases the leases on open jobs. Every method is one short unit of
    work; a job's first lease is written with it (``AuditLog.create_job``)."""

    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    async def take_lease(
        self, job_id: int, lease: Lease, *, dead: Callable[[str], bool] = lambda owner: False
    ) -> JobRecord | None:
        """Takes an open job for ``lease.owner``: when nobody holds it, its lease ran out, its
        holder is ``dead`` (a process of this host that is gone) or it is already ours. Returns
        the job as it was, or None when it is finished or another live process holds it.

        One conditional UPDATE on the lease as it was read, so that of two processes that try
        at once exactly one wins (on SQLite a read-then-write transaction would fail instead).
        """
        now = utcnow()
        async with self._sessions() as session:
            row = await session.get(Job, job_id)
            if row is None or JobStatus(row.status).is_terminal:
                return None
            record = job_record(row)
        owner, until = record.lease_owner, record.lease_expires_at
        free = owner is None or until is None or until <= now or owner == lease.owner or dead(owner)
        if not free:
            return None
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(Job)
                .where(
                    Job.id == job_id,
                    Job.status.in_(OPEN_STATUSES),
                    Job.lease_owner.is_(None) if owner is None else Job.lease_owner == owner,
                    Job.lease_expires_at.is_(None)
                    if until is None
                    else Job.lease_expires_at == until,
                )
                .values(lease_owner=lease.owner, lease_expires_at=now + _span(lease))
                .execution_options(synchronize_session=False)
            )
            taken = result.rowcount == 1  # type: ignore[attr-defined]  # CursorResult at runtime
        return record if taken else None

    async def renew_leases(self, lease: Lease) -> int:
        """The holder is alive: its open jobs' leases run ``lease.seconds`` from now. Returns
        how many it holds."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(Job)
                .where(Job.lease_owner == lease.owner, Job.status.in_(OPEN_STATUSES))
                .values(lease_expires_at=utcnow() + _span(lease))
                .execution_options(synchronize_session=False)
            )
            return int(result.rowcount)  # type: ignore[attr-defined]

    async def release_leases(self, owner: str) -> None:
        """The holder stops following its open jobs (a graceful stop): the next start or
        `sdbot recover` may take them at once."""
        async with self._sessions.begin() as session:
            await session.execute(
                update(Job)
                .where(Job.lease_owner == owner)
                .values(lease_owner=None, lease_expires_at=None)
                .execution_options(synchronize_session=False)
            )
