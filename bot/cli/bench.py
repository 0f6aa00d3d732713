"""`sdbot bench ...`: the speed and quality figures we report, never assert."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from bot.cli import EXIT_OK, CommandError
from bot.settings import Settings


def register(commands: Any) -> None:
    bench = commands.add_parser("bench", help="benchmarks")
    kinds = bench.add_subparsers(dest="bench_command", required=True, metavar="BENCHMARK")
    overhead = kinds.add_parser("overhead", help="raw diffusers call vs the whole sdbot path")
    overhead.add_argument("--prompt", default="a red circle on a blue background")
    overhead.add_argument("--variants", type=int, default=4)
    overhead.add_argument("--steps", type=int, help="default: the model's")
    overhead.add_argument("--runs", type=int, default=5)
    overhead.add_argument("--json", action="store_true")
    overhead.set_defaults(handler=run_overhead)

    adherence = kinds.add_parser("adherence", help="does the embedded model follow prompts?")
    adherence.add_argument("--steps", type=int, default=20)
    adherence.add_argument("--cfg", type=float, help="guidance scale (default: the model's)")
    adherence.add_argument("--seed", type=int, default=0)
    adherence.add_argument("--model", type=Path, help="model folder (default: the embedded one)")
    adherence.add_argument("--json", action="store_true")
    adherence.set_defaults(handler=run_adherence)


async def run_overhead(args: argparse.Namespace, settings: Settings) -> int:
    from bench.overhead import measure_overhead

    if args.runs < 1:
        raise CommandError(f"--runs must be at least 1, got {args.runs}")
    report = await measure_overhead(
        settings, prompt=args.prompt, variants=args.variants, runs=args.runs, steps=args.steps
    )
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.to_text())
    return EXIT_OK


async def run_adherence(args: argparse.Namespace, settings: Settings) -> int:
    from generation.embedded.adherence import run_adherence as measure
    from generation.models import EMBEDDED_MODEL_DIR

    model = args.model or EMBEDDED_MODEL_DIR
    if not (model / "model_index.json").is_file():
        raise CommandError(f"--model {model} is not a diffusers model folder")
    if args.steps < 1:
        raise CommandError(f"--steps must be at least 1, got {args.steps}")
    device = settings.device
    if device == "auto":
        from generation.pipeline import resolve_device

        device = resolve_device(device)
    report = await asyncio.to_thread(  # off the loop, so that SIGTERM still cancels
        measure,
        model,
        steps=args.steps,
        guidance_scale=args.cfg,
        seed=args.seed,
        device=device,
        progress=None if args.json else print,
    )
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.to_text())
    return EXIT_OK
