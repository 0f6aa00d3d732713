"""``sdbot worker``'s side of the Redis queue: claim a batch of jobs that can share one pipeline
call in fair order (or the entries of a worker that went silent), draw it on the model process,
and while its pictures are checked, marked and encoded, claim and draw the next one; each job's
result is stored and the job ended with its own event.

A worker claims a batch by moving its jobs from the fair order into the ``work`` stream and
reading them in one script (``claims.CLAIM_BATCH``), so each job is a pending entry of that
worker from the first instant. One heartbeat keeps every entry the worker holds; a worker that
stops answering (no heartbeat for ``reclaim_after_s``) loses its entries to the next worker that
looks; each entry's delivery count says how often its job started, and a job started
``MAX_STARTS`` times is failed, not started again. Cancels stay per job (``cancel:UID``, read
between denoising steps). One batch draws at a time; one more may be finishing meanwhile.

Every line it logs carries the worker's name, and while it handles a job the job's id and
guild (``common.logs``); each job taken over from a silent worker counts in
``WORKER_TAKEOVERS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from common import logs, metrics
from generation.protocol import Progress, WorkRequest
from generation.queue.batch import BatchOutcome, BatchPolicy, draw_batch
from generation.queue.contract import MAX_STARTS, QueuedJob
from generation.queue.events import Done, Failed, Started, Terminal, encode_event
from generation.queue.fair import Throughput
from generation.queue.redis.claims import Claims
from generation.queue.redis.codec import UnreadableRequest, decode_payload, encode_result
from generation.queue.redis.scripts import KEEP_S, Scripts, connect, ensure_group, text

if TYPE_CHECKING:
    from generation.supervisor import WorkerSupervisor

log = logging.getLogger(__name__)

# How many queued jobs past the head (or idle entries) one claim looks at for companions.
LOOKAHEAD = 64


@dataclass(frozen=True)
class Claimed:
    entry: bytes
    request: WorkRequest
    deliveries: int
    previous: str = ""
    uid: str = ""  # the job's identity: names its keys and travels in its events
    guild: int | None = None  # for the log lines (None: none, or not known)

    def fields(self) -> contextlib.AbstractContextManager[None]:
        """Binds the job's id and guild to the lines logged inside."""
        return logs.bound(job=self.request.job_id, guild=self.guild)


def guild_of(value: Any) -> int | None:
    """A guild as a job's key names it (``-``: none)."""
    try:
        return int(text(value))
    except ValueError:
        return None


def batches_of(claimed: Sequence[Claimed], policy: BatchPolicy) -> list[list[Claimed]]:
    """The claimed jobs as batches that may each run in one call, in their order. The scripts
    compare digests of batch keys; this compares the keys, and keeps a job id once a batch
    (two bots with databases of their own may share the queue)."""
    batches: list[list[Claimed]] = []
    for job in claimed:
        size = len(job.request.options.seeds)
        for batch in batches:
            if (
                batch[0].request.batch_key == job.request.batch_key
                and len(batch) < policy.max_jobs
                and sum(len(b.request.options.seeds) for b in batch) + size <= policy.max_images
                and all(b.request.job_id != job.request.job_id for b in batch)
            ):
                batch.append(job)
                break
        else:
            batches.append([job])
    return batches


