"""After a restart: the jobs a stopped process left open are resumed or ended, and what a fault
left in the output folder is swept.

Only jobs whose lease ran out (or whose holder is a process of this host that is gone) are
taken, each by one process; a job a live process still runs is left to it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from bot.imagine.following import Following
from bot.imagine.leases import LeaseKeeper, lease_owner_dead
from bot.imagine.outcomes import ImagineOutcome, OutcomeCallback
from bot.imagine.pictures import Pictures
from bot.imagine.records import end_quietly, input_images, missing_inputs, options_of, verdict_of
from bot.imagine.rules import gore_policy
from common import metrics
from generation.catalog import Catalog
from generation.protocol import WorkRequest, notify
from generation.queue import JobHandle, JobQueue, QueuedJob, starts_exhausted
from moderation.policy import ImagePolicy, recheck_gore_policy
from moderation.prompts import PromptVerdict
from moderation.reasons import reason_labels
from storage import pictures
from storage.models import JobKind, JobStatus, utcnow
from storage.pictures import StagedState, SweepReport
from storage.records import JobRecord
from storage.repositories import Storage

log = logging.getLogger(__name__)

PolicyNow = Callable[[int | None, bool, PromptVerdict], Awaitable[ImagePolicy]]


class Recovery:
    """Resumes open jobs and keeps their deliveries until each has its outcome."""

    def __init__(
        self,
        storage: Storage,
        queue: JobQueue,
        leases: LeaseKeeper,
        following: Following,
        pictures: Pictures,
        policy_now: PolicyNow,
        catalog: Catalog | None = None,
    ) -> None:
        self.storage = storage
        self.audit = storage.audit  # jobs and their images
        self.queue = queue
        self.leases = leases
        self.following = following
        self.pictures = pictures
        # A job queued again carries the image policy of the settings of now.
        self.policy_now = policy_now
        self.catalog = catalog  # jobs recorded before it name their model by its source
        self.deliveries: dict[int, asyncio.Task[None]] = {}  # job id → its delivery

    async def recover(
        self,
        on_outcome: OutcomeCallback,
        on_held: Callable[[JobRecord], None] | None = None,
    ) -> int:
        """Every open job is taken (or reported to ``on_held`` when a live process holds it),
        then resumed or ended. Queued jobs go back in the queue; a running one is retried once
        (its ``attempts`` say how often a worker started it), then failed with the reason. A
        job is judged under the guild's gore policy of now: one it refuses now ends blocked, its
        member told, and taken out of Redis (or stopped there) when Redis still holds it. With
        Redis, the other jobs the queue still holds are followed where they are (with the
        verdict and policy they were queued with). Each outcome goes to ``on_outcome``. Returns
        how many jobs were resumed.
        """
        resumed = 0
        for candidate in await self.audit.open_jobs():
            record = await self.leases.take(candidate.id)
            if record is None:
                current = await self.audit.get_job(candidate.id)
                if current is not None and not current.status.is_terminal and on_held:
                    on_held(current)
                continue
            if record.kind == JobKind.DESCRIBE:  # nothing to draw: its answer went with it
                reason = "stopped before its description was recorded; ask again"
                await end_quietly(self.audit, record.id, JobStatus.FAILED, reason)
                continue
            verdict = verdict_of(record)
            # Queued again, its request carries the policy of the settings of now (a job the
            # queue still holds keeps the one it was queued with: the worker reads that one),
            # and the pictures it was given, as they were prepared for it.
            policy = await self.policy_now(record.guild_id, record.channel_nsfw, verdict)
            options = options_of(record, self.catalog)
            inputs = await input_images(self.audit, record.id)
            job = QueuedJob(
                WorkRequest(record.id, options, image_policy=policy, inputs=inputs),
                record.guild_id,
                record.user_id,
                record.uid,
            )
            refused = await self._gore_refused_now(record, verdict)
            if refused is not None:  # the guild's gore policy changed while it waited
                # Redis may still hold it (queued, or drawn by a worker): taken out, or stopped.
                taken = await self.queue.cancel(record.id, record.uid)
                log.info("job %d ◆ gore refused now; in the queue: %s", record.id, taken)
                self._track(record.id, self._end_blocked(record, refused, on_outcome))
                continue
            handle = await self.queue.attach(record.id, record.uid)
            if handle is None:
                if record.status is JobStatus.RUNNING and starts_exhausted(record.attempts):
                    reason = (
                        f"stopped {record.attempts} times while running (the bot or its worker "
                        "went away); not retried again"
                    )
                    await end_quietly(self.audit, record.id, JobStatus.FAILED, reason)
                    continue
                gone = missing_inputs(options, inputs)
                if gone is not None:  # ended with the reason, never queued without them
                    log.warning("job %d ◆ not resumed: %s", record.id, gone)
                    await end_quietly(self.audit, record.id, JobStatus.FAILED, gone)
                    continue
                await self.audit.requeue(record.id)
                handle = await self.queue.submit(job, readmit=True)
            resumed += 1
            self._track(record.id, self._deliver(job, handle, verdict, on_outcome))
        if resumed:
            log.info("resumed %d open jobs", resumed)
        return resumed

    def _track(self, job_id: int, delivery: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(delivery)
        self.deliveries[job_id] = task
        task.add_done_callback(functools.partial(self._forget, job_id))

    async def _gore_refused_now(
        self, record: JobRecord, verdict: PromptVerdict
    ) -> PromptVerdict | None:
        """The job's verdict under the guild's gore policy of now, when that refuses it (the
        channel as it was recorded: whether it is still age-restricted is Discord's to say);
        None when the job may still be drawn."""
        if not verdict.gore:
            return None
        here = None
        if record.guild_id is not None:
            here = await self.storage.guild_settings.get(record.guild_id)
        judged = recheck_gore_policy(verdict, gore_policy(here), record.channel_nsfw)
        return None if judged.allowed else judged

    async def _end_blocked(
        self, record: JobRecord, verdict: PromptVerdict, on_outcome: OutcomeCallback
    ) -> None:
        """Ends the job as blocked, with the policy's word, counts its reasons as admission
        counts a blocked prompt's, and tells its member like any blocked job."""
        why = verdict.reasons[-1]
        log.info("job %d ◆ not resumed, blocked: %s", record.id, why)
        await end_quietly(self.audit, record.id, JobStatus.BLOCKED, why)
        for reason in verdict.reasons:
            metrics.PROMPT_BLOCKS.labels(*reason_labels(reason)).inc()
        outcome = ImagineOutcome(
            record.id, JobStatus.BLOCKED, verdict, record.prompt, record.seeds, error=why
        )
        await notify(on_outcome, outcome)

    async def _deliver(
        self,
        job: QueuedJob,
        handle: JobHandle,
        verdict: PromptVerdict,
        on_outcome: OutcomeCallback,
    ) -> None:
        outcome = await self.following.follow(job, handle, verdict)
        await notify(on_outcome, outcome)

    async def wait(self) -> None:
        """Until every job :meth:`recover` resumed has its outcome."""
        while self.deliveries:
            await asyncio.gather(*self.deliveries.values(), return_exceptions=True)

    def _forget(self, job_id: int, _: asyncio.Task[None]) -> None:
        self.deliveries.pop(job_id, None)

    def deliveries_of(self, job_ids: set[int]) -> list[asyncio.Task[None]]:
        """The deliveries :meth:`recover` started for these jobs that are still going."""
        return [task for job_id, task in self.deliveries.items() if job_id in job_ids]

    async def close(self) -> None:
        """Stops following the recovered jobs (they stay open for the next start)."""
        for task in list(self.deliveries.values()):
            task.cancel()
        await asyncio.gather(*self.deliveries.values(), return_exceptions=True)

    async def sweep_files(self) -> SweepReport:
        """Removes what a fault left in the output folder (staging folders, pictures no record
        names) and moves into place the files whose record committed."""
        output_dir = self.pictures.output_dir
        if output_dir is None:
            return SweepReport([], [])
        recorded = await self.audit.image_paths()
        states: dict[str, StagedState] = {}
        if output_dir.is_dir():
            for entry in output_dir.iterdir():
                if entry.name.startswith(pictures.STAGING_PREFIX):
                    uid = entry.name.removeprefix(pictures.STAGING_PREFIX)
                    states[uid] = await self._staged_state(output_dir, uid)
        gone = StagedState(recorded=False, final=None, busy=False)
        return await asyncio.to_thread(
            pictures.sweep, output_dir, recorded, lambda uid: states.get(uid, gone)
        )

    async def _staged_state(self, output_dir: Path, uid: str) -> StagedState:
        record = await self.audit.get_job_by_uid(uid)
        if record is None:
            return StagedState(recorded=False, final=None, busy=False)
        if not record.status.is_terminal:
            held = (
                record.lease_owner is not None
                and record.lease_expires_at is not None
                and record.lease_expires_at > utcnow()
                and not lease_owner_dead(record.lease_owner)
            )
            return StagedState(recorded=False, final=None, busy=held)
        paths = [Path(image.path) for image in record.images if image.path]
        if record.status is not JobStatus.SUCCEEDED or not paths:
            return StagedState(recorded=False, final=None, busy=False)
        return StagedState(recorded=True, final=output_dir / paths[0].parent.name, busy=False)
