"""Retention and forget at scale: finished jobs as the bot leaves them (four image rows each,
and their files on disk), then ``purge_expired`` and ``forget_member`` as `sdbot run` and
`sdbot forget` call them, with every transaction's length taken from the engine's own events.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event, insert
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.models import Image, Job, utcnow
from storage.repositories import Storage

IMAGES_PER_JOB = 4
FILE_BYTES = 1024  # each image file: unlinking costs the same whatever the size
USERS = 1000  # the other members the jobs are spread over
MEMBER = 4_242_424_242  # the member forget deletes
RETENTION_DAYS = 30.0


@dataclass(frozen=True)
class PurgeFigures:
    jobs: int  # records purged
    images: int  # image files deleted
    seconds: float
    transactions: int  # every one the engine began, reads included
    longest_transaction_ms: float
    median_transaction_ms: float
    longest_loop_stall_ms: float  # how late the event loop answered meanwhile
    files_s: float  # of ``seconds``, deleting the files (inside each batch's transaction)

    @property
    def jobs_per_s(self) -> float:
        return self.jobs / self.seconds if self.seconds else 0.0


def job_row(job_id: int, user_id: int, status: str, finished: datetime | None) -> dict[str, Any]:
    """A Job row as the bot leaves an /imagine (``finished`` None: still open)."""
    return {
        "id": job_id,
        "uid": uuid.uuid4().hex,
        "kind": "imagine",
        "source": "discord",
        "guild_id": 1 + job_id % 10,
        "channel_id": 100 + job_id % 10,
        "user_id": user_id,
        "prompt": f"a lighthouse at dusk, oil painting, dramatic sky, number {job_id}",
        "negative_prompt": "blurry, lowres",
        "steps": 20,
        "guidance_scale": 7.0,
        "width": 512,
        "height": 512,
        "variants": IMAGES_PER_JOB,
        "scheduler": "default",
        "model": "bench",
        "seeds": [job_id + n for n in range(IMAGES_PER_JOB)],
        "verdict": "allowed",
        "verdict_reasons": [],
        "status": status,
        "attempts": 0 if finished is None else 1,
        "channel_nsfw": False,
        "created_at": finished or utcnow(),
        "finished_at": finished,
        "total_ms": None if finished is None else 9000.0,
    }


def _write_files(output_dir: Path, job_ids: list[int]) -> list[dict[str, Any]]:
    """Each job's image files in its own folder (as the pictures store lays them out), and
    their rows."""
    payload = b"\x89PNG" + bytes(FILE_BYTES - 4)
    rows = []
    for job_id in job_ids:
        folder = output_dir / f"job-{job_id}"
        folder.mkdir(parents=True, exist_ok=True)
        for variant in range(IMAGES_PER_JOB):
            path = folder / f"{variant}.png"
            path.write_bytes(payload)
            rows.append(
                {
                    "job_id": job_id,
                    "variant": variant,
                    "seed": job_id + variant,
                    "sha256": f"{job_id:032x}{variant:032x}",
                    "watermark_id": job_id * 8 + variant,
                    "watermark_verified": True,
                    "safety_score": 0.02,
                    "safety_verdict": "safe",
                    "safety_threshold": 0.5,
                    "disposition": "shown",
                    "width": 512,
                    "height": 512,
                    "path": str(path),
                    "created_at": utcnow(),
                }
            )
    return rows


async def fill_finished(
    storage: Storage,
    output_dir: Path,
    first_id: int,
    count: int,
    *,
    ended: datetime,
    member_every: int = 0,
) -> int:
    """``count`` succeeded jobs from id ``first_id`` that ended at ``ended``, each with its
    images' rows and files; every ``member_every``-th is ``MEMBER``'s (0: none). Returns how
    many are the member's."""
    ids = list(range(first_id, first_id + count))
    member = {job_id for job_id in ids if member_every and (job_id - first_id) % member_every == 0}
    jobs = [
        job_row(job_id, MEMBER if job_id in member else 1 + job_id % USERS, "succeeded", ended)
        for job_id in ids
    ]
    images: list[dict[str, Any]] = []
    for start in range(0, count, 500):  # a thread's share at a time: a SIGTERM stops soon
        images += await asyncio.to_thread(_write_files, output_dir, ids[start : start + 500])
    async with storage.sessions.begin() as session:
        for table, rows in ((Job, jobs), (Image, images)):
            for start in range(0, len(rows), 2000):
                await session.execute(insert(table), rows[start : start + 2000])
    return len(member)


