"""A member's data deleted everywhere (database, image folder, Redis) and recorded: `sdbot
forget`, `/mod forget user` and `/privacy delete` all come here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from common.metrics import PURGED_JOBS
from generation.queue.contract import CancelOutcome
from storage.errors import JobAlreadyFinished
from storage.models import JobStatus, PurgeReason

if TYPE_CHECKING:
    from bot.imagine.service import ImagineService
    from generation.queue import JobQueue

log = logging.getLogger(__name__)

OPERATOR = 0  # the actor recorded when none is named (the command line)
FORGET_ACTION = "forget"  # the moderation action that records a deletion
# Why a cancelled job ended, as its record and its post say (in public: nothing more).
CANCELLED_WHY = "cancelled: its requester's data was deleted"
STOP_WAIT_S = 60.0  # how long a running job is given to stop and be recorded by its follower


@dataclass(frozen=True)
class ForgetReport:
    """What was deleted for one member (``guild_id`` None: in every guild and in DMs)."""

    user_id: int
    guild_id: int | None
    jobs: int  # audit records whose prompts were purged (the rows keep ids, verdicts, hashes)
    images: int  # image files deleted
    inputs: int  # pictures the member gave, dropped
    redis_entries: int  # job entries removed from Redis
    cancelled: int  # open jobs of the member's that were cancelled first

    @property
    def nothing(self) -> bool:
        """Nothing was left to delete (a second call)."""
        return not (self.jobs or self.images or self.inputs or self.redis_entries or self.cancelled)

    def counts(self) -> dict[str, int]:
        """The counts alone: what the moderation action and the log line keep."""
        return {
            "jobs": self.jobs,
            "images": self.images,
            "inputs": self.inputs,
            "redis_entries": self.redis_entries,
            "cancelled": self.cancelled,
        }


async def forget_member(
    service: ImagineService,
    *,
    user_id: int,
    guild_id: int | None,
    actor_id: int | None,
    via: str,
) -> ForgetReport:
    """Cancels the member's open jobs, purges their prompts and pictures (in ``guild_id``
    only when given), deletes their image files and Redis entries, and records that it was
    done (a moderation action with the counts, never the prompts). ``via``: cli, mod or
    privacy. Idempotent: a second call finds nothing more and says so."""
    storage = service.storage
    cancelled = await _cancel_open_jobs(service, user_id, guild_id)
    # Redis before the database: the uids are found by the member's id, which the purge drops;
    # a run cut short between the two finds the rest the next time.
    held = await storage.retention.member_data(user_id, guild_id)
    redis_entries = await forget_in_queue(service.queue, held.uids)
    purged = await storage.retention.forget_member(user_id, guild_id, service.pictures.output_dir)
    PURGED_JOBS.labels(reason=PurgeReason.FORGET.value).inc(purged.jobs)
    report = ForgetReport(
        user_id=user_id,
        guild_id=guild_id,
        jobs=purged.jobs,
        images=purged.images,
        inputs=purged.inputs,
        redis_entries=redis_entries,
        cancelled=cancelled,
    )
    await storage.moderation.record(
        guild_id=guild_id,
        actor_id=OPERATOR if actor_id is None else actor_id,
        action=FORGET_ACTION,
        target_user_id=user_id,
        details={**report.counts(), "via": via},
    )
    log.info(
        "forgot user %d %s via %s ◆ %d jobs purged, %d image files, %d pictures given, "
        "%d Redis entries, %d open jobs cancelled",
        user_id,
        "everywhere" if guild_id is None else f"in guild {guild_id}",
        via,
        report.jobs,
        report.images,
        report.inputs,
        report.redis_entries,
        report.cancelled,
    )
    return report


async def forget_preview(
    service: ImagineService, *, user_id: int, guild_id: int | None
) -> ForgetReport:
    """What ``forget_member`` would delete now, counted (nothing changes): ``cancelled`` is
    the open jobs it would cancel, ``images`` the image files recorded."""
    held = await service.storage.retention.member_data(user_id, guild_id)
    return ForgetReport(
        user_id=user_id,
        guild_id=guild_id,
        jobs=held.jobs,
        images=held.images,
        inputs=held.inputs,
        redis_entries=await forget_in_queue(service.queue, held.uids, count=True),
        cancelled=held.open_jobs,
    )


async def _cancel_open_jobs(service: ImagineService, user_id: int, guild_id: int | None) -> int:
    """Stops the member's queued and running jobs and sees each recorded cancelled. A queued
    one (or one no queue here knows) is recorded at once: it will never make a picture. A
    running one is left to its follower, which records how it ended once its worker stops
    (its pictures, when the worker finished first, are then purged with the rest), and is
    recorded here only if that does not happen within ``STOP_WAIT_S``; a follower that hears
    later finds the outcome written and discards its pictures. Returns how many ended."""
    ended = 0
    for job in await service.storage.audit.open_jobs(guild_id=guild_id, user_id=user_id):
        try:
            outcome = await service.stop(job.id, "its requester's data was deleted")
        except Exception:  # the queue may be away; the record ends all the same
            log.warning("job %d ◆ could not be cancelled in the queue", job.id, exc_info=True)
            outcome = CancelOutcome.UNKNOWN
        if outcome == CancelOutcome.STOPPING:
            await _until_ended(service, job.id)
        with contextlib.suppress(JobAlreadyFinished):  # it ended meanwhile: purged all the same
            await service.storage.audit.record_outcome(
                job.id, JobStatus.CANCELLED, error=CANCELLED_WHY
            )
        ended += 1
    return ended


async def _until_ended(service: ImagineService, job_id: int) -> None:
    """Waits for a stopping job's record to end, up to ``STOP_WAIT_S``."""
    deadline = time.monotonic() + STOP_WAIT_S
    while time.monotonic() < deadline:
        record = await service.storage.audit.get_job(job_id)
        if record is None or record.status.is_terminal:
            return
        await asyncio.sleep(0.2)
    log.warning("job %d ◆ did not stop within %.0f s; recorded cancelled", job_id, STOP_WAIT_S)


async def forget_in_queue(queue: JobQueue, uids: tuple[str, ...], *, count: bool = False) -> int:
    """Deletes the jobs' entries from Redis when the queue is there (``count``: only counts
    them); the in-process queue keeps nothing once a job ended. Returns how many keys."""
    from generation.queue.redis import RedisQueue  # redis is only imported when it is used

    if not uids or not isinstance(queue, RedisQueue):
        return 0
    from generation.queue.redis.forget import count_jobs, forget_jobs

    act = count_jobs if count else forget_jobs
    return await act(queue.client, queue.prefix, uids)
