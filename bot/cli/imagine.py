"""`sdbot imagine`, `sdbot recover` and `sdbot moderate`: the moderated path without Discord."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.cli import EXIT_BLOCKED, EXIT_FAILED, EXIT_OK, CommandError
from bot.cli.arguments import check_guild_id, control_spec, guild_id
from bot.cli.outcomes import (
    outcome_json,
    print_outcome,
    progress_printer,
    queue_printer,
    verdict_json,
)
from generation.options import (
    LORA_WEIGHT_MAX,
    LORA_WEIGHT_MIN,
    MAX_LORAS,
    SCHEDULERS,
    RequestedOptions,
)
from generation.prompt_syntax import parse_lora_list
from generation.starts import (
    CONTROL_SCALE,
    CONTROL_SCALE_MAX,
    CONTROL_SCALE_MIN,
    CONTROL_TYPES,
    IMAGE_STRENGTH,
    STRENGTH_MAX,
    STRENGTH_MIN,
)

if TYPE_CHECKING:
    from bot.imagine.outcomes import ImagineOutcome
    from bot.imagine.types import PicturesIn
    from bot.settings import Settings
    from generation.catalog import Catalog
    from storage.records import JobRecord


def register(commands: Any) -> None:
    imagine = commands.add_parser(
        "imagine",
        help="make images from a prompt: moderation, worker, safety, watermark, audit",
        description="Runs the whole moderated path offline and writes the variants and a grid.",
    )
    imagine.add_argument("prompt", help="what to draw")
    add_drawing_options(imagine)
    add_picture_options(imagine)
    imagine.set_defaults(handler=run_imagine)

    recover = commands.add_parser(
        "recover",
        help="resume the jobs a stopped process left open, and print their outcomes",
        description=(
            "Queued jobs run again; a running one is retried once, then failed with the reason. "
            "The Discord bot does the same at start-up."
        ),
    )
    recover.add_argument("--json", action="store_true", help="one JSON outcome per line")
    recover.set_defaults(handler=run_recover)

    moderate = commands.add_parser(
        "moderate",
        help="print the verdict on a prompt (exit 0 allowed, 3 blocked)",
        description="Runs the prompt rules only: no model, no worker, no record.",
    )
    moderate.add_argument("prompt")
    moderate.add_argument("--negative", default="", help="the negative prompt, checked too")
    moderate.add_argument(
        "--guild", type=guild_id, help="apply this guild's own lists and gore policy too"
    )
    moderate.add_argument(
        "--nsfw-channel",
        action="store_true",
        help="judge as in an age-restricted channel (gore may pass there, spoilered)",
    )
    moderate.add_argument("--json", action="store_true")
    moderate.set_defaults(handler=run_moderate)


def add_drawing_options(parser: Any) -> None:
    """The options of a request to draw (``sdbot imagine``, ``sdbot edit``): all but the
    prompt and the pictures."""
    parser.add_argument("--negative", default="", help="what not to draw")
    parser.add_argument("--seed", type=int, help="base seed; variant i uses seed + i")
    parser.add_argument("--steps", type=int, help="denoising steps (default: the model's)")
    parser.add_argument("--cfg", type=float, help="guidance scale (default: the model's)")
    parser.add_argument("--model", help="a model's name (default: the default model)")
    parser.add_argument(
        "--lora",
        action="append",
        default=[],
        metavar="NAME[:WEIGHT]",
        help=f"a LoRA and its weight (default 1, from {LORA_WEIGHT_MIN:g} to "
        f"{LORA_WEIGHT_MAX:g}); repeat it, or list them 'a:0.8,b', for up to {MAX_LORAS}",
    )
    parser.add_argument(
        "--aspect", help="one of the model's sizes by its aspect ratio: 1:1, 3:2, 2:3, 16:9, 9:16"
    )
    parser.add_argument("--width", type=int, help="pixels: one of the model's sizes")
    parser.add_argument("--height", type=int, help="pixels: one of the model's sizes")
    parser.add_argument("--variants", type=int, default=4, help="images to make (default 4)")
    parser.add_argument("--scheduler", help="one of " + ", ".join(SCHEDULERS))
    parser.add_argument("--out", type=Path, help="output folder (default: SDBOT_OUTPUT_DIR)")
    parser.add_argument("--guild", type=int, help="apply this guild's lists and NSFW policy")
    parser.add_argument(
        "--nsfw-channel",
        action="store_true",
        help="decide as for a channel marked NSFW (flagged images spoilered if the guild allows)",
    )
    parser.add_argument("--json", action="store_true", help="print the outcome as JSON")
    parser.add_argument(
        "--strength",
        type=float,
        help=f"with a picture: the share redrawn, from {STRENGTH_MIN:g} to {STRENGTH_MAX:g} "
        f"(default {IMAGE_STRENGTH:g}; an edit's 1)",
    )


def add_picture_options(parser: Any) -> None:
    """``sdbot imagine``'s pictures: a start (img2img) or a ControlNet's picture."""
    parser.add_argument("--image", type=Path, metavar="FILE", help="a picture to start from")
    parser.add_argument(
        "--control",
        type=control_spec,
        metavar="KIND:FILE",
        help="a ControlNet and the picture its input is made from: "
        + ", ".join(f"{kind}:FILE" for kind in CONTROL_TYPES),
    )
    parser.add_argument(
        "--control-strength",
        type=float,
        help=f"how strongly the control holds, from {CONTROL_SCALE_MIN:g} to "
        f"{CONTROL_SCALE_MAX:g} (default {CONTROL_SCALE:g})",
    )


def _requested(args: argparse.Namespace) -> RequestedOptions:
    return RequestedOptions(
        prompt=args.prompt,
        negative_prompt=args.negative,
        seed=args.seed,
        steps=args.steps,
        guidance_scale=args.cfg,
        width=args.width,
        height=args.height,
        variants=args.variants,
        scheduler=args.scheduler,
        model=args.model,
        loras=tuple(choice for text in args.lora for choice in parse_lora_list(text)),
        aspect=args.aspect,
        strength=args.strength,
        control=None if getattr(args, "control", None) is None else args.control[0],
        control_scale=getattr(args, "control_strength", None),
    )


async def run_imagine(args: argparse.Namespace, settings: Settings) -> int:
    from bot.cli.pictures import attachment_of
    from bot.imagine.types import PicturesIn

    limit = int(settings.max_input_mb * 1024 * 1024)
    image = None if args.image is None else attachment_of(args.image, "image", limit)
    control = None if args.control is None else attachment_of(args.control[1], "control", limit)
    pictures = None if image is control is None else PicturesIn(image=image, control=control)
    return await draw(args, settings, pictures)


async def draw(args: argparse.Namespace, settings: Settings, pictures: PicturesIn | None) -> int:
    """A request to draw from the command line: ``sdbot imagine`` (with its pictures, if any)
    and ``sdbot edit``."""
    from bot.app import open_service, open_storage
    from bot.cli.outcomes import report
    from bot.cli.refusals import record_refusal
    from bot.imagine.types import Requester
    from generation.options import UnstorableText

    catalog = catalog_of(settings)
    requested = _requested(args)
    try:  # fail fast, before any I/O
        catalog.validate(requested, settings.catalog_limits())
        refusal = None if args.guild is None else check_guild_id(args.guild)
    except UnstorableText as error:
        refusal = str(error)
    if refusal is not None:  # a request all the same: recorded, refused
        guild = None if args.guild is None or check_guild_id(args.guild) else args.guild
        job_id = await record_refusal(
            settings, requested, refusal, guild_id=guild, channel_nsfw=args.nsfw_channel
        )
        raise CommandError(f"{refusal} (recorded as job {job_id}, refused)")
    if args.out is not None:
        settings = settings.model_copy(update={"output_dir": args.out})
    async with open_storage(settings) as storage, open_service(settings, storage) as service:
        outcome = await service.imagine(
            requested,
            Requester(source="cli", guild_id=args.guild, channel_nsfw=args.nsfw_channel),
            on_progress=progress_printer(not args.json and sys.stderr.isatty()),
            on_queued=queue_printer(not args.json and sys.stderr.isatty()),
            pictures=pictures,
        )
        record = await storage.audit.get_job(outcome.job_id)
    return report(outcome, record, args.json)


def catalog_of(settings: Settings) -> Catalog:
    """The settings' catalog; a bad model, models file, LoRA or embedding is a usage error (its
    message starts with the setting that named the file)."""
    from generation.errors import ModelLoadError

    try:
        return settings.catalog()
    except ModelLoadError as error:
        raise CommandError(str(error)) from error


async def run_recover(args: argparse.Namespace, settings: Settings) -> int:
    from bot.app import open_service, open_storage
    from storage.models import JobStatus

    outcomes: list[ImagineOutcome] = []

    def show(outcome: ImagineOutcome) -> None:
        outcomes.append(outcome)
        if args.json:
            print(json.dumps(outcome_json(outcome)), flush=True)
        else:
            print_outcome(outcome)

    held: list[JobRecord] = []

    def left(record: JobRecord) -> None:
        held.append(record)
        until = (
            ""
            if record.lease_expires_at is None
            else f" until {record.lease_expires_at:%H:%M:%S} UTC"
        )
        if args.json:
            print(
                json.dumps(
                    {
                        "job_id": record.id,
                        "status": record.status.value,
                        "held_by": record.lease_owner,
                    }
                ),
                flush=True,
            )
        else:
            print(
                f"job {record.id} {record.status.value}: left to {record.lease_owner}, "
                f"which runs it (lease{until})"
            )

    async with open_storage(settings) as storage, open_service(settings, storage) as service:
        swept = await service.sweep_files()
        if not args.json:
            for path in swept.published:
                print(f"moved into place: {path} (its record had committed)")
            if swept.removed:
                files = "entry" if len(swept.removed) == 1 else "entries"
                print(f"removed {len(swept.removed)} leftover {files} no record names")
        open_jobs = len(await storage.audit.open_jobs())
        if open_jobs == 0:
            if not args.json:
                print("no open jobs")
            return EXIT_OK
        resumed = await service.recover(show, left)
        if not args.json:
            jobs = "job" if open_jobs == 1 else "jobs"
            failed = open_jobs - resumed - len(held)
            print(
                f"{open_jobs} open {jobs}: {resumed} resumed, {failed} failed, "
                f"{len(held)} left to the live process that runs them"
            )
        await service.wait_recovered()
    succeeded = all(outcome.status is JobStatus.SUCCEEDED for outcome in outcomes)
    return EXIT_OK if succeeded and resumed + len(held) == open_jobs else EXIT_FAILED


async def run_moderate(args: argparse.Namespace, settings: Settings) -> int:
    from bot.imagine.rules import gore_policy, moderate
    from generation.options import check_storable
    from storage.repositories import open_storage

    check_storable("prompt", args.prompt)
    check_storable("negative prompt", args.negative)
    async with open_storage(settings.effective_database_url()) as storage:
        here = None if args.guild is None else await storage.guild_settings.get(args.guild)
        verdict = await moderate(
            storage.terms,
            args.prompt,
            args.guild,
            args.negative,
            gore_policy=gore_policy(here),
            channel_nsfw=args.nsfw_channel,
        )
    if args.json:
        print(json.dumps(verdict_json(verdict)))
    else:
        print(verdict.summary())
    return EXIT_OK if verdict.allowed else EXIT_BLOCKED
