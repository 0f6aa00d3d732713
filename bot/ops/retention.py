"""Retention: ``SDBOT_RETENTION_DAYS`` after a job ended, its prompts and image files go; the
record keeps its ids, verdicts and hashes, so that a watermark still traces to a record that
says it was purged (``sdbot trace``). ``sdbot run`` purges at start and every hour
(``retention_loop``); ``sdbot purge`` does it now."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from common.metrics import PURGED_JOBS
from storage.models import PurgeReason, utcnow

if TYPE_CHECKING:
    from bot.settings import Settings
    from storage.repositories import Storage

log = logging.getLogger(__name__)

EVERY_S = 3600.0  # how often the loop purges


@dataclass(frozen=True)
class PurgeReport:
    """What one retention run purged: records that ended before ``cutoff``."""

    days: float
    cutoff: datetime
    jobs: int  # records whose prompts were purged
    images: int  # image files deleted
    inputs: int  # pictures given in, dropped

    def to_dict(self) -> dict[str, object]:
        return {
            "days": self.days,
            "cutoff": self.cutoff.isoformat(timespec="seconds"),
            "jobs": self.jobs,
            "images": self.images,
            "inputs": self.inputs,
        }


async def purge_expired(storage: Storage, output_dir: Path | None, days: float) -> PurgeReport:
    """Purges every job that ended more than ``days`` ago (open jobs never); idempotent: a
    record is purged once, and a second run finds nothing more."""
    if days <= 0:  # a bug in the caller: the settings refuse it
        raise ValueError(f"retention of {days!r} days; it must be more than 0")
    cutoff = utcnow() - timedelta(days=days)
    done = await storage.retention.purge_finished_before(cutoff, output_dir)
    PURGED_JOBS.labels(reason=PurgeReason.RETENTION.value).inc(done.jobs)
    report = PurgeReport(days, cutoff, done.jobs, done.images, done.inputs)
    level = logging.INFO if done.jobs else logging.DEBUG
    log.log(
        level,
        "retention (%g days) ◆ %d records purged that ended before %s, %d image files "
        "deleted, %d pictures given dropped",
        days,
        report.jobs,
        report.cutoff.isoformat(timespec="seconds"),
        report.images,
        report.inputs,
    )
    return report


async def retention_loop(settings: Settings, storage: Storage, stop: asyncio.Event) -> None:
    """Purges at start and then every hour until ``stop`` is set; a failed run is logged and
    the next one tries again. Returns at once when no retention is set."""
    days = settings.retention_days
    if days is None:
        return
    output_dir = settings.effective_output_dir()
    while not stop.is_set():
        try:
            await purge_expired(storage, output_dir, days)
        except Exception:  # the database may be away for a while: the next hour tries again
            log.exception("retention (%g days) failed; trying again in %.0f s", days, EVERY_S)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), EVERY_S)


@contextlib.asynccontextmanager
async def keeping_retention(settings: Settings, storage: Storage) -> AsyncIterator[None]:
    """``retention_loop`` beside the code inside (``sdbot run``), stopped on the way out."""
    stop = asyncio.Event()
    task = asyncio.create_task(retention_loop(settings, storage, stop), name="sdbot-retention")
    try:
        yield
    finally:
        stop.set()
        task.cancel()  # a purge in progress stops between batches; the next start finishes it
        with contextlib.suppress(asyncio.CancelledError):
            await task
