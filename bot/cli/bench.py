"""`sdbot bench ...`: the speed and quality figures we report, never assert."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.cli import EXIT_OK, CommandError
from bot.cli.arguments import guild_id
from bot.cli.bench_args import add_gpu_arguments, add_ops_arguments, add_throughput_arguments

if TYPE_CHECKING:
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
    adherence.add_argument(
        "--fast", default="", help="fast-path switches as SDBOT_FAST_PATH spells them"
    )
    adherence.add_argument(
        "--compare", type=int, default=8, help="with --fast: prompts drawn both ways, compared"
    )
    adherence.add_argument("--json", action="store_true")
    adherence.set_defaults(handler=run_adherence)

    safety = kinds.add_parser(
        "safety", help="open_nsfw scores on benign pictures (and your own labelled ones)"
    )
    safety.add_argument(
        "--images", type=Path, help="a folder with safe/ and nsfw/ subfolders of your pictures"
    )
    safety.add_argument(
        "--model-prompts", type=int, default=12, help="embedded-model prompts to draw (4 each)"
    )
    safety.add_argument("--json", action="store_true")
    safety.set_defaults(handler=run_safety)

    queue = kinds.add_parser("queue", help="scheduling overhead, fairness under skew, memory")
    queue.add_argument("--jobs", type=int, default=100_000, help="jobs for the overhead figure")
    queue.add_argument("--queued", type=int, default=10_000, help="jobs held for the memory one")
    queue.add_argument(
        "--redis-url", help="also measure the Redis queue there (default: SDBOT_REDIS_URL)"
    )
    queue.add_argument("--redis-jobs", type=int, default=2000, help="jobs through Redis")
    queue.add_argument("--json", action="store_true")
    queue.set_defaults(handler=run_queue)

    batching = kinds.add_parser(
        "batching", help="jobs of one shape one by one vs in one pipeline call, on the worker"
    )
    batching.add_argument("--jobs", type=int, default=4, help="jobs in the batch")
    batching.add_argument("--variants", type=int, default=4)
    batching.add_argument("--steps", type=int, help="default: the model's")
    batching.add_argument("--rounds", type=int, default=3, help="timed rounds of each")
    batching.add_argument("--json", action="store_true")
    batching.set_defaults(handler=run_batching)

    models = kinds.add_parser(
        "models", help="model switches, LoRA and prompt conditioning costs, in the worker's code"
    )
    models.add_argument("--runs", type=int, default=5)
    models.add_argument("--variants", type=int, default=4)
    models.add_argument("--steps", type=int, help="default: the model's")
    models.add_argument("--json", action="store_true")
    models.set_defaults(handler=run_models)

    discord = kinds.add_parser(
        "discord", help="acknowledgement and end-to-end time of /imagine on the fake Discord"
    )
    discord.add_argument("--guilds", type=int, default=4)
    discord.add_argument("--members", type=int, default=5, help="members per guild, each one job")
    discord.add_argument("--steps", type=int, help="default: the model's")
    discord.add_argument(
        "--spread", type=float, default=0.0, help="seconds over which the commands arrive"
    )
    discord.add_argument("--timeout", type=float, default=1800.0, help="seconds for all jobs")
    discord.add_argument("--json", action="store_true")
    discord.set_defaults(handler=run_discord)

    mod = kinds.add_parser(
        "mod", help="what /mod's checks and reads cost: the gate, history, review, export"
    )
    mod.add_argument("--jobs", type=int, default=20_000, help="prompts in the scratch database")
    mod.add_argument("--guilds", type=int, default=10)
    mod.add_argument(
        "--database-url", help="an empty database to fill (default: a scratch SQLite file)"
    )
    mod.add_argument("--json", action="store_true")
    mod.set_defaults(handler=run_mod)

    throughput_parser = kinds.add_parser(
        "throughput", help="images per second through the whole path vs a raw diffusers loop"
    )
    add_throughput_arguments(throughput_parser)
    throughput_parser.set_defaults(handler=run_throughput)
    gpu_parser = kinds.add_parser(
        "gpu", help="SD 1.5- and SDXL-shaped pipelines (random weights): raw vs the whole path"
    )
    add_gpu_arguments(gpu_parser)
    gpu_parser.set_defaults(handler=run_gpu)

    ops_parser = kinds.add_parser(
        "ops", help="what a scrape, the metrics and logs, retention and forget cost"
    )
    add_ops_arguments(ops_parser)
    ops_parser.set_defaults(handler=run_ops)

    moderation = kinds.add_parser(
        "moderation",
        help=(
            "prompt rules and classifier on the labelled sets: recall and false positives by "
            "kind, latency, the classifier's share"
        ),
    )
    moderation.add_argument(
        "--set",
        dest="sets",
        action="append",
        help=(
            "eval, heldout, heldout2, blind1, blind_final, or a folder with benign.tsv and "
            "blocked.tsv (default: eval, heldout, heldout2, blind1)"
        ),
    )
    moderation.add_argument("--guild", type=guild_id, help="apply this guild's own lists too")
    moderation.add_argument("--repeats", type=int, default=5, help="timing passes per prompt")
    moderation.add_argument("--json", action="store_true")
    moderation.set_defaults(handler=run_moderation)


async def run_throughput(args: argparse.Namespace, settings: Settings) -> int:
    from bench.throughput import run

    return await run(args, settings)


async def run_gpu(args: argparse.Namespace, settings: Settings) -> int:
    from bench.gpu import run

    return await run(args, settings)


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
    if not 0 <= args.compare <= 48:
        raise CommandError(f"--compare must be from 0 to 48 prompts, got {args.compare}")
    from generation.fast_path import FastPath

    try:
        fast = FastPath.parse(args.fast)
    except ValueError as error:
        raise CommandError(f"--fast: {error}") from None
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
        fast=fast,
        compare=args.compare,
    )
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.to_text())
    return EXIT_OK


async def run_moderation(args: argparse.Namespace, settings: Settings) -> int:
    from moderation.errors import ModerationError
    from moderation.evaluation import NAMED_SETS, SETS, evaluate, load_set
    from moderation.lists import PromptRules

    if args.repeats < 1:
        raise CommandError(f"--repeats must be at least 1, got {args.repeats}")
    rules = PromptRules.default()
    if args.guild is not None:
        from bot.imagine.rules import rules_for
        from storage.repositories import open_storage

        async with open_storage(settings.effective_database_url()) as storage:
            rules = await rules_for(storage.terms, rules, args.guild)
    reports = []
    for name in args.sets or SETS:
        try:
            benign, blocked = load_set(name if name in NAMED_SETS else Path(name))
        except (OSError, UnicodeDecodeError, ModerationError) as error:
            raise CommandError(f"--set {name}: {error}") from error
        reports.append(evaluate(name, benign, blocked, rules, repeats=args.repeats))
    if args.json:
        print(json.dumps([report.to_dict() for report in reports], indent=2))
    else:
        print("\n\n".join(report.to_text() for report in reports))
    return EXIT_OK


async def run_safety(args: argparse.Namespace, settings: Settings) -> int:
    from bench.safety import calibrate
    from generation.models import EMBEDDED_MODEL_DIR

    if args.images is not None and not any((args.images / n).is_dir() for n in ("safe", "nsfw")):
        raise CommandError(f"--images {args.images} has neither a safe/ nor an nsfw/ folder")
    if args.model_prompts < 0:
        raise CommandError(f"--model-prompts must be 0 or more, got {args.model_prompts}")
    report = await asyncio.to_thread(
        calibrate,
        threshold=settings.nsfw_threshold,
        strict_threshold=settings.nsfw_strict_threshold,
        model_dir=EMBEDDED_MODEL_DIR if args.model_prompts else None,
        model_prompts=args.model_prompts,
        images=args.images,
        progress=None if args.json else print,
    )
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.to_text())
    return EXIT_OK


async def run_queue(args: argparse.Namespace, settings: Settings) -> int:
    from bench.queue import measure_queue

    if args.jobs < 1 or args.queued < 1:
        raise CommandError(
            f"--jobs and --queued must be at least 1, got {args.jobs}, {args.queued}"
        )
    redis = None
    url = args.redis_url or settings.redis_url
    if url:
        from bench.queue import measure_redis

        redis = await measure_redis(url, args.redis_jobs, args.queued)
    report = await asyncio.to_thread(measure_queue, args.jobs, args.queued, redis)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.to_text())
    return EXIT_OK


async def run_batching(args: argparse.Namespace, settings: Settings) -> int:
    from bench.batching import measure_batching

    if args.jobs < 2 or args.rounds < 1:
        raise CommandError(
            f"--jobs must be at least 2 and --rounds 1, got {args.jobs}, {args.rounds}"
        )
    report = await measure_batching(
        settings, jobs=args.jobs, variants=args.variants, steps=args.steps, rounds=args.rounds
    )
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.to_text())
    return EXIT_OK


async def run_models(args: argparse.Namespace, settings: Settings) -> int:
    from bench.models import measure_models

    if args.runs < 1 or args.variants < 1:
        raise CommandError(
            f"--runs and --variants must be at least 1, got {args.runs}, {args.variants}"
        )
    report = await asyncio.to_thread(
        measure_models, settings, runs=args.runs, variants=args.variants, steps=args.steps
    )
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.to_text())
    return EXIT_OK


async def run_discord(args: argparse.Namespace, settings: Settings) -> int:
    from importlib.util import find_spec

    from bench.discord import measure_discord

    # The fake Discord (the top-level fake_discord package) is looked for, not imported here.
    if find_spec("fake_discord") is None:
        raise CommandError("sdbot bench discord needs the fake Discord (the fake_discord package)")
    if args.guilds < 1 or args.members < 1 or args.spread < 0:
        raise CommandError(
            "--guilds and --members must be at least 1 and --spread at least 0, got "
            f"{args.guilds}, {args.members}, {args.spread}"
        )
    report = await measure_discord(
        settings,
        guilds=args.guilds,
        members=args.members,
        steps=args.steps,
        timeout_s=args.timeout,
        spread_s=args.spread,
    )
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.to_text())
    return EXIT_OK


async def run_mod(args: argparse.Namespace, settings: Settings) -> int:
    from bench.mod import measure_mod

    if args.jobs < 100 or args.guilds < 1:
        raise CommandError(
            f"--jobs must be at least 100 and --guilds at least 1, got {args.jobs}, {args.guilds}"
        )
    try:
        report = await measure_mod(
            settings, jobs=args.jobs, guilds=args.guilds, database_url=args.database_url
        )
    except ValueError as error:
        raise CommandError(f"--database-url {error}") from error
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.to_text())
    return EXIT_OK


async def run_ops(args: argparse.Namespace, settings: Settings) -> int:
    from dataclasses import replace

    from bench.ops import Sizes, measure_ops

    sizes = Sizes.quick() if args.quick else Sizes()
    sizes = replace(
        sizes,
        jobs=sizes.jobs if args.jobs is None else args.jobs,
        member_jobs=sizes.member_jobs if args.member_jobs is None else args.member_jobs,
    )
    if sizes.jobs < 1 or not 1 <= sizes.member_jobs <= sizes.jobs:
        raise CommandError(
            "--jobs must be at least 1 and --member-jobs from 1 to --jobs, got "
            f"{sizes.jobs}, {sizes.member_jobs}"
        )
    if args.postgres and not args.postgres.startswith("postgresql"):
        raise CommandError(f"--postgres must be a postgresql+asyncpg:// URL, got {args.postgres!r}")
    try:
        report = await measure_ops(
            settings, sizes, postgres=args.postgres, redis_url=args.redis_url or settings.redis_url
        )
    except ValueError as error:
        raise CommandError(f"--postgres {error}") from error
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.to_text())
    return EXIT_OK
