"""This process's lease on the open jobs it follows: taken when a job is recorded or recovered,
renewed while the process lives, released when it stops, so that another process (or the next
start) takes a job only when the one following it is gone."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import socket
import uuid

from storage.leases import JobLeases
from storage.records import JobRecord, Lease

log = logging.getLogger(__name__)


def lease_owner() -> str:
    """This process as a lease holder: ``host:pid:random`` (a reused pid is not the same)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def lease_owner_dead(owner: str) -> bool:
    """The holder is a process of this host that no longer exists: its lease means nothing."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit() or int(pid_text) == os.getpid():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return False


class LeaseKeeper:
    """Renews this process's leases while it lives (from the first job it takes)."""

    def __init__(self, leases: JobLeases, seconds: float) -> None:
        self.leases = leases
        self.lease = Lease(lease_owner(), seconds)
        self._renewing: asyncio.Task[None] | None = None

    async def take(self, job_id: int) -> JobRecord | None:
        """An open job for this process, if no live process holds it (None: one does, or it
        ended meanwhile); renewed from now on."""
        record = await self.leases.take_lease(job_id, self.lease, dead=lease_owner_dead)
        if record is not None:
            self.keep()
        return record

    def keep(self) -> None:
        """Starts renewing, unless it already does."""
        if self._renewing is None or self._renewing.done():
            # Started by a job's admission, it outlives that job: no job's log fields on it.
            renew = self._renew()
            self._renewing = asyncio.create_task(
                renew, name="sdbot-leases", context=contextvars.Context()
            )

    async def release(self) -> None:
        """Stops renewing and gives up every lease: the next start takes the jobs left open at
        once, not after the lease runs out."""
        if self._renewing is not None:
            self._renewing.cancel()
            await asyncio.gather(self._renewing, return_exceptions=True)
            self._renewing = None
        try:
            await self.leases.release_leases(self.lease.owner)
        except Exception as error:  # a locked database: the leases just run out
            log.warning("could not release the leases of %s: %s", self.lease.owner, error)

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self.lease.seconds / 3)
            try:
                await self.leases.renew_leases(self.lease)
            except Exception as error:  # locked or unreachable: try again; recover may win
                log.warning("could not renew the leases of %s: %s", self.lease.owner, error)
