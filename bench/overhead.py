"""`sdbot bench overhead`: what the moderated path costs on top of the raw diffusers call.

Per image: the bare pipeline call (in this process, warm), and the whole path (options, prompt
rules, audit record, worker IPC, safety, watermark + verify, grid, files, outcome), warm too.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bot.app import open_service, open_storage
from bot.imagine.types import Requester
from bot.settings import Settings
from generation.models import model_defaults, resolve_model
from generation.options import GenerationOptions, RequestedOptions, validate
from storage.migrations import upgrade


@dataclass(frozen=True)
class OverheadReport:
    model: str
    variants: int
    steps: int
    size: str
    runs: int
    raw_ms_per_image: float
    path_ms_per_image: float
    breakdown_ms_per_image: dict[str, float]

    @property
    def ratio(self) -> float:
        return self.path_ms_per_image / self.raw_ms_per_image

    @property
    def same_process_ratio(self) -> float:
        """The path against the diffusers call timed inside the worker itself: no run-to-run
        drift between two processes, so the steadier figure on a busy machine."""
        return self.path_ms_per_image / self.breakdown_ms_per_image["diffusion"]

    def to_text(self) -> str:
        lines = [
            f"model {self.model}",
            f"{self.variants} variants · {self.steps} steps · {self.size}"
            f" · median of {self.runs} runs",
            f"raw diffusers call   {self.raw_ms_per_image:8.1f} ms per image",
            f"whole sdbot path     {self.path_ms_per_image:8.1f} ms per image",
            f"ratio                {self.ratio:8.3f}   (goal <= 1.10)",
            f"ratio to the worker's own diffusers call {self.same_process_ratio:.3f}",
            "where the path's time goes, per image:",
        ]
        lines += [f"  {name:<20}{ms:8.1f} ms" for name, ms in self.breakdown_ms_per_image.items()]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, object]:
        return {
            **self.__dict__,
            "ratio": self.ratio,
            "same_process_ratio": self.same_process_ratio,
        }


def _raw_call_ms(settings: Settings, options: GenerationOptions, runs: int) -> list[float]:
    import torch

    from generation.loading import load_pipeline
    from generation.pipeline import PipelineRunner, resolve_device, resolve_dtype
    from generation.protocol import WorkRequest
    from generation.worker import cpu_threads, usable_cores
    from moderation.policy import ImagePolicy

    device = resolve_device(settings.device)
    if settings.torch_threads or device == "cpu":  # the threads the worker draws with
        torch.set_num_threads(cpu_threads(settings.torch_threads, usable_cores()))
    source = resolve_model(settings.model)
    runner = PipelineRunner(load_pipeline(source, device, resolve_dtype(settings.dtype, device)))
    request = WorkRequest(
        0, options, ImagePolicy(settings.nsfw_threshold, settings.nsfw_strict_threshold)
    )
    runner.generate([request])  # warm-up
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        runner.generate([request])
        timings.append((time.perf_counter() - started) * 1000)
    return timings


async def measure_overhead(
    settings: Settings, *, prompt: str, variants: int, runs: int, steps: int | None = None
) -> OverheadReport:
    requested = RequestedOptions(prompt=prompt, seed=1, variants=variants, steps=steps)
    source = resolve_model(settings.model)
    options = validate(requested, settings.limits(), model_defaults(source))
    raw = _raw_call_ms(settings, options, runs)

    with tempfile.TemporaryDirectory(prefix="sdbot-bench-") as scratch:
        url = f"sqlite+aiosqlite:///{Path(scratch) / 'bench.db'}"
        await asyncio.to_thread(upgrade, url)
        bench_settings = settings.model_copy(
            update={"database_url": url, "output_dir": Path(scratch) / "images"}
        )
        async with (
            open_storage(bench_settings) as storage,
            open_service(bench_settings, storage) as service,
        ):
            await service.imagine(requested, Requester(source="bench"))  # warm-up + worker start
            totals: list[float] = []
            parts: dict[str, list[float]] = {}
            for _ in range(runs):
                started = time.perf_counter()
                outcome = await service.imagine(requested, Requester(source="bench"))
                totals.append((time.perf_counter() - started) * 1000)
                for name, ms in outcome.timings_ms.items():
                    parts.setdefault(name, []).append(ms)
    return OverheadReport(
        model=settings.model,
        variants=variants,
        steps=options.steps,
        size=f"{options.width}x{options.height}",
        runs=runs,
        raw_ms_per_image=statistics.median(raw) / variants,
        path_ms_per_image=statistics.median(totals) / variants,
        breakdown_ms_per_image={
            name: statistics.median(values) / variants for name, values in parts.items()
        },
    )
