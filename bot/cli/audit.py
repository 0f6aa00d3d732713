"""`sdbot trace` and `sdbot audit export`: from an image or a date back to the records."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.cli import EXIT_OK, CommandError, NothingThere
from bot.cli.arguments import date, guild_id
from bot.cli.outcomes import lineage_lines

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from bot.settings import Settings
    from storage.records import ImageRecord, JobRecord

MAX_TRACE_PIXELS = 50_000_000


def register(commands: Any) -> None:
    trace = commands.add_parser("trace", help="read an image's watermark, print its audit record")
    trace.add_argument("image", type=Path)
    trace.add_argument("--json", action="store_true")
    trace.set_defaults(handler=run_trace)

    audit = commands.add_parser("audit", help="the audit log")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    export = audit_commands.add_parser("export", help="every record as CSV or JSON Lines")
    export.add_argument("--format", choices=("csv", "jsonl"), default="jsonl")
    export.add_argument("--guild", type=guild_id, help="only this guild's records")
    export.add_argument("--since", type=date, help="only records created since (UTC)")
    export.add_argument("--out", type=Path, help="write to a file instead of standard output")
    export.set_defaults(handler=run_export)


def check_image_size(path: Path) -> None:
    """Refuses a picture too big to decode, from its header alone (a 144-megapixel PNG would
    take gigabytes and half a minute); sdbot's own largest, an upscaled grid, is far below."""
    from PIL import Image

    try:
        with warnings.catch_warnings():  # PIL's bomb warning: the limit below says it in one line
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as picture:
                width, height = picture.size
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise CommandError(f"cannot read image {path}: {error}") from error
    if width * height > MAX_TRACE_PIXELS:
        raise CommandError(
            f"image {path} is {width}x{height} ({width * height / 1e6:.0f} megapixels); "
            f"sdbot trace reads pictures of at most {MAX_TRACE_PIXELS // 1_000_000} megapixels"
        )


PURGED_WHY = {
    "retention": "retention",
    "forget": "deleted at the member's request",
}


def purged(job: JobRecord) -> str:
    """What stands for a purged record's prompts: when and why they went (its ids, verdict
    and hashes are kept, so the watermark still traces here)."""
    assert job.purged_at is not None
    why = PURGED_WHY.get(job.purge_reason or "", job.purge_reason or "no reason recorded")
    return f"purged on {job.purged_at.date().isoformat()} ({why})"


def _describe(job: JobRecord, variant: int) -> str:
    what = "the grid" if variant == 0 else f"variant {variant}"
    lines = [
        f"{what} of job {job.id} ({job.kind}, {job.status.value})",
        f"  created   {job.created_at.isoformat(timespec='seconds')} from {job.source}"
        + (
            f" · guild {job.guild_id} channel {job.channel_id} user {job.user_id or '(forgotten)'}"
            if job.guild_id
            else ""
        ),
        f"  prompt    {job.prompt}" if job.purged_at is None else f"  prompt    {purged(job)}",
    ]
    if job.negative_prompt:
        lines.append(f"  negative  {job.negative_prompt}")
    lines += [
        f"  options   {job.steps} steps · cfg {job.guidance_scale:g} · {job.width}x{job.height}"
        f" · {job.scheduler} · seeds {' '.join(map(str, job.seeds))}",
        f"  model     {job.model}"
        + (f" · LoRAs {', '.join(job.loras)}" if job.loras else "")
        + (f" · embeddings {', '.join(job.embeddings)}" if job.embeddings else ""),
        f"  verdict   {job.verdict}"
        + (f": {'; '.join(job.verdict_reasons)}" if job.verdict_reasons else ""),
        *([f"  classifier {_scores(job.classifier_scores)}"] if job.classifier_scores else []),
        *(f"  {line}" for line in lineage_lines(job)),
    ]
    for image in job.images:
        if image.variant == variant:
            threshold = image.safety_threshold
            lines.append(
                f"  image     {image.width}x{image.height} sha256 {image.sha256[:16]}… "
                f"safety {image.safety_verdict} {image.safety_score:.2f}"
                + ("" if threshold is None else f" (threshold {threshold:g})")
                + (" model checker flagged" if image.model_flagged else "")
                + f" · {image.disposition}"
            )
    return "\n".join(lines)


