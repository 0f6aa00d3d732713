"""`sdbot bench gpu`'s measurement of one shape: build its folder, time the raw diffusers call
in this process, then the whole sdbot path (a scratch SQLite database, the real worker
process) once per fast-path setting. Imports torch: loaded by ``bench.gpu.run`` only."""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from bench.gpu_report import PathRow, RawFigures, ShapeReport, peak_tflops
from bench.scratch import scratch_settings
from bench.sd_shapes import (
    SHAPES,
    build_folder,
    configs,
    parameter_counts,
    quiet,
    unet_pass_flops,
    vae_decode_flops,
)
from bot.app import open_service, open_storage
from bot.cli import CommandError
from bot.imagine.types import Requester
from bot.settings import Settings
from generation.models import model_defaults, resolve_model
from generation.options import GenerationOptions, RequestedOptions, validate
from generation.pipeline import resolve_device, resolve_dtype
from storage.migrations import upgrade
from storage.models import JobStatus


def device_peak(device: str, given: float | None) -> float | None:
    """``--peak-tflops``, else the table's figure for this CUDA device (None off CUDA)."""
    if given is not None:
        return given
    if device.startswith("cuda"):
        return peak_tflops(torch.cuda.get_device_name(device))
    return None


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def _call_ms(pipe: Any, device: str, options: GenerationOptions, seeds: tuple[int, ...]) -> float:
    """One call of the pipeline on ``seeds``' images, from a synchronised device to another."""
    generators = [torch.Generator(device).manual_seed(seed) for seed in seeds]
    _sync(device)
    started = time.perf_counter()
    pipe(
        prompt=[options.prompt] * len(seeds),
        negative_prompt=[options.negative_prompt] * len(seeds),
        num_inference_steps=options.steps,
        guidance_scale=options.guidance_scale,
        width=options.width,
        height=options.height,
        generator=generators,
        output_type="np",
    )
    _sync(device)
    return (time.perf_counter() - started) * 1000


def _raw(
    settings: Settings, device: str, dtype: torch.dtype, options: GenerationOptions, runs: int
) -> RawFigures:
    """The pipeline's own call, loaded by the product's loader, warm (one call first)."""
    from generation.loading import load_pipeline
    from generation.worker import cpu_threads, usable_cores

    quiet()
    if device == "cpu":  # the worker's thread count, for a fair comparison
        torch.set_num_threads(cpu_threads(settings.torch_threads, usable_cores()))
    pipe = load_pipeline(resolve_model(settings.model), device, dtype)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)
    seeds = options.seeds
    _call_ms(pipe, device, options, seeds)
    batch = statistics.median(_call_ms(pipe, device, options, seeds) for _ in range(runs))
    memory = torch.cuda.max_memory_allocated(device) / 1e9 if device.startswith("cuda") else None
    one = None
    if len(seeds) > 1:
        _call_ms(pipe, device, options, seeds[:1])
        one = statistics.median(_call_ms(pipe, device, options, seeds[:1]) for _ in range(runs))
    del pipe
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return RawFigures(batch, batch / len(seeds), one, memory)


async def _path(
    settings: Settings, requested: RequestedOptions, runs: int, fast: str, out: Path
) -> PathRow:
    """One fast-path setting through the whole path, in a fresh worker (it starts on the
    first job, which is not timed with the others)."""
    row_settings = settings.model_copy(update={"fast_path": fast, "output_dir": out})
    requester = Requester(source="bench")
    async with (
        open_storage(row_settings) as storage,
        open_service(row_settings, storage) as service,
    ):
        started = time.perf_counter()
        outcomes = [await service.imagine(requested, requester)]
        first_s = time.perf_counter() - started
        timings = []
        for _ in range(runs):
            started = time.perf_counter()
            outcomes.append(await service.imagine(requested, requester))
            timings.append((time.perf_counter() - started) * 1000)
    for outcome in outcomes:
        if outcome.status is not JobStatus.SUCCEEDED:
            raise CommandError(
                f"the path with fast path {fast!r} ended {outcome.status.value}: "
                f"{outcome.error or outcome.verdict.summary()}"
            )
    timed = outcomes[1:]
    images = [image for outcome in timed for image in outcome.images]
    call_ms = statistics.median(timings)
    return PathRow(
        fast_path=fast,
        first_call_s=first_s,
        call_ms=call_ms,
        ms_per_image=call_ms / requested.variants,
        diffusion_ms_per_image=statistics.median(o.timings_ms["diffusion"] for o in timed)
        / requested.variants,
        images=sum(image.png is not None for image in images),
        verified=sum(image.watermark_verified for image in images),
        files=await asyncio.to_thread(_png_files, out),
    )


