"""The texts the bot posts about a job: its title, its place and progress, its result, /job's
details, refusals, /help, and the one mapping from our errors to the member's words.

Pure functions of records and outcomes (``discord.File`` aside): ``sdbot discord check`` runs
them with the longest values the bot accepts, and tests read them without a client.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import discord

from bot.access import Control, Gated
from bot.discord.text import MESSAGE_LIMIT, code, quoted
from bot.imagine.errors import ShuttingDown
from bot.imagine.outcomes import Refusal
from common.errors import SdbotError
from generation.errors import InvalidOption
from generation.options import offered_sizes, renamed
from generation.starts import ZOOM_FACTOR
from storage.models import Controls, Disposition, GorePolicy, JobKind, JobStatus, NsfwPolicy

if TYPE_CHECKING:
    from bot.imagine.outcomes import ImagineOutcome
    from bot.imagine.types import GuildLimits
    from generation.options import GenerationOptions
    from generation.protocol import Progress
    from storage.guild_settings import GuildSettingsRecord
    from storage.records import JobRecord

UPSCALES = ("1️⃣", "2️⃣", "3️⃣", "4️⃣")
VARIES = ("↖️", "↗️", "↙️", "↘️")  # the tiles of the 2×2 grid, in variant order
REROLL = "🔄"
ZOOM = "🔍"
DELETE = "❌"
CONTROLS = (*UPSCALES, *VARIES, REROLL, DELETE)  # under a grid
UPSCALE_CONTROLS = (ZOOM, DELETE)  # under an upscale
# The options as /imagine names them, for refusals that name what the member typed.
OPTION_NAMES = {
    "width": "size",
    "height": "size",
    "cfg": "guidance",
    "scheduler": "sampler",
    "negative prompt": "negative",
}
SOMETHING_WENT_WRONG = (
    "⚠️ something went wrong on sdbot's side; the error is logged for its operator"
)
REFUSAL_MARKS = {
    Refusal.RATE: "⏳",
    Refusal.BANNED: "⛔",
    Refusal.PAUSED: "⏸️",
    Refusal.CHANNEL: "📍",
    Refusal.DIRECT: "✉️",
    Refusal.MODEL: "🎨",
    Refusal.INPUT: "🖼️",
}


def explain(error: BaseException) -> str | None:
    """The member's words for an error we expect; None: a bug (log it, say something broke)."""
    if isinstance(error, InvalidOption):  # discord.py does not enforce ranges: we do
        return f"⚠️ {renamed(error, OPTION_NAMES)}"
    if isinstance(error, ShuttingDown):
        return f"🔁 {error}"
    if isinstance(error, Gated):
        return refused(error.refusal, error.reason)
    if isinstance(error, SdbotError):  # a refusal, bad input, something not found, …
        return f"⚠️ {error}"
    return None


