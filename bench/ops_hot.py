"""What the instrumentation adds to a job: the metric calls timed one by one and counted per job,
the terminal write timed with its metrics and with a registry that does nothing, and a log
line's cost in text and in JSON.

The per-call figures are the answer: a job makes a known number of metric calls (counted from
the code that makes them, below), each timed over many thousands of calls. The terminal write
with and without them is the check that nothing else hides there: a database write takes a
thousand times longer than the calls, so the difference between the two is within its noise.
"""

from __future__ import annotations

import contextlib
import logging
import os
import statistics
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sqlalchemy import insert

from common import logs, metrics
from storage.models import Job, JobStatus
from storage.repositories import Storage

# The metric calls one succeeded /imagine makes, as the code makes them:
# the bot process: storage.audit.mark_running (STAGE queue_wait), record_outcome (JOBS, STAGE
# end_to_end), bot.discord.metrics.posting (STAGE posting), the acknowledgement (DISCORD_ACK);
BOT_CALLS = {"counter_2_labels": 1, "histogram_1_label": 3, "histogram_no_label": 1}
# the model's process: generation.worker_link (STAGE diffusion, safety, watermark; IMAGES,
# STANDARD_IMAGES, IMAGES_FLAGGED; BATCHES and DEVICE_SECONDS once a batch, counted here as if
# each job were its own batch: the most it can be).
MODEL_CALLS = {"histogram_1_label": 3, "counter_1_label": 5}
BLOCK = 1000  # calls timed together; the median of the blocks' means is the figure


@dataclass(frozen=True)
class HotFigures:
    call_us: dict[str, float]  # median µs a call, by kind of metric call
    bot_us_per_job: float
    model_us_per_job: float
    metric_calls: int  # calls timed of each kind
    write_ms_with: float  # record_outcome, median
    write_ms_without: float
    writes: int  # of each
    log_us_text: float  # one INFO line with the job fields bound, median
    log_us_json: float
    log_lines: int  # of each


def _per_call_us(call: Callable[[], object], calls: int) -> float:
    means = []
    for _ in range(max(1, calls // BLOCK)):
        started = time.perf_counter()
        for _ in range(BLOCK):
            call()
        means.append((time.perf_counter() - started) * 1e6 / BLOCK)
    return statistics.median(means)


def metric_calls(calls: int) -> dict[str, float]:
    """µs a call of each kind of metric call the job path makes."""
    jobs = metrics.JOBS
    stage = metrics.STAGE
    images = metrics.IMAGES
    ack = metrics.DISCORD_ACK
    return {
        "counter_2_labels": _per_call_us(lambda: jobs.labels("imagine", "succeeded").inc(), calls),
        "counter_1_label": _per_call_us(lambda: images.labels("bench").inc(4), calls),
        "histogram_1_label": _per_call_us(lambda: stage.labels("diffusion").observe(0.3), calls),
        "histogram_no_label": _per_call_us(lambda: ack.observe(0.2), calls),
    }


def per_job_us(call_us: dict[str, float], counts: dict[str, int]) -> float:
    return sum(call_us[kind] * count for kind, count in counts.items())


class _Nothing:
    """A metric that does nothing: ``labels(...)`` is itself, ``inc`` and ``observe`` pass."""

    def labels(self, *values: object, **named: object) -> _Nothing:
        return self

    def inc(self, amount: float = 1) -> None:
        pass

    def observe(self, amount: float) -> None:
        pass


@contextlib.contextmanager
def _no_metrics() -> Iterator[None]:
    """The audit log's metrics replaced by ones that do nothing."""
    import storage.audit

    names = vars(storage.audit)  # its ``metrics``: the module it counts through
    real = names["metrics"]
    names["metrics"] = types.SimpleNamespace(JOBS=_Nothing(), STAGE=_Nothing())
    try:
        yield
    finally:
        names["metrics"] = real


async def terminal_writes(storage: Storage, first_id: int, writes: int) -> tuple[float, float]:
    """Median ms of ``record_outcome`` (succeeded, no image rows) with the metrics and
    without, on ``writes`` queued jobs each, in alternating blocks of 25."""
    from bench.ops_data import job_row

    rows = [job_row(first_id + n, 1, "queued", None) for n in range(2 * writes)]
    async with storage.sessions.begin() as session:
        for start in range(0, len(rows), 2000):
            await session.execute(insert(Job), rows[start : start + 2000])
    timings: dict[bool, list[float]] = {True: [], False: []}
    job_id = first_id
    for block in range(0, 2 * writes, 25):
        counted = (block // 25) % 2 == 0
        with contextlib.nullcontext() if counted else _no_metrics():
            for _ in range(min(25, first_id + 2 * writes - job_id)):
                started = time.perf_counter()
                await storage.audit.record_outcome(job_id, JobStatus.SUCCEEDED)
                timings[counted].append((time.perf_counter() - started) * 1000)
                job_id += 1
    return statistics.median(timings[True]), statistics.median(timings[False])


def log_line_us(fmt: str, lines: int) -> float:
    """µs for one INFO line through ``logs.configure``'s handler in ``fmt``, to /dev/null,
    with a job's fields bound and two secrets to mask (as `sdbot run` has its token and a
    database password)."""
    root = logging.getLogger()
    handlers, level, kept_format = root.handlers[:], root.level, logs._format
    log = logging.getLogger("bench.ops")
    try:
        with open(os.devnull, "w") as null, contextlib.redirect_stderr(null):
            logs.configure(logging.INFO, fmt, secrets=("bench-token-0123456789", "hunter2pw"))
            with logs.bound(job=123456, guild=987654321, worker="worker-1"):
                return _per_call_us(
                    lambda: log.info("job %d ◆ drew %d images in %.1f ms", 123456, 4, 812.5),
                    lines,
                )
    finally:
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
        for handler in handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(level)
        logs._format = kept_format  # what `say` writes in: as the command configured it


async def measure_hot(storage: Storage, first_id: int, *, calls: int, writes: int) -> HotFigures:
    call_us = metric_calls(calls)
    with_ms, without_ms = await terminal_writes(storage, first_id, writes)
    return HotFigures(
        call_us=call_us,
        bot_us_per_job=per_job_us(call_us, BOT_CALLS),
        model_us_per_job=per_job_us(call_us, MODEL_CALLS),
        metric_calls=calls,
        write_ms_with=with_ms,
        write_ms_without=without_ms,
        writes=writes,
        log_us_text=log_line_us("text", calls // 2),
        log_us_json=log_line_us("json", calls // 2),
        log_lines=max(BLOCK, calls // 2 // BLOCK * BLOCK),
    )