def bench_settings(settings: Settings, folder: Path, scratch: Path, steps: int) -> Settings:
    """The operator's settings on the built folder alone (no models file, LoRAs or
    embeddings: theirs would not fit it), a scratch database, and no rate limit."""
    empty = scratch / "none"
    empty.mkdir(exist_ok=True)
    return scratch_settings(
        settings,
        scratch,
        model=str(folder),
        models_file=None,
        lora_dir=empty,
        embedding_dir=empty,
        max_steps=max(settings.max_steps, steps),
    )


async def measure_shape(
    settings: Settings,
    shape: str,
    scratch: Path,
    *,
    tiny: bool,
    steps: int,
    side: int,
    variants: int,
    runs: int,
    fasts: list[str],
    prompt: str,
    peak: float | None,
) -> ShapeReport:
    info = SHAPES[shape]
    device = resolve_device(settings.device)
    dtype = resolve_dtype(settings.dtype, device)
    found = configs(shape, tiny=tiny)
    samples = 2 if info.guidance_scale > 1 else 1
    # 1. The folder, with random weights, as any model folder the bot loads.
    folder = scratch / shape
    started = time.perf_counter()
    await asyncio.to_thread(build_folder, shape, folder, tiny=tiny, device=device, dtype=dtype)
    build_s = time.perf_counter() - started
    # 2. What the floor is made of (meta device: no memory, exact for the config).
    unet_flops = await asyncio.to_thread(unet_pass_flops, found["unet"], side, samples)
    vae_flops = await asyncio.to_thread(vae_decode_flops, found["vae"], side)
    # 3. The raw call, then the path under each fast-path setting.
    run_settings = bench_settings(settings, folder, scratch, steps)
    requested = RequestedOptions(
        prompt=prompt,
        seed=1,
        variants=variants,
        steps=steps,
        guidance_scale=info.guidance_scale,
        width=side,
        height=side,
    )
    options = validate(requested, run_settings.limits(), model_defaults(resolve_model(str(folder))))
    raw = await asyncio.to_thread(_raw, run_settings, device, dtype, options, runs)
    await asyncio.to_thread(upgrade, run_settings.effective_database_url())
    rows = []
    for number, fast in enumerate(fasts):
        out = scratch / f"{shape}-images-{number}"
        rows.append(await _path(run_settings, requested, runs, fast, out))
    await asyncio.to_thread(_remove, folder)
    return ShapeReport(
        shape=shape,
        family=info.family.value,
        tiny=tiny,
        device=torch.cuda.get_device_name(device) if device.startswith("cuda") else device,
        dtype=str(dtype).removeprefix("torch."),
        side=side,
        steps=steps,
        variants=variants,
        guidance_scale=info.guidance_scale,
        runs=runs,
        parameters=parameter_counts(shape, tiny=tiny),
        unet_pass_flops=unet_flops,
        vae_decode_flops=vae_flops,
        peak_tflops=peak,
        build_s=build_s,
        raw=raw,
        rows=tuple(rows),
    )


def _png_files(folder: Path) -> int:
    return len(list(folder.rglob("*.png")))


def _remove(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