def engine_of(storage: Storage) -> AsyncEngine:
    engine = storage.sessions.kw["bind"]
    assert isinstance(engine, AsyncEngine)
    return engine


@contextlib.contextmanager
def transactions(engine: AsyncEngine) -> Iterator[list[float]]:
    """Collects each transaction's length (begin to commit or rollback, ms) on ``engine``
    while the block runs."""
    lengths: list[float] = []
    began: dict[int, float] = {}

    def begin(connection: Any) -> None:
        began[id(connection)] = time.perf_counter()

    def end(connection: Any) -> None:
        started = began.pop(id(connection), None)
        if started is not None:
            lengths.append((time.perf_counter() - started) * 1000)

    sync = engine.sync_engine
    event.listen(sync, "begin", begin)
    event.listen(sync, "commit", end)
    event.listen(sync, "rollback", end)
    try:
        yield lengths
    finally:
        event.remove(sync, "begin", begin)
        event.remove(sync, "commit", end)
        event.remove(sync, "rollback", end)


@contextlib.contextmanager
def file_deletions() -> Iterator[list[float]]:
    """Times the file work each purge batch does (seconds, summed into the list's one value)
    while the block runs: ``delete_pictures`` (files and job folders) where the storage has
    it, else ``delete_files``."""
    import storage.retention

    names = vars(storage.retention)  # the function each batch calls, looked up when called
    name = "delete_pictures" if "delete_pictures" in names else "delete_files"
    real = names[name]
    spent = [0.0]

    def timed(*args: Any) -> int:
        started = time.perf_counter()
        try:
            return int(real(*args))
        finally:
            spent[0] += time.perf_counter() - started

    names[name] = timed
    try:
        yield spent
    finally:
        names[name] = real


@contextlib.asynccontextmanager
async def loop_stalls(tick_s: float = 0.005) -> AsyncIterator[list[float]]:
    """The longest time the loop answered a ``tick_s`` sleep late, while the block runs (the
    list's one value, ms, once it ends)."""
    longest = [0.0]

    async def watch() -> None:
        while True:
            asked = time.perf_counter()
            await asyncio.sleep(tick_s)
            longest[0] = max(longest[0], (time.perf_counter() - asked - tick_s) * 1000)

    task = asyncio.create_task(watch())
    try:
        yield longest
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def measure_purge(storage: Storage, output_dir: Path) -> PurgeFigures:
    """``purge_expired`` as `sdbot run` calls it: everything that ended past retention."""
    from bot.ops.retention import purge_expired

    async with loop_stalls() as stall:
        with transactions(engine_of(storage)) as lengths, file_deletions() as files:
            started = time.perf_counter()
            report = await purge_expired(storage, output_dir, RETENTION_DAYS)
            seconds = time.perf_counter() - started
    return _figures(report.jobs, report.images, seconds, lengths, stall[0], files[0])


async def measure_forget(service: Any, output_dir: Path) -> PurgeFigures:
    """``forget_member`` as `sdbot forget --yes` calls it, for ``MEMBER`` everywhere."""
    from bot.ops.privacy import forget_member

    async with loop_stalls() as stall:
        with transactions(engine_of(service.storage)) as lengths, file_deletions() as files:
            started = time.perf_counter()
            report = await forget_member(
                service, user_id=MEMBER, guild_id=None, actor_id=None, via="cli"
            )
            seconds = time.perf_counter() - started
    return _figures(report.jobs, report.images, seconds, lengths, stall[0], files[0])


def _figures(
    jobs: int, images: int, seconds: float, lengths: list[float], stall_ms: float, files_s: float
) -> PurgeFigures:
    return PurgeFigures(
        jobs=jobs,
        images=images,
        seconds=seconds,
        transactions=len(lengths),
        longest_transaction_ms=max(lengths, default=0.0),
        median_transaction_ms=statistics.median(lengths) if lengths else 0.0,
        longest_loop_stall_ms=stall_ms,
        files_s=files_s,
    )


def expired() -> datetime:
    """When the retention part's jobs ended: well past ``RETENTION_DAYS``."""
    return utcnow() - timedelta(days=RETENTION_DAYS + 10)
