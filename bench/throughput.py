"""`sdbot bench throughput`: images per second through the whole path with the queue kept full,
against a raw diffusers loop of the same pipeline calls, and the share of the time the device
was drawing.

The path: N jobs from G guilds submitted at once through the service (moderation, audit record,
fair queue and its batches, worker IPC, diffusion, safety, watermark, PNG, grid, files,
outcome); its wall time runs from the first submission to the last outcome. A warm-up burst
goes first (one job drawn alone, then a full batch: each batch size the queue makes is drawn
once before the timing). The raw loop: the very pipeline calls the worker made, replayed back
to back in this process through the worker's loader (its fast path too), runner and thread
count, warm (one untimed call of each size), while no worker runs. The device's busy intervals
are the ``drawn_from``/``drawn_until`` of each job's result (``time.monotonic()``, one clock for
every process of the machine); the jobs that share one were drawn in one call.

Its options are in ``bot.cli.bench_args``; the measurement is in ``bench.throughput_run``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from bot.cli import EXIT_OK, CommandError

if TYPE_CHECKING:
    from bot.settings import Settings

MAX_JOBS = 1000
GUILDS = 4  # as bot.cli.bench_args.THROUGHPUT_GUILDS
GOAL_RATIO = 0.95
GOAL_BUSY = 0.95

Interval = tuple[float, float]


async def run(args: argparse.Namespace, settings: Settings) -> int:
    check_arguments(args, settings)
    from bench.throughput_run import measure_throughput

    report = await measure_throughput(
        settings,
        jobs=args.jobs,
        variants=args.variants,
        steps=args.steps,
        model=args.model,
        guilds=min(GUILDS, args.jobs) if args.guilds is None else args.guilds,
    )
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.to_text())
    return EXIT_OK


def check_arguments(args: argparse.Namespace, settings: Settings) -> None:
    """Refuses what cannot be measured, naming the value and what is allowed."""
    if not 1 <= args.jobs <= MAX_JOBS:
        raise CommandError(f"--jobs must be from 1 to {MAX_JOBS}, got {args.jobs}")
    if not 1 <= args.variants <= settings.max_variants:
        raise CommandError(
            f"--variants must be from 1 to {settings.max_variants} (SDBOT_MAX_VARIANTS), "
            f"got {args.variants}"
        )
    if args.steps is not None and not 1 <= args.steps <= settings.max_steps:
        raise CommandError(
            f"--steps must be from 1 to {settings.max_steps} (SDBOT_MAX_STEPS), got {args.steps}"
        )
    if args.guilds is not None and not 1 <= args.guilds <= args.jobs:
        raise CommandError(f"--guilds must be from 1 to --jobs ({args.jobs}), got {args.guilds}")
    if args.model is not None and not args.model.strip():
        raise CommandError("--model must name a model or a model folder, got ''")


# --- the figures --------------------------------------------------------------------------


def union(intervals: Iterable[Interval]) -> list[Interval]:
    """The intervals merged where they overlap or touch, in order."""
    merged: list[Interval] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def busy_within(intervals: Iterable[Interval], start: float, end: float) -> float:
    """How long the intervals cover of ``[start, end]``, overlaps counted once."""
    return sum(max(0.0, min(b, end) - max(a, start)) for a, b in union(intervals))


def gaps(intervals: Iterable[Interval]) -> list[float]:
    """The idle time between consecutive drawings (the union's holes), in seconds."""
    merged = union(intervals)
    return [b[0] - a[1] for a, b in itertools.pairwise(merged)]


@dataclass(frozen=True)
class ThroughputReport:
    model: str
    device: str
    torch_threads: int
    jobs: int
    guilds: int
    variants: int
    steps: int
    size: str
    batch_max_jobs: int
    batch_sizes: tuple[int, ...]  # jobs in each pipeline call the worker made, in order
    path_s: float  # first submission to last outcome
    raw_s: float  # the same calls back to back in this process
    drawing_s: float  # the union of the worker's drawing intervals within path_s
    lead_in_s: float  # first submission to the first drawing's start
    tail_s: float  # the last drawing's end to the last outcome
    gaps_s: tuple[float, ...]  # between drawings

    @property
    def images(self) -> int:
        return self.jobs * self.variants

    @property
    def batches(self) -> int:
        return len(self.batch_sizes)

    @property
    def path_images_per_s(self) -> float:
        return self.images / self.path_s

    @property
    def raw_images_per_s(self) -> float:
        return self.images / self.raw_s

    @property
    def ratio(self) -> float:
        """The path's throughput over the raw loop's (goal: at least GOAL_RATIO)."""
        return self.path_images_per_s / self.raw_images_per_s

    @property
    def device_busy(self) -> float:
        """The share of the path's wall time the device was drawing (goal: GOAL_BUSY)."""
        return self.drawing_s / self.path_s

    @property
    def drawing_images_per_s(self) -> float:
        """The worker's own calls alone: below the raw loop's when something slows them."""
        return self.images / self.drawing_s

    def _gap(self, pick: Any) -> float:
        return float(pick(self.gaps_s)) if self.gaps_s else 0.0

    def to_dict(self) -> dict[str, Any]:
        figures = asdict(self)
        figures.pop("gaps_s")
        return {
            **figures,
            "images": self.images,
            "batches": self.batches,
            "path_images_per_s": self.path_images_per_s,
            "raw_images_per_s": self.raw_images_per_s,
            "ratio": self.ratio,
            "device_busy": self.device_busy,
            "drawing_images_per_s": self.drawing_images_per_s,
            "gaps": len(self.gaps_s),
            "gap_median_s": self._gap(statistics.median),
            "gap_max_s": self._gap(max),
            "idle_s": self.path_s - self.drawing_s,
            "goal_ratio": GOAL_RATIO,
            "goal_device_busy": GOAL_BUSY,
        }

    def to_text(self) -> str:
        def met(value: float, goal: float) -> str:
            return "met" if value >= goal else "not met"

        sizes = ", ".join(str(size) for size in self.batch_sizes)
        idle = self.path_s - self.drawing_s
        lines = [
            f"model {self.model} on {self.device} · torch threads: {self.torch_threads}",
            f"{self.jobs} jobs from {self.guilds} guilds · {self.images} images "
            f"({self.variants} a job) · {self.steps} steps · {self.size} · "
            f"batches of up to {self.batch_max_jobs} jobs",
            f"batches formed       {self.batches:8d}      jobs per call: {sizes}",
            f"whole path           {self.path_images_per_s:8.3f} images/s   "
            f"{self.images} images in {self.path_s:.2f} s, first submission to last outcome",
            f"raw diffusers loop   {self.raw_images_per_s:8.3f} images/s   "
            f"the same {self.batches} calls back to back, in {self.raw_s:.2f} s",
            f"ratio path/raw       {self.ratio:8.3f}      goal >= {GOAL_RATIO:.2f}: "
            f"{met(self.ratio, GOAL_RATIO)}",
            f"device busy          {self.device_busy * 100:8.1f} %    goal >= "
            f"{GOAL_BUSY * 100:.0f} %: {met(self.device_busy, GOAL_BUSY)}",
            f"drawing in the path  {self.drawing_images_per_s:8.3f} images/s   "
            "the worker's calls alone",
            f"not drawing          {idle:8.2f} s      before the first call "
            f"{self.lead_in_s * 1000:.0f} ms · between calls median "
            f"{self._gap(statistics.median) * 1000:.0f} ms, max {self._gap(max) * 1000:.0f} ms "
            f"({len(self.gaps_s)} gap{'' if len(self.gaps_s) == 1 else 's'})"
            f" · after the last {self.tail_s * 1000:.0f} ms",
        ]
        return "\n".join(lines)


def report_from(
    *,
    intervals: Sequence[Interval],
    submitted_at: float,
    last_outcome_at: float,
    raw_s: float,
    **facts: Any,
) -> ThroughputReport:
    """The report from the path's drawing intervals (one per job: its call's) and clock."""
    calls = sorted(set(intervals))
    batch_sizes = tuple(sum(1 for i in intervals if i == call) for call in calls)
    merged = union(calls)
    return ThroughputReport(
        **facts,
        batch_sizes=batch_sizes,
        path_s=last_outcome_at - submitted_at,
        raw_s=raw_s,
        drawing_s=busy_within(calls, submitted_at, last_outcome_at),
        lead_in_s=merged[0][0] - submitted_at,
        tail_s=last_outcome_at - merged[-1][1],
        gaps_s=tuple(gaps(calls)),
    )
