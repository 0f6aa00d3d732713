"""The moderated path of one request, shared by the CLI and the Discord bot.

validate → prompt rules → audit record → worker (diffusion, safety, watermark) → image policy →
grid → outcome. Every request that passes validation gets a record, and every record one terminal
status.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from generation import images
from generation.errors import GenerationError
from generation.options import ModelDefaults, OptionLimits, RequestedOptions, validate
from generation.protocol import VariantImage, WorkRequest, watermark_id
from generation.supervisor import ProgressCallback, WorkerSupervisor
from moderation import watermark
from moderation.policy import Disposition, ImageDecision, ImagePolicy, NsfwPolicy, decide
from moderation.prompts import (
    GuildRule,
    InvalidTerm,
    PromptRules,
    PromptVerdict,
    RuleAction,
    check_prompt,
    rules_with_guild,
)
from storage.admin import GuildSettingsRepository, TermList, TermRecord
from storage.audit import AuditLog, NewImage, NewJob
from storage.errors import JobAlreadyFinished
from storage.models import JobKind, JobStatus, Verdict

log = logging.getLogger(__name__)


class SaveFailed(Exception):
    """The images could not be written to the output folder."""


@dataclass(frozen=True)
class Requester:
    source: str
    guild_id: int | None = None
    channel_id: int | None = None
    user_id: int | None = None
    channel_nsfw: bool = False  # the channel is marked NSFW (Discord's age-restricted flag)


@dataclass(frozen=True)
class ShownImage:
    """An image as it leaves the system: withheld ones keep their record but not their pixels."""

    variant: int
    seed: int
    png: bytes | None
    sha256: str
    watermark_id: int
    watermark_verified: bool
    safety_score: float
    safety_verdict: str
    width: int
    height: int
    disposition: Disposition = Disposition.SHOWN
    reason: str = ""  # why it is withheld or spoilered
    safety_threshold: float | None = None
    model_flagged: bool | None = None
    path: Path | None = None

    @property
    def withheld(self) -> bool:
        return self.disposition is Disposition.WITHHELD

    @property
    def spoiler(self) -> bool:
        return self.disposition is Disposition.SPOILER


@dataclass(frozen=True)
class ImagineOutcome:
    job_id: int
    status: JobStatus
    verdict: PromptVerdict
    prompt: str
    seeds: tuple[int, ...] = ()
    images: tuple[ShownImage, ...] = ()
    grid: ShownImage | None = None
    error: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)


def guild_rule(record: TermRecord) -> GuildRule:
    return GuildRule(RuleAction(record.kind.value), record.term, is_regex=record.is_regex)


async def rules_for(terms: TermList, base: PromptRules, guild_id: int | None) -> PromptRules:
    """The shipped rules plus the guild's own (and the global) entries in force now.

    Built once per set of entries (cached); entries were validated when they were stored.
    """
    entries = tuple(guild_rule(record) for record in await terms.for_guild(guild_id))
    try:
        return rules_with_guild(base, entries)
    except InvalidTerm:  # stored before a stricter check: skip that one, say so
        valid = []
        for entry in entries:
            try:
                rules_with_guild(base, (entry,))
            except InvalidTerm as error:
                log.warning("skipped list entry ◆ guild %s ◆ %s", guild_id, error)
            else:
                valid.append(entry)
        return rules_with_guild(base, tuple(valid))


async def moderate(
    terms: TermList, prompt: str, guild_id: int | None = None, negative_prompt: str = ""
) -> PromptVerdict:
    """The verdict on a prompt, without a model or a worker."""
    rules = await rules_for(terms, PromptRules.default(), guild_id)
    return check_prompt(prompt, rules, negative_prompt)


class ImagineService:
    def __init__(
        self,
        *,
        audit: AuditLog,
        terms: TermList,
        guild_settings: GuildSettingsRepository,
        supervisor: WorkerSupervisor,
        limits: OptionLimits,
        defaults: ModelDefaults,
        model_name: str,
        rules: PromptRules,
        nsfw_threshold: float,
        nsfw_strict_threshold: float,
        output_dir: Path | None = None,
    ) -> None:
        self.audit = audit
        self.terms = terms
        self.guild_settings = guild_settings
        self.nsfw_threshold = nsfw_threshold
        self.nsfw_strict_threshold = nsfw_strict_threshold
        self.supervisor = supervisor
        self.limits = limits
        self.defaults = defaults
        self.model_name = model_name
        self.rules = rules
        self.output_dir = output_dir

    async def rules_for(self, guild_id: int | None) -> PromptRules:
        return await rules_for(self.terms, self.rules, guild_id)

    async def image_policy(self, requester: Requester, verdict: PromptVerdict) -> ImagePolicy:
        """The thresholds and NSFW policy for this guild and channel."""
        guild_threshold, nsfw_policy = None, NsfwPolicy.BLOCK
        if requester.guild_id is not None:
            settings = await self.guild_settings.get(requester.guild_id)
            guild_threshold, nsfw_policy = settings.nsfw_threshold, settings.nsfw_policy
        return ImagePolicy.for_request(
            threshold=self.nsfw_threshold,
            strict_threshold=self.nsfw_strict_threshold,
            guild_threshold=guild_threshold,
            nsfw_policy=nsfw_policy,
            channel_nsfw=requester.channel_nsfw,
            force_safe=verdict.force_safe,
        )

    async def imagine(
        self,
        requested: RequestedOptions,
        requester: Requester,
        *,
        on_progress: ProgressCallback | None = None,
    ) -> ImagineOutcome:
        """Runs the whole path. Raises InvalidOption (before any record) for bad options."""
        started = time.perf_counter()
        # 1. Options: fail at the boundary, never clamp.
        options = validate(requested, self.limits, self.defaults)

        # 2. Prompt rules, then 3. the audit record (blocked requests too).
        rules = await self.rules_for(requester.guild_id)
        verdict = check_prompt(options.prompt, rules, options.negative_prompt)
        job_id = await self.audit.create_job(
            NewJob(
                source=requester.source,
                guild_id=requester.guild_id,
                channel_id=requester.channel_id,
                user_id=requester.user_id,
                kind=JobKind.IMAGINE,
                prompt=options.prompt,
                negative_prompt=options.negative_prompt,
                steps=options.steps,
                guidance_scale=options.guidance_scale,
                width=options.width,
                height=options.height,
                variants=options.variants,
                scheduler=options.scheduler,
                model=self.model_name,
                seeds=options.seeds,
                verdict=_audit_verdict(verdict),
                verdict_reasons=verdict.reasons or verdict.safe_reasons,
            )
        )
        if not verdict.allowed:
            log.info("blocked ◆ job %d ◆ %s", job_id, verdict.summary())
            return ImagineOutcome(job_id, JobStatus.BLOCKED, verdict, options.prompt, options.seeds)

        # 4. The worker, then 5. the grid, the files and the outcome. Whatever happens, the
        # record ends in one terminal status with the reason.
        try:
            policy = await self.image_policy(requester, verdict)
            await self.audit.mark_running(job_id)
            result = await self.supervisor.run(WorkRequest(job_id, options), on_progress)
            worker_done = time.perf_counter()
            shown = [self._shown(image, decide(image.safety, policy)) for image in result.images]
            grid = await asyncio.to_thread(self._grid, job_id, shown, result.images)
            try:
                shown, grid = await asyncio.to_thread(self._write_files, job_id, shown, grid)
            except OSError as error:
                raise SaveFailed(f"cannot save: {error}") from error
            await self.audit.record_outcome(
                job_id,
                JobStatus.SUCCEEDED,
                images=[_new_image(image) for image in (*shown, grid)],
                generation_ms=result.diffusion_ms + result.postprocess_ms,
            )
        except (GenerationError, SaveFailed) as error:
            reason = str(error)
            await asyncio.shield(self._finish_quietly(job_id, JobStatus.FAILED, reason))
            log.warning("failed ◆ job %d ◆ %s", job_id, reason)
            return ImagineOutcome(
                job_id, JobStatus.FAILED, verdict, options.prompt, options.seeds, error=reason
            )
        except asyncio.CancelledError:
            await asyncio.shield(self._finish_quietly(job_id, JobStatus.CANCELLED, "cancelled"))
            raise
        except BaseException as error:
            reason = f"internal error: {type(error).__name__}: {error}"
            await asyncio.shield(self._finish_quietly(job_id, JobStatus.FAILED, reason))
            raise

        finished = time.perf_counter()
        timings = {
            "diffusion": result.diffusion_ms,
            "worker_postprocess": result.postprocess_ms,
            "grid_and_files": (finished - worker_done) * 1000,
            "total": (finished - started) * 1000,
        }
        log.info("succeeded ◆ job %d ◆ %d images ◆ %.0f ms", job_id, len(shown), timings["total"])
        return ImagineOutcome(
            job_id,
            JobStatus.SUCCEEDED,
            verdict,
            options.prompt,
            options.seeds,
            tuple(shown),
            grid,
            timings_ms=timings,
        )

    async def _finish_quietly(self, job_id: int, status: JobStatus, reason: str) -> None:
        """Records an interrupted job; if its outcome was already written, that one stands."""
        with contextlib.suppress(JobAlreadyFinished):
            await self.audit.record_outcome(job_id, status, error=reason)

    @staticmethod
    def _shown(image: VariantImage, decision: ImageDecision) -> ShownImage:
        return ShownImage(
            variant=image.variant,
            seed=image.seed,
            png=None if decision.withheld else image.png,
            sha256=image.sha256,
            watermark_id=image.watermark_id,
            watermark_verified=image.watermark_verified,
            safety_score=image.safety.nsfw_score,
            safety_verdict="flagged" if decision.flagged else "safe",
            width=image.width,
            height=image.height,
            disposition=decision.disposition,
            reason=decision.reason,
            safety_threshold=decision.threshold,
            model_flagged=image.safety.model_flagged,
        )

    @staticmethod
    def _grid(job_id: int, shown: list[ShownImage], raw: tuple[VariantImage, ...]) -> ShownImage:
        """The 2×2 grid of what may be shown, withheld tiles greyed, with its own watermark.

        It is spoilered when any of its tiles is; it is never withheld as a whole.
        """
        tiles = [
            images.placeholder(
                image.width, image.height, f"#{image.variant} withheld\n{image.reason}"
            )
            if image.withheld
            else variant.rgb
            for image, variant in zip(shown, raw, strict=True)
        ]
        marked = watermark.embed(images.make_grid(tiles), watermark_id(job_id, 0))
        png = images.to_png(marked.rgb)
        visible = [image for image in shown if not image.withheld]
        spoilered = [image for image in visible if image.spoiler]
        return ShownImage(
            variant=0,
            seed=shown[0].seed,
            png=png,
            sha256=hashlib.sha256(png).hexdigest(),
            watermark_id=marked.watermark_id,
            watermark_verified=marked.verified,
            safety_score=max((image.safety_score for image in visible), default=0.0),
            safety_verdict=(
                "flagged" if any(i.safety_verdict == "flagged" for i in visible) else "safe"
            ),
            width=marked.rgb.shape[1],
            height=marked.rgb.shape[0],
            disposition=Disposition.SPOILER if spoilered else Disposition.SHOWN,
            reason=spoilered[0].reason if spoilered else "",
            safety_threshold=shown[0].safety_threshold,
            model_flagged=(
                None
                if all(i.model_flagged is None for i in visible)
                else any(bool(i.model_flagged) for i in visible)
            ),
        )

    def _write_files(
        self, job_id: int, shown: list[ShownImage], grid: ShownImage
    ) -> tuple[list[ShownImage], ShownImage]:
        if self.output_dir is None:
            return shown, grid
        folder = self.output_dir / f"job-{job_id}"
        if folder.exists():  # a reset database reuses ids: never overwrite older pictures
            folder = self.output_dir / f"job-{job_id}-{uuid.uuid4().hex[:8]}"
        folder.mkdir(parents=True)
        written = []
        for image in (*shown, grid):
            if image.png is None:  # withheld
                written.append(image)
                continue
            name = "grid.png" if image.variant == 0 else f"variant-{image.variant}.png"
            path = folder / name
            path.write_bytes(image.png)
            written.append(dataclasses.replace(image, path=path))
        return written[:-1], written[-1]


def _new_image(image: ShownImage) -> NewImage:
    return NewImage(
        variant=image.variant,
        seed=image.seed,
        sha256=image.sha256,
        watermark_id=image.watermark_id,
        watermark_verified=image.watermark_verified,
        safety_score=image.safety_score,
        safety_verdict=image.safety_verdict,
        width=image.width,
        height=image.height,
        path=None if image.path is None else str(image.path),
        safety_threshold=image.safety_threshold,
        model_flagged=image.model_flagged,
        disposition=image.disposition.value,
    )


def _audit_verdict(verdict: PromptVerdict) -> Verdict:
    if not verdict.allowed:
        return Verdict.BLOCKED
    return Verdict.FORCE_SAFE if verdict.force_safe else Verdict.ALLOWED
