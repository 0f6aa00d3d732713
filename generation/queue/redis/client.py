"""The bot's side of the Redis queue: admission, submission, cancels, holds, and each job's
events, read by one reader for every followed job.

Every key and event of a job is named by its ``uid`` (its record's identity, never reused), not
by its database id: a reset or restored database hands out id 1 again, and the new job 1 must
never read the old one's events or pictures. Events and results carry the uid too, and a
follower rejects any that does not match the job it follows.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from typing import Any

import redis.asyncio as aioredis

from generation.limits import Limits, over_rate, queue_full, too_many_jobs
from generation.protocol import WorkerReady
from generation.queue.contract import CancelOutcome, JobHandle, QueueDepth, QueuedJob
from generation.queue.events import (
    CANCELLED_WHILE_QUEUED,
    TERMINAL_EVENTS,
    Cancelled,
    Done,
    EventKind,
    Failed,
    JobEvent,
    Queued,
    decode_event,
    encode_event,
)
from generation.queue.fair import Throughput, fair_order, places
from generation.queue.redis.codec import (
    ForeignResult,
    batch_field,
    decode_result,
    encode_request,
    request_blobs,
)
from generation.queue.redis.scripts import KEEP_S, Scripts, connect, ensure_group, key, text

log = logging.getLogger(__name__)


class RedisQueue:
    """The bot's side: admission, submission, cancels, and each job's events."""

    def __init__(
        self, client: aioredis.Redis, prefix: str, poll_s: float = 1.0, lost_after_s: float = 60.0
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.poll_s = poll_s
        self.lost_after_s = lost_after_s  # unreachable this long: the followed jobs fail
        self.read_block_ms = 200  # how late a newly followed job's first event may be read
        self.scripts = Scripts(client)
        # Followed jobs by uid (their keys' names); the job id only names them to the caller.
        self._handles: dict[str, JobHandle] = {}
        self._last: dict[str, bytes] = {}
        self._uids: dict[int, str] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()  # set by close(): the reader and the announcer finish
        self._lost_since: float | None = None
        self._held = False

    @classmethod
    async def connect(
        cls, url: str, *, prefix: str = "sdbot", lost_after_s: float = 60.0
    ) -> RedisQueue:
        client = await connect(url)
        await ensure_group(client, prefix)
        return cls(client, prefix, lost_after_s=lost_after_s)

    async def start(self) -> None:
        if not self._tasks:
            self._stop.clear()
            # Started by the first job queued, they outlive it: no job's log fields on them.
            self._tasks = [
                asyncio.create_task(
                    self._read_events(), name="sdbot-events", context=contextvars.Context()
                ),
                asyncio.create_task(
                    self._announce(), name="sdbot-positions", context=contextvars.Context()
                ),
            ]

    async def start_workers(self) -> WorkerReady | None:
        """None: the workers are ``sdbot worker`` processes of their own."""
        return None

    async def stop_workers(self) -> None:
        """Nothing to stop here: the workers go on for other bots and the next start."""

    async def hold(self) -> set[int]:
        """Shutting down: the jobs this bot follows that wait in Redis leave the fair order and
        are held there (no worker takes them; they keep their place in the limits) until a bot
        attaches to them again at its next start, which puts them back at the end of the
        order; a held job cancelled meanwhile is dequeued and refunded as a waiting one.
        Jobs this bot submits from now on are held as they arrive. Running jobs finish on
        their workers. Jobs of other bots sharing the prefix are not touched: the workers are
        shared. Returns the ids of this bot's jobs running now."""
        self._held = True
        uids = list(self._handles)
        if not uids:
            return set()
        states = await self.scripts.hold(args=[self.prefix, *uids])
        by_uid = {uid: job for job, uid in self._uids.items()}
        return {
            by_uid[uid]
            for uid, state in zip(uids, states, strict=True)
            if text(state) == "running" and uid in by_uid
        }

    async def close(self) -> None:
        """Stops following; the jobs live on in Redis and the workers keep running them.

        The reader and the announcer are asked to finish, not cancelled: a task cancelled in
        the middle of a blocking XREAD could leave redis-py's connection half-read, and closing
        the client then waited forever (seen under load). A task that does not finish within
        its read's block time and a margin is cancelled after all."""
        self._stop.set()
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=self.read_block_ms / 1000 + 5.0)
            for task in late:
                log.warning("%s did not stop within its read; cancelled", task.get_name())
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=1.0)
        self._tasks = []
        await self.client.aclose()

    async def _pause(self, seconds: float) -> None:
        """Sleeps, or less when close() asks the background tasks to finish."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def admit(
        self, guild_id: int | None, user_id: int | None, units: float, limits: Limits
    ) -> None:
        answer = await self.scripts.admit(
            args=[
                self.prefix,
                key(guild_id),
                key(user_id),
                repr(units),
                limits.user_units_per_hour,
                limits.user_burst,
                limits.guild_units_per_hour,
                limits.guild_burst,
                limits.max_jobs_per_user,
                limits.max_queue_depth,
            ]
        )
        kind = text(answer[0])
        if kind == "full":
            raise queue_full(limits)
        if kind == "jobs":
            raise too_many_jobs(int(answer[1]), limits)
        if kind == "rate":
            raise over_rate(float(answer[1]), float(answer[2]), limits)

    async def release(self, guild_id: int | None, user_id: int | None) -> None:
        await self.scripts.release(args=[self.prefix, key(guild_id), key(user_id)])

    async def submit(self, job: QueuedJob, *, readmit: bool = False) -> JobHandle:
        if readmit:
            await self.scripts.readmit(args=[self.prefix, key(job.guild_id), key(job.user_id)])
        await self.scripts.push(
            args=[
                self.prefix,
                job.uid,
                key(job.guild_id),
                key(job.user_id),
                encode_request(job.request, job.uid),
                repr(job.units),
                "0" if readmit else "1",  # a readmitted job was charged before, or never
                job.job_id,
                "1" if self._held else "0",
                batch_field(job.request),  # which jobs may share its pipeline call
                *request_blobs(job.request),  # its pictures, as raw fields of the job
            ]
        )
        handle = await self._follow(job.job_id, job.uid)
        # Queued from here on: what follows only informs, and runs to its end even when the
        # caller is cancelled meanwhile (a Redis command cut mid-reply left its connection to
        # answer the next command, the cancel that records the job's end, wrongly or never).
        await asyncio.shield(self._first_word(job, handle))
        return handle

    async def _first_word(self, job: QueuedJob, handle: JobHandle) -> None:
        """Warns when no worker is about, and tells the new job where it stands."""
        if not await self.client.zcount(f"{self.prefix}:workers", time.time() - 60, "+inf"):
            log.warning(
                "job %d waits in Redis, but no sdbot worker was seen in the last minute "
                "(prefix %s)",
                job.job_id,
                self.prefix,
            )
        place = (await self.positions_by_uid()).get(job.uid)
        if place is not None:  # the first answer says where it stands, at once
            handle.put(place)

    async def attach(self, job_id: int, uid: str | None = None) -> JobHandle | None:
        """Follows a job Redis still holds (after a restart of the bot), from its first event;
        a job held at the last stop goes back into the fair order."""
        uid = uid or self._uids.get(job_id)
        if uid is None:
            return None
        if uid in self._handles:
            return self._handles[uid]
        if not await self.client.exists(f"{self.prefix}:job:{uid}"):
            return None
        if not self._held:
            await self.scripts.resume(args=[self.prefix, uid])
        return await self._follow(job_id, uid)

    async def cancel(self, job_id: int, uid: str | None = None) -> str:
        uid = uid or self._uids.get(job_id)
        if uid is None:  # never followed here, and no identity: nothing it could name
            return CancelOutcome.UNKNOWN
        ending = encode_event(Cancelled(CANCELLED_WHILE_QUEUED)) | {"uid": uid}
        fields = [item for pair in ending.items() for item in pair]
        answer = text(await self.scripts.cancel(args=[self.prefix, uid, KEEP_S, *fields]))
        return {
            "dequeued": CancelOutcome.DEQUEUED,
            "stopping": CancelOutcome.STOPPING,
        }.get(answer, CancelOutcome.UNKNOWN)

    async def _follow(self, job_id: int, uid: str) -> JobHandle:
        await self.start()
        handle = JobHandle(job_id)
        self._handles[uid] = handle
        self._uids[job_id] = uid
        self._last[uid] = b"0"  # from its first event: a restarted bot catches up
        return handle

    def _end(self, uid: str, event: Failed) -> None:
        handle = self._handles.pop(uid, None)
        self._last.pop(uid, None)
        if handle is not None:
            handle.put(event)

    async def _lost(self, error: Exception) -> None:
        """Redis does not answer: after ``lost_after_s`` every followed job fails, with why."""
        now = time.monotonic()
        if self._lost_since is None:
            self._lost_since = now
            log.warning("lost Redis: %s; followed jobs fail in %.0f s", error, self.lost_after_s)
        elif now - self._lost_since >= self.lost_after_s:
            reason = (
                f"lost the Redis queue for {now - self._lost_since:.0f} s "
                f"(SDBOT_REDIS_LOST_S is {self.lost_after_s:g}): {error}"
            )
            for uid in list(self._handles):
                self._end(uid, Failed(reason))
        await self._pause(min(1.0, self.lost_after_s / 4))

    async def _found_again(self) -> None:
        """Redis answers again: a followed job whose key is gone (Redis restarted empty) fails
        now rather than waiting for events that will never come."""
        self._lost_since = None
        log.warning("Redis answers again")
        for uid in list(self._handles):
            if not await self.client.exists(f"{self.prefix}:job:{uid}"):
                self._end(uid, Failed("Redis lost the job (it restarted without its data)"))

    async def _read_events(self) -> None:
        """One reader for every followed job: a blocking XREAD over all their streams."""
        while not self._stop.is_set():
            if not self._handles:
                await self._pause(self.read_block_ms / 1000)
                continue
            streams: Any = {f"{self.prefix}:ev:{uid}": last for uid, last in self._last.items()}
            try:
                answer: Any = await self.client.xread(streams, count=100, block=self.read_block_ms)
                if self._lost_since is not None:
                    await self._found_again()
            except aioredis.RedisError as error:
                await self._lost(error)
                continue
            for stream, entries in answer or ():
                uid = text(stream).rsplit(":", 1)[1]
                handle = self._handles.get(uid)
                for entry_id, fields in entries:
                    if handle is None:
                        break
                    self._last[uid] = entry_id
                    event = await self._event(handle.job_id, uid, fields)
                    if event is None:
                        continue
                    handle.put(event)
                    if isinstance(event, TERMINAL_EVENTS):
                        self._handles.pop(uid, None)
                        self._last.pop(uid, None)
                        handle = None

    async def _event(self, job_id: int, uid: str, fields: dict[bytes, bytes]) -> JobEvent | None:
        """The job's event, or None for one that names another job (rejected, logged)."""
        named = text(fields.get(b"uid", b""))
        if named != uid:
            log.warning("job %d ◆ rejected an event of job uid %r (this is %s)", job_id, named, uid)
            return None
        event = decode_event(job_id, {text(k): text(v) for k, v in fields.items()})
        if event is not EventKind.DONE:
            assert not isinstance(event, EventKind)
            return event
        stored: Any = await self.client.hgetall(f"{self.prefix}:result:{uid}")
        if not stored:
            return Failed("the worker's result expired before it was read")
        try:
            return Done(await asyncio.to_thread(decode_result, stored, uid))
        except ForeignResult as error:
            return Failed(f"rejected the result in Redis: {error}")

    async def positions(self) -> dict[int, Queued]:
        """Every queued job's place in the fair order and its ETA, by job id."""
        places_by_uid = await self.positions_by_uid()
        if not places_by_uid:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for uid in places_by_uid:
            pipe.hget(f"{self.prefix}:job:{uid}", "id")
        ids = await pipe.execute()
        return {
            int(job_id): place for job_id, place in zip(ids, places_by_uid.values(), strict=True)
        }

    async def depth(self) -> QueueDepth:
        """Queued: the jobs waiting in the fair order (held ones aside); running: those a
        worker holds, every bot's (the workers are shared). One script, one round trip."""
        queued, running = await self.scripts.depth(args=[self.prefix])
        return QueueDepth(queued=int(queued), running=int(running))

    async def positions_by_uid(self) -> dict[str, Queued]:
        """Every queued job's place in the fair order and its ETA from the workers' pace."""
        p = self.prefix
        snapshot: Any = await self.scripts.snapshot(args=[p])  # one consistent read
        order = fair_order([[[text(j) for j in jobs] for jobs in users] for users in snapshot])
        if not order:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for uid in order:
            pipe.hget(f"{p}:job:{uid}", "units")
        pipe.hget(f"{p}:stats", "seconds_per_unit")
        pipe.zcount(f"{p}:workers", time.time() - 60, "+inf")
        *units, pace, workers = await pipe.execute()
        throughput = Throughput(None if pace is None else float(pace))
        costs = [float(cost or 0) for cost in units]
        return places(list(zip(order, costs, strict=True)), throughput, workers=int(workers))

    async def _announce(self) -> None:
        while not self._stop.is_set():
            await self._pause(self.poll_s)
            if self._stop.is_set() or not self._handles:
                continue
            try:
                found = await self.positions_by_uid()
            except aioredis.RedisError as error:
                log.debug("could not read the queue's order: %s", error)
                continue
            for uid, place in found.items():
                handle = self._handles.get(uid)
                if handle is not None:
                    handle.put(place)
