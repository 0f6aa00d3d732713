"""`sdbot bench gpu`: SD 1.5- and SDXL-shaped pipelines, built in code from their published
configs with random weights (nothing is downloaded), drawn through the raw diffusers call and
through the whole sdbot path in one run: it/s, ms an image, their ratio, what batching gains,
and the share of the physical floor (the UNet's FLOPs at the device's dense fp16 peak).

Its options are in ``bot.cli.bench_args`` (no command imports ``bench`` until it runs);
torch and diffusers load in :func:`run` (``bench.gpu_run``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from bot.cli import EXIT_OK, CommandError

if TYPE_CHECKING:
    from bot.settings import Settings

KNOWN_SHAPES = ("sd15", "sdxl")


def _shapes(text: str) -> list[str]:
    shapes = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [shape for shape in shapes if shape not in KNOWN_SHAPES]
    if not shapes or unknown:
        raise CommandError(
            f"--shapes {text!r}: {', '.join(unknown) or 'none given'}; "
            f"known: {', '.join(KNOWN_SHAPES)}"
        )
    return list(dict.fromkeys(shapes))


def _fasts(given: list[str] | None, default: str) -> list[str]:
    from generation.fast_path import FastPath

    fasts = given if given is not None else [default]
    for fast in fasts:
        try:
            FastPath.parse(fast)
        except ValueError as error:
            raise CommandError(f"--fast {fast!r}: {error}") from error
    return fasts


def _check(args: argparse.Namespace) -> None:
    if args.steps < 1:
        raise CommandError(f"--steps must be at least 1, got {args.steps}")
    if not 1 <= args.variants <= 4:
        raise CommandError(f"--variants must be from 1 to 4, got {args.variants}")
    if args.runs < 1:
        raise CommandError(f"--runs must be at least 1, got {args.runs}")
    if args.size is not None and (args.size < 64 or args.size % 8):
        raise CommandError(f"--size must be a multiple of 8 from 64, got {args.size}")
    if args.peak_tflops is not None and args.peak_tflops <= 0:
        raise CommandError(f"--peak-tflops must be above 0, got {args.peak_tflops}")


async def run(args: argparse.Namespace, settings: Settings) -> int:
    _check(args)
    shapes = _shapes(args.shapes)
    fasts = _fasts(args.fast, settings.fast_path)

    from bench.gpu_run import device_peak, measure_shape
    from bench.sd_shapes import side_of
    from generation.pipeline import resolve_device

    peak = device_peak(resolve_device(settings.device), args.peak_tflops)
    reports = []
    for shape in shapes:
        with tempfile.TemporaryDirectory(prefix=f"sdbot-bench-gpu-{shape}-") as scratch:
            report = await measure_shape(
                settings,
                shape,
                Path(scratch),
                tiny=args.tiny,
                steps=args.steps,
                side=args.size or side_of(shape, tiny=args.tiny),
                variants=args.variants,
                runs=args.runs,
                fasts=fasts,
                prompt=args.prompt,
                peak=peak,
            )
        reports.append(report)
        if not args.json:
            print(report.to_text(), end="\n\n", flush=True)
    if args.json:
        print(json.dumps([report.to_dict() for report in reports], indent=2))
    return EXIT_OK