def eta(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f" · about {seconds:.0f} s" if seconds < 90 else f" · about {seconds / 60:.0f} min"


def title_of(
    prompt: str,
    job_id: int,
    kind: str,
    parent_job_id: int | None,
    parent_variant: int | None,
    *,
    start: str = "text",
    strength: float | None = None,
    control: str | None = None,
    control_scale: float | None = None,
) -> str:
    """``**prompt** · job N``, with what it was made from: the job and variant it derives
    from (upscale, reroll, vary, zoom), or the member's picture and how much of it is redrawn
    (img2img, /edit), or the picture whose edges a ControlNet follows."""
    what = made_from(kind, parent_job_id, parent_variant, start, strength, control, control_scale)
    return f"**{quoted(prompt)}**{what} · job {job_id}"


def made_from(
    kind: str,
    parent_job_id: int | None,
    parent_variant: int | None,
    start: str = "text",
    strength: float | None = None,
    control: str | None = None,
    control_scale: float | None = None,
) -> str:
    """`` · vary of #2 of job 7 (strength 0.35)``: what a job was made from, for its title."""
    redrawn = f" (strength {strength:g})" if strength is not None else ""
    if kind == JobKind.UPSCALE.value:
        return f" · upscale of #{parent_variant} of job {parent_job_id}"
    if kind == JobKind.REROLL.value:
        return f" · reroll of job {parent_job_id}"
    if kind == JobKind.VARY.value:
        return f" · vary of #{parent_variant} of job {parent_job_id}{redrawn}"
    if kind == JobKind.ZOOM.value:
        return f" · zoom out {ZOOM_FACTOR}× of job {parent_job_id}"
    picture = f"job {parent_job_id}'s picture" if parent_job_id else "your picture"
    if kind == JobKind.EDIT.value:
        return f" · edit of {picture}{redrawn}"
    if start == "image":
        return f" · from {picture}{redrawn}"
    if control is not None:
        scale = f" ({control_scale:g})" if control_scale is not None else ""
        return f" · following the {control} edges of {picture}{scale}"
    return ""


def title(record: JobRecord) -> str:
    return title_of(
        record.prompt,
        record.id,
        record.kind,
        record.parent_job_id,
        record.parent_variant,
        start=record.start,
        strength=record.strength,
        control=record.control,
        control_scale=record.control_scale,
    )


def chosen(options: GenerationOptions) -> str:
    """The options a picture was drawn with, as a post echoes them."""
    side = options.upscale
    text = (
        f"{options.width * side}×{options.height * side} · {options.steps} steps · "
        f"guidance {options.guidance_scale:g}"
    )
    return text if options.scheduler == "default" else f"{text} · sampler {options.scheduler}"


def progress_text(progress: Progress, options: GenerationOptions) -> str:
    """``drawing: step 7/20`` in the steps the member asked for. The worker counts an
    upscale's redraw at twice the size in the same run, and some samplers (Heun) take more
    steps than asked: the redraw is shown as its own phase, the rest scaled to the steps."""
    refine = options.refine_steps
    first = max(1, progress.total - refine)
    if progress.step <= first:
        step = min(options.steps, max(1, math.ceil(progress.step * options.steps / first)))
        return f"drawing: step {step}/{options.steps}"
    return f"upscaling: step {min(progress.step - first, refine)}/{refine}"


def drawn_with(model: str, loras: Sequence[object], embeddings: Sequence[str]) -> str:
    """``model embedded · LoRA outline:0.8, stripes:1 · embeddings gloom``: what a picture was
    drawn with, each name as typed (no markdown), the LoRAs with their weights."""
    parts = [f"model {code(model, 64)}"]
    if loras:
        parts.append("LoRA " + ", ".join(code(str(lora), 64) for lora in loras))
    if embeddings:
        parts.append("embeddings " + ", ".join(code(token, 64) for token in embeddings))
    return " · ".join(parts)


LEGEND = {
    Control.UPSCALE: f"{UPSCALES[0]}–{UPSCALES[-1]} upscale",
    Control.VARY: f"{' '.join(VARIES)} vary",
    Control.REROLL: f"{REROLL} reroll",
    Control.ZOOM: f"{ZOOM} zoom out {ZOOM_FACTOR}×",
    Control.DELETE: f"{DELETE} delete",
}


def legend(controls: Sequence[Control]) -> str:
    """What the reactions under a post do: ``1️⃣–4️⃣ upscale · ↖️ ↗️ ↙️ ↘️ vary · …``."""
    return " · ".join(LEGEND[control] for control in controls)


def final(
    outcome: ImagineOutcome,
    heading: str,
    options: GenerationOptions,
    model_label: str,
    controls: str = "",
) -> tuple[str, discord.File | None]:
    """The text and the picture file of a finished job; ``controls`` (its :func:`legend`)
    follows the heading of a post with its picture."""
    if outcome.status is JobStatus.CANCELLED:
        return f"{heading}\n❌ {outcome.error or 'cancelled'}", None
    if outcome.status is not JobStatus.SUCCEEDED:
        return f"{heading}\n❌ {outcome.status.value}: {outcome.error or 'no images'}", None
    seeds = ", ".join(str(seed) for seed in outcome.seeds)
    used = drawn_with(
        outcome.model or options.model or model_label,
        outcome.loras or options.loras,
        outcome.embeddings,
    )
    lines = [
        heading,
        f"seed{'s' if len(outcome.seeds) > 1 else ''} {seeds} · {chosen(options)} · {used}",
        *(f"ℹ️ {quoted(note, 300)}" for note in outcome.notes),
    ]
    withheld = [image for image in outcome.images if image.withheld]
    if withheld:
        lines.append(
            "withheld: "
            + "; ".join(f"#{image.variant} ({quoted(image.reason, 200)})" for image in withheld)
        )
    grid = outcome.grid
    if grid is None or grid.png is None:  # a one-picture job whose picture was withheld
        return "\n".join(lines), None
    if grid.spoiler:
        lines.append(f"spoilered: {quoted(grid.reason, 200)}")
    name = f"{'SPOILER_' if grid.spoiler else ''}sdbot-{outcome.job_id}.png"
    if controls:
        lines.insert(1, controls)
    return "\n".join(lines), discord.File(io.BytesIO(grid.png), filename=name)


def details(record: JobRecord, model_label: str) -> str:
    """/job's text: what a job was asked to draw, how, by whom, and how it ended."""
    lines = [title(record)]
    when = discord.utils.format_dt(record.created_at, "f")
    took = f" in {record.total_ms / 1000:.1f} s" if record.total_ms else ""
    by = f"<@{record.user_id}>" if record.user_id else "the command line"
    lines.append(f"by {by} · {when} · {record.status.value}{took}")
    if record.error:
        lines.append(f"reason: {quoted(record.error)}")
    if record.negative_prompt:
        lines.append(f"negative: {quoted(record.negative_prompt)}")
    seeds = ", ".join(str(seed) for seed in record.seeds)
    lines.append(
        f"{record.width}×{record.height} · {record.steps} steps · guidance "
        f"{record.guidance_scale:g} · sampler {record.scheduler} · seeds {seeds} · "
        + drawn_with(record.model or model_label, record.loras, record.embeddings)
    )
    withheld = [i for i in record.images if i.disposition == Disposition.WITHHELD]
    if withheld:
        lines.append("withheld: " + ", ".join(f"#{i.variant}" for i in withheld))
    return "\n".join(lines)


def stored_post(record: JobRecord, channel_nsfw: bool) -> tuple[tuple[Path, str] | None, str]:
    """The job's posted picture in the output folder and its file name, or why it cannot be
    posted here."""
    if record.status is not JobStatus.SUCCEEDED:
        return None, ""
    posted = [i for i in record.images if i.variant == 0] or [
        i for i in record.images if i.disposition != Disposition.WITHHELD
    ]
    if not posted:
        return None, "its picture was withheld"
    image = posted[0]
    spoilered = image.disposition == Disposition.SPOILER
    if spoilered and not channel_nsfw:
        return None, "its picture is shown only in age-restricted channels"
    if image.path is None or not Path(image.path).is_file():
        return None, "its picture is no longer stored"
    spoiler = "SPOILER_" if spoilered else ""
    return (Path(image.path), f"{spoiler}sdbot-{record.id}.png"), ""


def refusal(outcome: ImagineOutcome) -> str:
    """A blocked or refused request, as its member reads it."""
    if outcome.status is JobStatus.BLOCKED:
        # The reasons quote list entries and patterns: shown as written, never as markdown; as
        # many as fit in one message, then how many more (every one is in the audit log).
        head = "🚫 This prompt was not accepted: "
        reasons = [quoted(reason, 200) for reason in outcome.verdict.reasons]
        shown = len(reasons)
        while shown and len(head + "; ".join(reasons[:shown]) + _more(reasons, shown)) > (
            MESSAGE_LIMIT
        ):
            shown -= 1
        return head + "; ".join(reasons[:shown]) + _more(reasons, shown)
    return refused(outcome.refusal or Refusal.RATE, outcome.error or "refused")


def _more(reasons: list[str], shown: int) -> str:
    left = len(reasons) - shown
    return f"; and {left} more" if left else ""


def refused(why: Refusal, reason: str) -> str:
    return f"{REFUSAL_MARKS[why]} {reason}"


def help_text(model_label: str, here: GuildLimits) -> str:
    """/help: what sdbot does, and this server's limits."""
    limits, defaults, rates, settings = here.options, here.defaults, here.rates, here.settings
    controls = settings.controls if settings else Controls.REQUESTER
    who = "anyone here" if controls is Controls.EVERYONE else "the requester and moderators"
    nsfw = (
        "spoilered in age-restricted channels, withheld elsewhere"
        if settings and settings.nsfw_policy is NsfwPolicy.SPOILER
        else "withheld"
    )
    gore = (
        "refused"
        if settings and settings.gore_policy is GorePolicy.BLOCK
        else "drawn only in age-restricted channels, spoilered"
    )
    return "\n".join(
        [
            f"**sdbot** draws pictures from text with Stable Diffusion ({model_label}).",
            "`/imagine prompt` makes a 2×2 grid; options: `negative`, `model`, `lora` "
            "(styles, `name:weight`), `aspect`, `steps`, `guidance`, `seed`, `sampler`; "
            "`(word:1.3)` in a prompt weighs a word more.",
            "`/job id` shows a job's settings and posts its grid again with the controls.",
            "`/cancel [id]` stops your queued or running job.",
            "`/privacy delete` deletes your prompts and pictures everywhere; `/privacy info` "
            "says what sdbot keeps and for how long.",
            "`/imagine image:` starts from your picture (`strength`: how much is redrawn); "
            "`control:` draws along its outlines. `/edit` redraws the white of a mask on your "
            "picture; `/describe` gives prompts for a picture.",
            f"Under a grid: {' '.join(UPSCALES)} upscale that picture, {' '.join(VARIES)} "
            f"vary the picture in that corner, {REROLL} draws the prompt again with new seeds; "
            f"under an upscale {ZOOM} zooms out {ZOOM_FACTOR}× (for {who}); {DELETE} deletes "
            "the post (its requester or a moderator).",
            "",
            "**Limits here**",
            f"- steps 1–{limits.max_steps} (default {defaults.steps}), guidance "
            f"{limits.min_guidance:g}–{limits.max_guidance:g}",
            *models_lines(here),
            f"- {rates.user_units_per_hour:g} standard images an hour for each member and "
            f"{rates.guild_units_per_hour:g} for the server, {rates.max_jobs_per_user} jobs "
            "at a time each (a standard image is 512×512 px at 20 steps; smaller and "
            "shorter ones cost less)",
            f"- images the safety checker flags are {nsfw}",
            f"- gore prompts are {gore}",
            "- every prompt, blocked ones too, is recorded for this server's moderators",
            *paused_line(settings),
            "",
            "Moderators (Manage Server) run sdbot here with `/mod`: bans, block and allow "
            "lists, settings, history, review, export, purge, forget, pause.",
        ]
    )


def models_lines(here: GuildLimits, most: int = 10) -> list[str]:
    """/help's models allowed here, each with its sizes within this server's limit, and the
    LoRAs allowed here."""
    if here.catalog is None:
        return []
    entries = here.models(channel_nsfw=True)
    said = []
    for entry in entries[:most]:
        sizes = ", ".join(
            f"{size.aspect} {size.width}×{size.height}"
            for size in offered_sizes(entry.sizes, here.options)
        )
        default = " (default)" if entry.name == here.catalog.default_model else ""
        nsfw = ", in age-restricted channels only" if entry.nsfw_only else ""
        said.append(f"{code(entry.name, 40)}{default}: {sizes or 'no size within the limit'}{nsfw}")
    more = f"; and {len(entries) - most} more" if len(entries) > most else ""
    lines = [f"- models (`model`, `aspect`): {'; '.join(said) or 'none'}{more}"]
    loras = [code(lora.name, 40) for lora in here.loras()]
    if loras:
        extra = f" and {len(loras) - 2 * most} more" if len(loras) > 2 * most else ""
        lines.append(f"- LoRAs (`lora`): {', '.join(loras[: 2 * most])}{extra}")
    return lines


def paused_line(settings: GuildSettingsRecord | None) -> list[str]:
    if settings is None or not settings.paused:
        return []
    why = f": {quoted(settings.pause_reason)}" if settings.pause_reason else ""
    return [f"- ⏸️ the moderators paused image generation here{why}"]