# Mean absolute difference (0–255) below which a picture is the recorded one re-encoded or
# resized (JPEG q75 and a resize to half and back stay under 4); two different pictures of the
# embedded model differ by tens.
SAME_PICTURE_MAX_DIFF = 12.0


def _made_by(path: Path, rgb: npt.NDArray[np.uint8], image: ImageRecord) -> bool:
    """Whether the picture is the recorded image: its very bytes, or, re-encoded or resized,
    the same pixels as the recorded file. Watermark ids come from job ids, which a reset
    database hands out again, so the mark alone cannot tell. Without the recorded file to
    compare with (another machine's), the mark is taken at its word."""
    import numpy as np
    from PIL import Image

    from generation.images import from_image_file

    if hashlib.sha256(path.read_bytes()).hexdigest() == image.sha256:
        return True
    if image.path is None or not Path(image.path).is_file():
        return True
    try:
        recorded = from_image_file(image.path)
    except (OSError, ValueError):
        return True
    height, width = recorded.shape[:2]
    resized = np.asarray(Image.fromarray(rgb).resize((width, height), Image.Resampling.LANCZOS))
    difference = np.abs(resized.astype(np.int16) - recorded.astype(np.int16)).mean()
    return bool(difference <= SAME_PICTURE_MAX_DIFF)


async def run_trace(args: argparse.Namespace, settings: Settings) -> int:
    from PIL import Image

    from generation.images import from_image_file
    from generation.protocol import split_watermark_id
    from moderation import watermark
    from storage.repositories import open_storage

    check_image_size(args.image)
    try:
        rgb = from_image_file(str(args.image))
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise CommandError(f"cannot read image {args.image}: {error}") from error
    mark = watermark.decode(rgb)
    if mark is None:
        raise NothingThere(f"no sdbot watermark found in {args.image}")
    async with open_storage(settings.effective_database_url()) as storage:
        found = await storage.audit.find_by_watermark(mark)
    if found is None:
        job_id, variant = split_watermark_id(mark)
        raise NothingThere(
            f"{args.image} carries watermark {mark} (job {job_id}, variant {variant}), "
            "but this database has no such image"
        )
    job, image = found
    if not await asyncio.to_thread(_made_by, args.image, rgb, image):
        raise NothingThere(
            f"{args.image} carries watermark {mark} (job {job.id}, variant {image.variant}), but "
            f"this database's job {job.id} made another picture: the database was reset or "
            "restored since this one was made, and holds no record of it"
        )
    if args.json:
        print(
            json.dumps(
                {"watermark_id": mark, "variant": image.variant, "job": job.to_dict()}, indent=2
            )
        )
    else:
        print(_describe(job, image.variant))
    return EXIT_OK


async def run_export(args: argparse.Namespace, settings: Settings) -> int:
    from storage.export import write_csv, write_jsonl
    from storage.repositories import open_storage

    async with open_storage(settings.effective_database_url()) as storage:
        jobs = await storage.audit.list_jobs(guild_id=args.guild, since=args.since)
    write = write_csv if args.format == "csv" else write_jsonl
    if args.out is None:
        write(jobs, sys.stdout)
    else:
        with args.out.open("w", newline="", encoding="utf-8") as out:
            count = write(jobs, out)
        print(f"wrote {count} records to {args.out}", file=sys.stderr)
    return EXIT_OK


def _scores(scores: dict[str, float]) -> str:
    """The prompt classifier's scores as recorded: ``gore 0.97, sexual 0.02``."""
    return ", ".join(f"{label} {score:.2f}" for label, score in scores.items())
