"""Following a queued job to its end: its events recorded in the audit log as they come, its
post-ready pictures (the worker decided and drew them) written and recorded, and one terminal
status with the reason whatever happens; and the owner's (or a moderator's) cancel of a job in
the queue."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from bot.imagine.errors import NotYours, SaveFailed
from bot.imagine.outcomes import ImagineOutcome, QueuedCallback, ShownImage
from bot.imagine.pictures import Pictures
from bot.imagine.records import end_quietly, new_image
from common import logs
from generation.errors import GenerationError
from generation.protocol import Progress, WorkResult, notify
from generation.queue import (
    Cancelled,
    CancelOutcome,
    Done,
    Failed,
    JobHandle,
    JobQueue,
    Queued,
    QueuedJob,
    Started,
)
from generation.queue.contract import ProgressCallback
from moderation.prompts import PromptVerdict
from storage.models import JobStatus
from storage.records import InputRecord
from storage.repositories import Storage

log = logging.getLogger(__name__)


class Following:
    """Follows submitted jobs; knows which of them a worker runs now."""

    def __init__(self, storage: Storage, queue: JobQueue, pictures: Pictures) -> None:
        self.audit = storage.audit  # jobs and their images
        self.queue = queue
        self.pictures = pictures
        self.running: set[int] = set()  # followed jobs a worker has started
        self.leaving_open = False  # the process stops: a cancelled follower leaves its job open
        self._stop_reasons: dict[int, str] = {}  # job id → why it was stopped, for its post

    def leave_jobs_open(self) -> None:
        """The process is stopping: from now on a follower that is cancelled leaves its job
        open in the audit log (the next start resumes it) instead of cancelling it."""
        self.leaving_open = True

    async def follow(
        self,
        job: QueuedJob,
        handle: JobHandle,
        verdict: PromptVerdict,
        *,
        on_progress: ProgressCallback | None = None,
        on_queued: QueuedCallback | None = None,
        started: float | None = None,
    ) -> ImagineOutcome:
        """Reads a submitted job's events to its outcome, recording each step in the audit log;
        its pictures come post-ready from the worker, decided under the image policy its
        request carries. Whatever happens, the record ends in one terminal status with the
        reason.

        The job's fields (job, guild, then the worker that takes it) are bound for the rest
        of the calling task, so that the lines of its posting carry them too: a task follows
        one job at a time."""
        started = time.perf_counter() if started is None else started
        job_id, options = job.job_id, job.request.options
        logs.bind_job(job_id, job.guild_id)

        def ended(status: JobStatus, reason: str) -> ImagineOutcome:
            log.warning("%s ◆ job %d ◆ %s", status.value, job_id, reason)
            return ImagineOutcome(
                job_id,
                status,
                verdict,
                options.prompt,
                options.seeds,
                error=reason,
                model=options.model,
                loras=options.loras,
            )

        try:
            result: WorkResult | None = None
            async for event in handle.events():
                if isinstance(event, Queued):
                    await notify(on_queued, event)
                elif isinstance(event, Started):
                    logs.bind(worker=event.worker or None)
                    self.running.add(job_id)
                    # A bot that restarted replays the events: the attempt number, not the
                    # count of Started events, is what the record keeps.
                    attempts = await self.audit.mark_running(job_id, event.attempt)
                    if attempts > 1:
                        log.warning("retrying ◆ job %d ◆ attempt %d", job_id, attempts)
                elif isinstance(event, Progress):
                    await notify(on_progress, event)
                elif isinstance(event, Done):
                    result = event.result
                elif isinstance(event, Failed):
                    await end_quietly(self.audit, job_id, JobStatus.FAILED, event.reason)
                    return ended(JobStatus.FAILED, event.reason)
                elif isinstance(event, Cancelled):
                    why = self._stop_reasons.pop(job_id, None)
                    reason = f"{event.reason} ({why})" if why else event.reason
                    await end_quietly(self.audit, job_id, JobStatus.CANCELLED, reason)
                    return ended(JobStatus.CANCELLED, reason)
            assert result is not None, "a job's events end with Done, Failed or Cancelled"
            worker_done = time.perf_counter()
            shown, grid = await self._keep_pictures(job, result)
            embeddings, inputs = await self._recorded(job_id)
        except (GenerationError, SaveFailed) as error:
            reason = str(error)
            await asyncio.shield(end_quietly(self.audit, job_id, JobStatus.FAILED, reason))
            return ended(JobStatus.FAILED, reason)
        except asyncio.CancelledError:
            if not self.leaving_open:  # the requester gave up: cancelled, wherever it is
                await asyncio.shield(self._cancel_and_record(job_id, "cancelled"))
            raise
        except BaseException as error:
            reason = f"internal error: {type(error).__name__}: {error}"
            await asyncio.shield(self._cancel_and_record(job_id, reason, JobStatus.FAILED))
            raise
        finally:
            self.running.discard(job_id)

        finished = time.perf_counter()
        timings = {
            "diffusion": result.diffusion_ms,
            "worker_postprocess": result.postprocess_ms,
            "grid_and_files": (finished - worker_done) * 1000,
            "total": (finished - started) * 1000,
        }
        if result.model_load_ms:  # the worker loaded this job's model first
            timings["model_load"] = result.model_load_ms
        log.info("succeeded ◆ job %d ◆ %d images ◆ %.0f ms", job_id, len(shown), timings["total"])
        return ImagineOutcome(
            job_id,
            JobStatus.SUCCEEDED,
            verdict,
            options.prompt,
            options.seeds,
            tuple(shown),
            grid,
            timings_ms=timings,
            model=options.model,
            loras=options.loras,
            embeddings=embeddings,
            notes=result.notes,
            inputs=inputs,
        )

    async def _recorded(self, job_id: int) -> tuple[tuple[str, ...], tuple[InputRecord, ...]]:
        """The embedding tokens the job's prompts use and the pictures it was given, as
        admission recorded them."""
        record = await self.audit.get_job(job_id)
        return ((), ()) if record is None else (record.embeddings, record.inputs)

    async def _keep_pictures(
        self, job: QueuedJob, result: WorkResult
    ) -> tuple[list[ShownImage], ShownImage | None]:
        """Takes a finished job's pictures, records them and moves their files into place: the
        files are written under a staging name first and take their names only once the row
        with their paths committed, so no fault leaves a picture without its record. Returns
        the variants and what is posted for them (the grid; an upscale's one picture, unless it
        is withheld)."""
        job_id = job.job_id
        drawn = await self.pictures.draw(job_id, job.uid, result.post)
        shown, grid = drawn.images, drawn.grid
        try:
            await self.audit.record_outcome(
                job_id,
                JobStatus.SUCCEEDED,
                images=[new_image(image) for image in shown + ([grid] if grid else [])],
                generation_ms=result.diffusion_ms + result.postprocess_ms,
            )
        except BaseException:
            if drawn.staged is not None:
                await asyncio.shield(asyncio.to_thread(drawn.staged.discard))
            raise
        if drawn.staged is not None:
            # A forget or purge may come between the commit and this rename: it deletes the
            # staging folder first, then the job folder (storage.pictures.delete_pictures), so
            # the rename either fails here or lands before the job folder goes.
            try:
                await asyncio.to_thread(drawn.staged.publish)
            except FileNotFoundError:
                log.info("job %d ◆ its files were purged before they moved into place", job_id)
            except OSError:  # recorded: `sdbot recover` moves the folder into place
                log.exception("job %d ◆ could not move its files into place", job_id)
        if grid is None and not shown[0].withheld:
            grid = shown[0]
        return shown, grid

    async def cancel(self, job_id: int, user_id: int | None) -> str:
        """The owner cancels a job: a queued one never runs, a running one stops at its next
        denoising step. Returns what happened, in words; raises NotYours for someone else's."""
        record = await self.audit.get_job(job_id)
        if record is None:
            raise NotYours(f"there is no job {job_id}")
        if record.user_id != user_id:
            raise NotYours(f"job {job_id} is not yours to cancel")
        if record.status.is_terminal:
            return f"job {job_id} already ended: {record.status.value}"
        outcome = await self.stop(job_id, "by its requester")
        if outcome == CancelOutcome.DEQUEUED:
            return f"job {job_id} was cancelled before it started"
        if outcome == CancelOutcome.STOPPING:
            return f"job {job_id} stops at its next step"
        return f"job {job_id} is not in the queue any more"

    async def stop(self, job_id: int, why: str) -> str:
        """Cancels a job in the queue; ``why`` (who stopped it, in words that may be shown in
        public: never a ban's reason) ends the reason its record and its post give."""
        self._stop_reasons[job_id] = why
        record = await self.audit.get_job(job_id)
        with logs.bound(job=job_id, guild=None if record is None else record.guild_id):
            outcome = await self.queue.cancel(job_id, None if record is None else record.uid)
        if outcome not in (CancelOutcome.DEQUEUED, CancelOutcome.STOPPING):
            self._stop_reasons.pop(job_id, None)
        return outcome

    async def _cancel_and_record(
        self, job_id: int, reason: str, status: JobStatus = JobStatus.CANCELLED
    ) -> None:
        with contextlib.suppress(Exception):  # the queue may be closing; the record stands
            await self.queue.cancel(job_id)
        await end_quietly(self.audit, job_id, status, reason)
