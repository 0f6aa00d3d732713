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
from storage.retention import PurgeCounts

if TYPE_CHECKING:
    from bot.imagine.service import ImagineService
    from generation.queue import JobQueue

log = logging.getLogger(__name__)

OPERATOR = 0  # the actor recorded when none is named (the command line)
FORGET_ACTION = "forget"  # the moderation action that records a deletion
# Why a cancelled job ended, as its record and its post say (in public: nothing more).
CANCELLED_WHY = "cancelled: its requester's data was deleted"
CANCELLED_MADE_FROM = "cancelled: the data of the member it was made from was deleted"
STOP_WAIT_S = 60.0  # how long a running job is given to stop and be recorded by its follower
FORGET_ROUNDS = 3  # cancel-and-purge rounds, for jobs the member asks for while it runs


@dataclass(frozen=True)
class ForgetReport:
    """What was deleted for one member (``guild_id`` None: in every guild and in DMs). The
    jobs are the member's and those made from them by a control, whoever clicked (their
    prompt and pictures are the member's; they keep their clicker's id)."""

    user_id: int
    guild_id: int | None
    jobs: int  # audit records purged (the rows keep ids, verdicts, hashes)
    images: int  # image files deleted
    inputs: int  # pictures the member gave, or made and others gave, dropped
    redis_entries: int  # jobs in Redis whose entries were removed (counted per job, not key)
    cancelled: int  # open jobs that were cancelled first
    prompts: int = 0  # of ``jobs``, those whose prompts were still there (not purged before)
    # Running jobs whose worker did not stop within STOP_WAIT_S: recorded cancelled and purged
    # all the same; if the worker still finishes, its follower finds the outcome written and
    # discards the pictures, and what escapes is removed by `sdbot recover`'s sweep.
    unstopped: tuple[int, ...] = ()
    # Open jobs found after the last round (the member kept asking): not deleted; run again.
    still_open: tuple[int, ...] = ()

    @property
    def nothing(self) -> bool:
        """Nothing was left to delete (a second call)."""
        return (
            not (self.jobs or self.images or self.inputs or self.redis_entries or self.cancelled)
            and not self.still_open
        )

    def counts(self) -> dict[str, int]:
        """The counts alone: what the moderation action and the log line keep."""
        return {
            "jobs": self.jobs,
            "prompts": self.prompts,
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
    """Cancels the member's open jobs (and those made from theirs), purges their prompts and
    pictures (in ``guild_id`` only when given), deletes their image files and Redis entries,
    and records that it was done (a moderation action with the counts, never the prompts).
    ``via``: cli, mod or privacy. Idempotent: a second call finds nothing more and says so.

    A job the member asks for while this runs is caught by the next round: each round looks
    again for open jobs in scope, up to ``FORGET_ROUNDS``; one found after the last is named
    in ``still_open`` (the report then never says all was deleted)."""
    storage = service.storage
    output_dir = service.pictures.output_dir
    known: frozenset[int] = frozenset()  # the member's jobs found so far (the purge drops ids)
    purged, cancelled, redis_entries = PurgeCounts(), 0, 0
    unstopped: list[int] = []
    for _ in range(FORGET_ROUNDS):
        held = await storage.retention.member_data(user_id, guild_id, known)
        if not held.jobs:
            break
        ended, late = await _cancel_open_jobs(service, held.open_ids, held.own)
        cancelled += ended
        unstopped += late
        # Redis before the database: the uids are found by the member's id, which the purge
        # drops; a run cut short between the two finds the rest the next time.
        redis_entries += await forget_in_queue(service.queue, held.uids)
        purged += await storage.retention.forget_member(user_id, guild_id, output_dir, known=known)
        known |= held.own
    left = await storage.retention.member_data(user_id, guild_id, known)
    await forget_member_keys(service.queue, user_id, guild_id)
    PURGED_JOBS.labels(reason=PurgeReason.FORGET.value).inc(purged.jobs)
    report = ForgetReport(
        user_id=user_id,
        guild_id=guild_id,
        jobs=purged.jobs,
        images=purged.images,
        inputs=purged.inputs,
        redis_entries=redis_entries,
        cancelled=cancelled,
        prompts=purged.prompts,
        unstopped=tuple(unstopped),
        still_open=left.open_ids,
    )
    await storage.moderation.record(
        guild_id=guild_id,
        actor_id=OPERATOR if actor_id is None else actor_id,
        action=FORGET_ACTION,
        target_user_id=user_id,
        details={**report.counts(), "via": via},
    )
    log.info(
        "forgot user %d %s via %s ◆ %d jobs purged (%d prompts), %d image files, %d pictures "
        "given, %d jobs in Redis, %d open jobs cancelled, not stopped in time: %s, still "
        "open: %s",
        user_id,
        "everywhere" if guild_id is None else f"in guild {guild_id}",
        via,
        report.jobs,
        report.prompts,
        report.images,
        report.inputs,
        report.redis_entries,
        report.cancelled,
        list(report.unstopped) or "none",
        list(report.still_open) or "none",
    )
    return report


async def forget_preview(
    service: ImagineService, *, user_id: int, guild_id: int | None
) -> ForgetReport:
    """What ``forget_member`` would delete now, counted (nothing changes): ``cancelled`` is
    the open jobs it would cancel, ``images`` the image files recorded, ``prompts`` the
    records not purged before."""
    held = await service.storage.retention.member_data(user_id, guild_id)
    return ForgetReport(
        user_id=user_id,
        guild_id=guild_id,
        jobs=held.jobs,
        images=held.images,
        inputs=held.inputs,
        redis_entries=await forget_in_queue(service.queue, held.uids, count=True),
        cancelled=held.open_jobs,
        prompts=held.prompts,
    )


async def _cancel_open_jobs(
    service: ImagineService, job_ids: tuple[int, ...], own: frozenset[int]
) -> tuple[int, list[int]]:
    """Stops these queued and running jobs and sees each recorded cancelled. A queued one (or
    one no queue here knows) is recorded at once: it will never make a picture. A running one
    is left to its follower, which records how it ended once its worker stops (its pictures,
    when the worker finished first, are then purged with the rest), and is recorded here only
    if that does not happen within ``STOP_WAIT_S``; a follower that hears later finds the
    outcome written and discards its pictures. ``own``: the member's (the others were made
    from theirs by someone else's click). Returns how many ended and those that did not stop
    in time."""
    ended, late = 0, []
    for job_id in job_ids:
        why = CANCELLED_WHY if job_id in own else CANCELLED_MADE_FROM
        try:
            outcome = await service.stop(job_id, why.removeprefix("cancelled: "))
        except Exception:  # the queue may be away; the record ends all the same
            log.warning("job %d ◆ could not be cancelled in the queue", job_id, exc_info=True)
            outcome = CancelOutcome.UNKNOWN
        if outcome == CancelOutcome.STOPPING and not await _until_ended(service, job_id):
            late.append(job_id)
        with contextlib.suppress(JobAlreadyFinished):  # it ended meanwhile: purged all the same
            await service.storage.audit.record_outcome(job_id, JobStatus.CANCELLED, error=why)
        ended += 1
    return ended, late


async def _until_ended(service: ImagineService, job_id: int) -> bool:
    """Waits for a stopping job's record to end, up to ``STOP_WAIT_S``; False: it did not."""
    deadline = time.monotonic() + STOP_WAIT_S
    while time.monotonic() < deadline:
        record = await service.storage.audit.get_job(job_id)
        if record is None or record.status.is_terminal:
            return True
        await asyncio.sleep(0.2)
    log.warning("job %d ◆ did not stop within %.0f s; recorded cancelled", job_id, STOP_WAIT_S)
    return False


async def forget_in_queue(queue: JobQueue, uids: tuple[str, ...], *, count: bool = False) -> int:
    """Deletes the jobs' entries from Redis when the queue is there (``count``: only counts
    them); the in-process queue keeps nothing once a job ended. Returns how many jobs had
    entries (not how many keys)."""
    from generation.queue.redis import RedisQueue  # redis is only imported when it is used

    if not uids or not isinstance(queue, RedisQueue):
        return 0
    from generation.queue.redis.forget import count_jobs, forget_jobs

    act = count_jobs if count else forget_jobs
    return await act(queue.client, queue.prefix, uids)


async def forget_member_keys(queue: JobQueue, user_id: int, guild_id: int | None) -> None:
    """Deletes the Redis keys that name the member once their jobs ended, as far as that is
    safe for the queue (``generation.queue.redis.forget``); the rate-limit buckets stay."""
    from generation.queue.redis import RedisQueue

    if not isinstance(queue, RedisQueue):
        return
    from generation.queue.redis.forget import forget_member_keys as forget_keys

    await forget_keys(queue.client, queue.prefix, user_id, guild_id)