class RedisWorker:
    """``sdbot worker``: takes batches from Redis in fair order and draws them on its model
    process, finishing one batch's pictures while the next one draws."""

    def __init__(
        self,
        client: aioredis.Redis,
        supervisor: WorkerSupervisor,
        *,
        prefix: str = "sdbot",
        name: str | None = None,
        reclaim_after_s: float = 60.0,
        batch: BatchPolicy | None = None,
        lookahead: int = LOOKAHEAD,
    ) -> None:
        self.client = client
        self.supervisor = supervisor
        self.prefix = prefix
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.reclaim_after_s = reclaim_after_s
        self.batch = batch or BatchPolicy()
        self.lookahead = lookahead
        self.scripts = Scripts(client)
        self.claims = Claims(client)
        self.throughput = Throughput()
        self.jobs_done = 0  # ended here: done, failed or cancelled
        self._held: dict[bytes, str] = {}  # every entry this worker holds → its job's uid
        self._finishing: set[asyncio.Task[None]] = set()
        self._finishing_ids: dict[asyncio.Task[None], set[int]] = {}  # their jobs' ids

    @classmethod
    async def connect(cls, url: str, supervisor: WorkerSupervisor, **options: Any) -> RedisWorker:
        client = await connect(url)
        await ensure_group(client, options.get("prefix", "sdbot"))
        return cls(client, supervisor, **options)

    async def close(self) -> None:
        await self.client.aclose()

    async def run(self, stop: asyncio.Event) -> None:
        """Takes batches until ``stop`` is set; the batches in hand finish first. Every line
        logged meanwhile (here and in the tasks it starts) names this worker."""
        with logs.bound(worker=self.name):
            await self._run(stop)

    async def _run(self, stop: asyncio.Event) -> None:
        await self.supervisor.start()
        await self._seen()
        log.info("worker %s ◆ waiting for jobs ◆ prefix %s", self.name, self.prefix)
        heartbeat = asyncio.create_task(self._heartbeat())
        try:
            while not stop.is_set():
                await self._step_through_redis_errors()
            if self._finishing:
                await asyncio.wait(self._finishing)
        finally:
            # Stopped at once: the entries in hand stay pending, for another worker to take.
            for task in (heartbeat, *self._finishing):
                task.cancel()

    async def _step_through_redis_errors(self) -> None:
        try:
            await self._step()
        except ResponseError as error:
            if "NOGROUP" not in str(error):
                log.warning("worker %s ◆ Redis: %s; retrying in 1 s", self.name, error)
                await asyncio.sleep(1)
                return
            # Redis came back empty (restarted without its data): the stream and its consumer
            # group are made again, as at connect.
            await ensure_group(self.client, self.prefix)
            log.warning("worker %s ◆ Redis lost the consumer group; made it again", self.name)
        except aioredis.RedisError as error:  # Redis restarting: try again in a moment
            log.warning("worker %s ◆ Redis: %s; retrying in 1 s", self.name, error)
            await asyncio.sleep(1)

    async def _step(self) -> None:
        """Claims a batch and draws it, or waits (at most about a second) for jobs."""
        claimed = await self.next_batch()
        if not claimed:
            await self._seen()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.client.blpop([f"{self.prefix}:wake"], timeout=1), 5)
            return
        runnable = []
        for job in claimed:
            if job.deliveries > MAX_STARTS:
                reason = f"its worker went away twice (last: {job.previous}); not retried again"
                with job.fields():
                    log.warning("job %d ◆ %s", job.request.job_id, reason)
                    await self._end(job.entry, job.uid, Failed(reason))
            else:
                runnable.append(job)
        batches = batches_of(runnable, self.batch)
        for index, batch in enumerate(batches):
            try:
                # A job id of a batch still being finished here (two bots with databases of
                # their own share the queue) waits for it: answers are routed by job id.
                ids = {job.request.job_id for job in batch}
                while busy := [t for t, held in self._finishing_ids.items() if held & ids]:
                    await asyncio.wait(busy)
                await self._draw(batch)
            except BaseException:  # the batches not sent go idle, for a worker to take over
                for later in batches[index + 1 :]:
                    for job in later:
                        self._held.pop(job.entry, None)
                raise

    async def next_batch(self) -> list[Claimed]:
        """Entries of a worker gone silent first, else the next batch in fair order; this
        worker holds each one until it ends it (a job it cannot read is failed at once). Waits,
        first, while two batches are being finished here."""
        while len(self._finishing) > 1:
            await asyncio.wait(self._finishing, return_when=asyncio.FIRST_COMPLETED)
        policy = [self.batch.max_jobs, self.batch.max_images, self.lookahead]
        idle_ms = int(self.reclaim_after_s * 1000)
        answer = await self.claims.reclaim(args=[self.prefix, self.name, idle_ms, *policy])
        if answer:  # taken over from a worker that went silent (never from this one)
            metrics.WORKER_TAKEOVERS.inc(sum(1 for row in answer if text(row[4]) != self.name))
        else:
            answer = await self.claims.claim(args=[self.prefix, self.name, *policy])
        claimed, unreadable = [], []
        for entry, uid, payload, deliveries, previous, guild, *blobs in answer or ():
            self._held[entry] = text(uid)
            try:
                request, uid = decode_payload(payload, blobs)
            except UnreadableRequest as error:  # queued by another version: fail it, go on
                with logs.bound(job=error.job_id, guild=guild_of(guild)):
                    log.warning("job %s ◆ %s", error.job_id, error)
                unreadable.append((entry, error))
                continue
            claimed.append(
                Claimed(entry, request, int(deliveries), text(previous), uid, guild_of(guild))
            )
        for entry, refused in unreadable:
            await self._end(entry, refused.uid, Failed(str(refused)))
        return claimed

    async def _seen(self) -> None:
        await self.client.zadd(f"{self.prefix}:workers", {self.name: time.time()})

    async def _event(self, uid: str, event: Started | Progress, **extra: str) -> None:
        stream = f"{self.prefix}:ev:{uid}"
        values = extra | encode_event(event) | {"uid": uid}
        await self.client.xadd(stream, values, maxlen=1000)  # type: ignore[arg-type]
        await self.client.expire(stream, KEEP_S)

    async def _heartbeat(self) -> None:
        """Keeps every entry this worker holds from going idle; one that another worker took
        over meanwhile (this one was silent too long) is let go."""
        while True:
            await asyncio.sleep(self.reclaim_after_s / 4)
            try:
                if self._held:
                    held = list(self._held)
                    lost = await self.claims.heartbeat(args=[self.prefix, self.name, *held])
                    for entry in lost:
                        log.warning("lost entry %s to another worker (this one was silent)", entry)
                        self._held.pop(entry, None)
                await self._seen()
            except aioredis.RedisError as error:  # Redis away: the jobs go on meanwhile
                log.warning("worker %s ◆ heartbeat: %s", self.name, error)

    async def _draw(self, batch: list[Claimed]) -> None:
        """Sends the batch to the model process and returns once the device has drawn it; a
        task of its own stores each job's result and ends it."""
        by_job = {job.request.job_id: job for job in batch}
        try:
            for job in batch:
                if job.deliveries > 1:
                    with job.fields():
                        log.warning("job %d ◆ taken over from %s", job.request.job_id, job.previous)
                started = Started(job.deliveries, self.name, len(batch))
                # The batch is named by its first entry: its jobs' events say who ran together.
                await self._event(job.uid, started, batch=text(batch[0].entry))
        except BaseException:  # Redis away: the entries go idle, for a worker to take over
            for job in batch:
                self._held.pop(job.entry, None)
            raise

        async def on_progress(progress: Progress) -> None:
            job = by_job.get(progress.job_id)
            if job is None:
                return
            stream = f"{self.prefix}:ev:{job.uid}"
            try:  # one round trip a step and job: the event out, its cancel in
                pipe = self.client.pipeline(transaction=False)
                values: Any = encode_event(progress) | {"uid": job.uid}
                pipe.xadd(stream, values, maxlen=1000)
                pipe.expire(stream, KEEP_S)
                pipe.exists(f"{self.prefix}:cancel:{job.uid}")
                pipe.exists(f"{self.prefix}:job:{job.uid}")
                *_, wanted_stop, known = await pipe.execute()
                if wanted_stop:
                    self.supervisor.cancel(progress.job_id)
                elif not known:  # Redis restarted empty: nobody waits for this job any more
                    log.warning("job %d ◆ Redis no longer knows it; stopping it", progress.job_id)
                    self.supervisor.cancel(progress.job_id)
            except aioredis.RedisError as error:  # the job goes on; its end is told if it can be
                log.debug("job %d ◆ progress not sent: %s", progress.job_id, error)

        # A batch of one job is that job's: its lines (and its finishing task's) name it.
        alone = batch[0].fields() if len(batch) == 1 else contextlib.nullcontext()
        with alone:
            started_at = time.perf_counter()
            try:
                requests = [job.request for job in batch]
                drawn = await draw_batch(self.supervisor, requests, on_progress)
            except Exception as error:  # a bug must not stop the worker: the jobs fail, it goes on
                log.exception("batch %s failed", list(by_job))
                for job in batch:
                    await self._end(job.entry, job.uid, Failed(f"internal error: {error!r}"))
                return
            drawing_s = time.perf_counter() - started_at
            task = asyncio.create_task(self._complete(batch, drawn, drawing_s))
        self._finishing.add(task)
        self._finishing_ids[task] = set(by_job)
        task.add_done_callback(self._finishing.discard)
        task.add_done_callback(lambda done: self._finishing_ids.pop(done, None))

    async def _complete(
        self, batch: list[Claimed], drawn: asyncio.Future[BatchOutcome], drawing_s: float
    ) -> None:
        """Waits for the batch's post-ready answers, stores each result, ends each job."""
        endings: dict[str, Terminal] = {}
        try:
            outcome = await drawn
            if outcome.answered:  # the device's time for the batch: this worker's pace
                units = sum(QueuedJob(job.request, None, None).units for job in batch)
                self.throughput.record(units, drawing_s)
            for job in batch:
                with job.fields():
                    endings[job.uid] = await self._store(job, outcome.events[job.request.job_id])
        except Exception as error:  # Redis away, or a bug: the jobs end failed if they can
            log.exception("batch %s not stored", [job.request.job_id for job in batch])
            for job in batch:
                endings.setdefault(job.uid, Failed(f"the worker could not store it: {error!r}"))
        for job in batch:
            with job.fields():
                await self._end(job.entry, job.uid, endings[job.uid])

    async def _store(self, job: Claimed, event: Terminal) -> Terminal:
        """Stores a finished job's result; answers its terminal event."""
        if not isinstance(event, Done):  # failed, crashed, stalled or cancelled
            return event
        result = event.result
        result_key = f"{self.prefix}:result:{job.uid}"
        fields = await asyncio.to_thread(encode_result, result, job.uid)
        await self.client.hset(result_key, mapping=fields)  # type: ignore[arg-type]
        await self.client.expire(result_key, KEEP_S)
        if self.throughput.seconds_per_unit is not None:
            await self.client.hset(
                f"{self.prefix}:stats", "seconds_per_unit", self.throughput.seconds_per_unit
            )
        log.info(
            "job %d done ◆ %d images ◆ %d steps",
            job.request.job_id,
            len(result.post.images),
            job.request.options.steps,
        )
        return event

    async def _end(self, entry: bytes, uid: str, ending: Terminal) -> None:
        """Ends the job of a held entry with its terminal event; when Redis cannot be told,
        the entry is let go, for a worker to take over once it is idle."""
        self._held.pop(entry, None)
        self.jobs_done += 1
        try:
            await self._finish(entry, uid, ending)
        except aioredis.RedisError as error:
            log.warning("job uid %s ◆ could not end it (%s); another worker will", uid, error)

    async def _finish(self, entry: bytes, uid: str, ending: Terminal) -> None:
        """Ends the job of a claimed entry with its terminal event."""
        fields = encode_event(ending) | {"uid": uid}
        flat = [item for pair in fields.items() for item in pair]
        await self.scripts.finish(args=[self.prefix, entry, uid, KEEP_S, *flat])
