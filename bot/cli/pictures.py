"""`sdbot edit`, `sdbot describe`, and the controls on a finished job: `sdbot upscale`,
`sdbot vary` and `sdbot zoom`. Pictures go through the same checks as on Discord (read safely,
NSFW-scored, their watermark traced, recorded by hash); a control starts its job through the
same claim, so a control used twice starts one job."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.cli import EXIT_FAILED, EXIT_OK, CommandError, NothingThere
from bot.cli.arguments import guild_id

if TYPE_CHECKING:
    from bot.imagine.describe import Described
    from bot.imagine.types import Attachment
    from bot.settings import Settings


def register(commands: Any) -> None:
    from bot.cli.imagine import add_drawing_options

    edit = commands.add_parser(
        "edit",
        help="redraw the white of a mask on a picture (inpaint), moderated and recorded",
        description="The picture and its mask (same size; white is redrawn) with a prompt: "
        "a job of kind edit, drawn like `sdbot imagine`.",
    )
    edit.add_argument("image", type=Path, help="the picture (PNG, JPEG or WebP)")
    edit.add_argument("prompt", help="what to draw where the mask is white")
    edit.add_argument("--mask", type=Path, required=True, help="white where it is redrawn")
    add_drawing_options(edit)
    edit.set_defaults(handler=run_edit)

    describe = commands.add_parser(
        "describe",
        help="prompts that would draw a picture again (recorded as a describe job)",
        description="The embedded model's pictures are read by its scene analyser; other "
        "models need SDBOT_CAPTION_MODEL (a BLIP folder).",
    )
    describe.add_argument("image", type=Path, help="the picture (PNG, JPEG or WebP)")
    describe.add_argument("--model", help="the prompts' model (default: the default model)")
    _add_where(describe)
    describe.set_defaults(handler=run_describe)

    for name, what in (
        ("upscale", "one variant of a grid redrawn at twice the size"),
        ("vary", "four variations of one variant of a grid"),
        ("zoom", "an upscale zoomed out 2x: its picture in the centre, the border drawn"),
    ):
        control = commands.add_parser(name, help=what, description=f"`sdbot {name}`: {what}.")
        control.add_argument("job", type=_job_id, help="the job's number")
        if name != "zoom":
            control.add_argument("variant", type=_variant, help="its variant, 1 to 4")
        if name == "vary":
            control.add_argument(
                "--strong", action="store_true", help="vary strongly (0.7; default: the guild's)"
            )
        control.add_argument("--out", type=Path, help="output folder (default: SDBOT_OUTPUT_DIR)")
        _add_where(control, "(default: the job's)")
        control.set_defaults(handler=run_control, control=name)


def _add_where(parser: Any, default: str = "") -> None:
    parser.add_argument(
        "--guild", type=guild_id, help=f"apply this guild's rules and NSFW policy {default}"
    )
    parser.add_argument(
        "--nsfw-channel", action="store_true", help="decide as for a channel marked NSFW"
    )
    parser.add_argument("--json", action="store_true", help="print the outcome as JSON")


def _whole(text: str, what: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"{what} must be a whole number from {low} to {high}, "
                                         f"got {text!r}")  # fmt: skip
    return value


def _job_id(text: str) -> int:
    return _whole(text, "a job", 1, 2**31 - 1)


def _variant(text: str) -> int:
    return _whole(text, "a variant", 1, 4)


def attachment_of(path: Path, option: str, max_bytes: int) -> Attachment:
    """The file at ``path`` as a member's attachment (at most one byte more than ``max_bytes``
    is read: the checker refuses it by its limit). CommandError names a file that is not
    there."""
    from bot.imagine.types import Attachment

    try:
        with path.open("rb") as file:
            data = file.read(max_bytes + 1)
    except FileNotFoundError:
        raise CommandError(f"{option} must be a picture file, got '{path}': no such file") from None
    except IsADirectoryError:
        raise CommandError(f"{option} must be a picture file, got '{path}': a folder") from None
    except OSError as error:
        raise CommandError(f"{option}: cannot read '{path}': {error.strerror}") from error
    return Attachment(data, path.name)


async def run_edit(args: argparse.Namespace, settings: Settings) -> int:
    from bot.cli.imagine import draw
    from bot.imagine.types import PicturesIn

    limit = int(settings.max_input_mb * 1024 * 1024)
    image = attachment_of(args.image, "image", limit)
    mask = attachment_of(args.mask, "mask", limit)
    return await draw(args, settings, PicturesIn(image=image, mask=mask))


def described_json(described: Described) -> dict[str, Any]:
    return {
        "job_id": described.job_id,
        "model": described.model,
        "prompts": list(described.prompts),
        "sha256": described.sha256,
        "nsfw_score": described.nsfw_score,
        "parent_job_id": described.parent_job_id,
        "refusal": None if described.refusal is None else described.refusal.value,
        "error": described.error,
    }


def print_described(described: Described) -> None:
    if described.refusal is not None:
        print(f"job {described.job_id} refused: {described.error}")
    elif described.error is not None:
        print(f"job {described.job_id} failed: {described.error}")
    else:
        print(f"job {described.job_id} described for model {described.model}:")
        for number, prompt in enumerate(described.prompts, 1):
            print(f"  {number}. {prompt}")
    score = "" if described.nsfw_score is None else f" · nsfw {described.nsfw_score:.2f}"
    print(f"  input     image sha256 {described.sha256}{score}")
    if described.parent_job_id is not None:
        print(f"  made by   job {described.parent_job_id} (its watermark)")


async def run_describe(args: argparse.Namespace, settings: Settings) -> int:
    from bot.app import open_service, open_storage
    from bot.cli.imagine import catalog_of
    from bot.imagine.types import Requester

    catalog_of(settings)  # a bad models file is a settings error, before any I/O
    picture = attachment_of(args.image, "image", int(settings.max_input_mb * 1024 * 1024))
    requester = Requester(source="cli", guild_id=args.guild, channel_nsfw=args.nsfw_channel)
    async with open_storage(settings) as storage, open_service(settings, storage) as service:
        described = await service.describer.describe(picture, requester, model=args.model)
    if args.json:
        print(json.dumps(described_json(described), indent=2))
    else:
        print_described(described)
    return EXIT_OK if described.error is None else EXIT_FAILED


async def run_control(args: argparse.Namespace, settings: Settings) -> int:
    from bot.access import Control
    from bot.app import open_service, open_storage
    from bot.cli.imagine import catalog_of
    from bot.cli.outcomes import progress_printer, queue_printer, report
    from bot.imagine.controls import control_name
    from bot.imagine.outcomes import AlreadyStarted, ImagineOutcome
    from bot.imagine.types import Requester

    catalog_of(settings)
    control = Control(args.control)
    variant = getattr(args, "variant", None)
    if args.out is not None:
        settings = settings.model_copy(update={"output_dir": args.out})
    async with open_storage(settings) as storage, open_service(settings, storage) as service:
        parent = await storage.audit.get_job(args.job)
        if parent is None:
            raise NothingThere(f"there is no job {args.job}")
        requester = Requester(  # the parent's server and channel unless told otherwise
            source="cli",
            guild_id=parent.guild_id if args.guild is None else args.guild,
            channel_nsfw=args.nsfw_channel or (args.guild is None and parent.channel_nsfw),
        )
        vary = "strong" if getattr(args, "strong", False) else None
        started = await service.use_control(
            args.job, variant, requester, control=control, vary=vary
        )
        if isinstance(started, AlreadyStarted):
            what = control_name(variant, control)
            child = started.job
            now = "it is being started" if child is None else f"job {child.id}"
            status = "" if child is None else f" ({child.status.value})"
            raise CommandError(f"{what} of job {args.job} was used already: {now}{status}")
        if isinstance(started, ImagineOutcome):
            outcome = started
        else:
            outcome = await service.follow_submitted(
                started,
                on_progress=progress_printer(not args.json and sys.stderr.isatty()),
                on_queued=queue_printer(not args.json and sys.stderr.isatty()),
            )
        record = await storage.audit.get_job(outcome.job_id)
    return report(outcome, record, args.json)
