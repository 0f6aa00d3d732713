"""``sdbot worker``'s side of the Redis queue: claim a job in fair order (or one whose worker
went silent), run it on the model process, store its result and end it with its event.

A worker claims a job by moving it from the fair order into the ``work`` stream and reading it
in one script, so the job is a pending entry of that worker from the first instant. A worker
that stops answering (no heartbeat for ``reclaim_after_s``) loses its entry to the next worker
that looks; the delivery count says how often it started, and a job started
``MAX_STARTS`` times is failed, not started again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from generation.protocol import Progress, WorkRequest
from generation.queue.batch import run_batch
from generation.queue.contract import MAX_STARTS, QueuedJob
from generation.queue.events import Done, Failed, Started, Terminal, encode_event
from generation.queue.fair import Throughput
from generation.queue.redis.codec import UnreadableRequest, decode_payload, encode_result
from generation.queue.redis.scripts import KEEP_S, Scripts, connect, ensure_group, text

if TYPE_CHECKING:
    from generation.supervisor import WorkerSupervisor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claimed:
    entry: bytes
    request: WorkRequest
    deliveries: int
    previous: str = ""
    uid: str = ""  # the job's identity: names its keys and travels in its events


class RedisWorker:
    """``sdbot worker``: takes jobs from Redis in fair order and runs them on its model process.

    It heartbeats while a job runs; a worker silent for ``reclaim_after_s`` loses its job to
    the next worker that looks. Cancels are read between denoising steps.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        supervisor: WorkerSupervisor,
        *,
        prefix: str = "sdbot",
        name: str | None = None,
        reclaim_after_s: float = 60.0,
    ) -> None:
        self.client = client
        self.supervisor = supervisor
        self.prefix = prefix
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.reclaim_after_s = reclaim_after_s
        self.scripts = Scripts(client)
        self.throughput = Throughput()
        self.jobs_done = 0  # ended here: done, failed or cancelled

    @classmethod
    async def connect(cls, url: str, supervisor: WorkerSupervisor, **options: Any) -> RedisWorker:
        client = await connect(url)
        await ensure_group(client, options.get("prefix", "sdbot"))
        return cls(client, supervisor, **options)

    async def close(self) -> None:
        await self.client.aclose()

    async def run(self, stop: asyncio.Event) -> None:
        await self.supervisor.start()
        await self._seen()
        log.info("worker %s ◆ waiting for jobs ◆ prefix %s", self.name, self.prefix)
        while not stop.is_set():
            try:
                await self._step()
            except ResponseError as error:
                if "NOGROUP" not in str(error):
                    log.warning("worker %s ◆ Redis: %s; retrying in 1 s", self.name, error)
                    await asyncio.sleep(1)
                    continue
                # Redis came back empty (restarted without its data): the stream and its
                # consumer group are made again, as at connect.
                await ensure_group(self.client, self.prefix)
                log.warning("worker %s ◆ Redis lost the consumer group; made it again", self.name)
            except aioredis.RedisError as error:  # Redis restarting: try again in a moment
                log.warning("worker %s ◆ Redis: %s; retrying in 1 s", self.name, error)
                await asyncio.sleep(1)

    async def _step(self) -> None:
        """Takes and runs one job, or waits (at most about a second) for one."""
        claimed = await self.next_job()
        if claimed is None:
            await self._seen()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.client.blpop([f"{self.prefix}:wake"], timeout=1), 5)
            return
        await self.process(claimed)

    async def next_job(self) -> Claimed | None:
        """A job whose worker went silent first, else the next one in fair order."""
        idle_ms = int(self.reclaim_after_s * 1000)
        answer = await self.scripts.reclaim(args=[self.prefix, self.name, idle_ms])
        if not answer:
            answer = await self.scripts.claim(args=[self.prefix, self.name])
        if not answer:
            return None
        entry, _, payload, deliveries, previous, *blobs = answer
        try:
            request, uid = decode_payload(payload, blobs)
        except UnreadableRequest as error:  # queued by another version: fail it, go on
            log.warning("job %s ◆ %s", error.job_id, error)
            await self._finish(entry, error.uid, Failed(str(error)))
            self.jobs_done += 1
            return None
        return Claimed(entry, request, int(deliveries), text(previous), uid)

    async def _seen(self) -> None:
        await self.client.zadd(f"{self.prefix}:workers", {self.name: time.time()})

    async def _event(self, uid: str, event: Started | Progress) -> None:
        stream = f"{self.prefix}:ev:{uid}"
        values = encode_event(event) | {"uid": uid}
        await self.client.xadd(stream, values, maxlen=1000)  # type: ignore[arg-type]
        await self.client.expire(stream, KEEP_S)

    async def _heartbeat(self, entry: bytes) -> None:
        while True:
            await asyncio.sleep(self.reclaim_after_s / 4)
            try:
                if not await self.scripts.heartbeat(args=[self.prefix, self.name, entry]):
                    log.warning("lost entry %s to another worker (this one was silent)", entry)
                    return
                await self._seen()
            except aioredis.RedisError as error:  # Redis away: the job goes on meanwhile
                log.warning("worker %s ◆ heartbeat: %s", self.name, error)

    async def process(self, claimed: Claimed) -> None:
        job_id = claimed.request.job_id
        ending: Terminal = Failed("the worker stopped")
        try:
            if claimed.deliveries > MAX_STARTS:
                reason = f"its worker went away twice (last: {claimed.previous}); not retried again"
                log.warning("job %d ◆ %s", job_id, reason)
                ending = Failed(reason)
                return
            if claimed.deliveries > 1:
                log.warning("job %d ◆ taken over from %s", job_id, claimed.previous)
            await self._event(claimed.uid, Started(claimed.deliveries, self.name))
            ending = await self._run(claimed)
        except asyncio.CancelledError:  # stopped at once: the entry stays for another worker
            raise
        finally:
            self.jobs_done += 1
            if not _being_cancelled():
                await self._finish(claimed.entry, claimed.uid, ending)

    async def _finish(self, entry: bytes, uid: str, ending: Terminal) -> None:
        """Ends the job of a claimed entry with its terminal event."""
        fields = encode_event(ending) | {"uid": uid}
        flat = [item for pair in fields.items() for item in pair]
        await self.scripts.finish(args=[self.prefix, entry, uid, KEEP_S, *flat])

    async def _run(self, claimed: Claimed) -> Terminal:
        """Runs the job as a batch of one; returns its terminal event (its result stored)."""
        request, job_id = claimed.request, claimed.request.job_id
        cancel_key = f"{self.prefix}:cancel:{claimed.uid}"
        heartbeat = asyncio.create_task(self._heartbeat(claimed.entry))

        async def on_progress(progress: Progress) -> None:
            try:
                await self._event(claimed.uid, progress)
                pipe = self.client.pipeline(transaction=False)
                pipe.exists(cancel_key)
                pipe.exists(f"{self.prefix}:job:{claimed.uid}")
                wanted_stop, known = await pipe.execute()
                if wanted_stop:
                    self.supervisor.cancel(job_id)
                elif not known:  # Redis restarted empty: nobody waits for this job any more
                    log.warning("job %d ◆ Redis no longer knows it; stopping it", job_id)
                    self.supervisor.cancel(job_id)
            except aioredis.RedisError as error:  # the job goes on; its end is told if it can be
                log.debug("job %d ◆ progress not sent: %s", job_id, error)

        started = time.perf_counter()
        try:
            outcome = await run_batch(self.supervisor, [request], on_progress)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        event = outcome.events[job_id]
        if not isinstance(event, Done):  # failed, crashed, stalled or cancelled
            return event
        result = event.result
        units = QueuedJob(request, None, None).units
        self.throughput.record(units, time.perf_counter() - started)
        result_key = f"{self.prefix}:result:{claimed.uid}"
        fields = await asyncio.to_thread(encode_result, result, claimed.uid)
        await self.client.hset(result_key, mapping=fields)  # type: ignore[arg-type]
        await self.client.expire(result_key, KEEP_S)
        if self.throughput.seconds_per_unit is not None:
            await self.client.hset(
                f"{self.prefix}:stats", "seconds_per_unit", self.throughput.seconds_per_unit
            )
        log.info(
            "job %d done ◆ %d images ◆ %d steps",
            job_id,
            len(result.post.images),
            request.options.steps,
        )
        return event


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
