"""The moderated path of one request, shared by the CLI and the Discord bot.

validate → prompt rules → audit record → worker (diffusion, safety, watermark) → grid → outcome.
Every request that passes validation gets a record, and every record one terminal status.
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
from moderation.prompts import PromptRules, PromptVerdict, check_prompt
from moderation.safety import SafetyVerdict
from storage.admin import TermList
from storage.audit import AuditLog, NewImage, NewJob
from storage.errors import JobAlreadyFinished
from storage.models import JobKind, JobStatus, TermKind, Verdict

log = logging.getLogger(__name__)


class SaveFailed(Exception):
    """The images could not be written to the output folder."""


@dataclass(frozen=True)
class Requester:
    source: str
    guild_id: int | None = None
    channel_id: int | None = None
    user_id: int | None = None


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
    path: Path | None = None

    @property
    def withheld(self) -> bool:
        return self.png is None


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


async def rules_for(terms: TermList, base: PromptRules, guild_id: int | None) -> PromptRules:
    """The shipped rules plus the guild's own (and the global) block and allow terms."""
    extra = await terms.for_guild(guild_id)
    return base.with_terms(
        block=[t.term for t in extra if t.kind is TermKind.BLOCK],
        allow=[t.term for t in extra if t.kind is TermKind.ALLOW],
    )


async def moderate(terms: TermList, prompt: str, guild_id: int | None = None) -> PromptVerdict:
    """The verdict on a prompt, without a model or a worker."""
    return check_prompt(prompt, await rules_for(terms, PromptRules.default(), guild_id))


class ImagineService:
    def __init__(
        self,
        *,
        audit: AuditLog,
        terms: TermList,
        supervisor: WorkerSupervisor,
        limits: OptionLimits,
        defaults: ModelDefaults,
        model_name: str,
        rules: PromptRules,
        output_dir: Path | None = None,
    ) -> None:
        self.audit = audit
        self.terms = terms
        self.supervisor = supervisor
        self.limits = limits
        self.defaults = defaults
        self.model_name = model_name
        self.rules = rules
        self.output_dir = output_dir

    async def rules_for(self, guild_id: int | None) -> PromptRules:
        return await rules_for(self.terms, self.rules, guild_id)

    async def imagine(
        self,
        requested: RequestedOptions,
        requester: Requester,
        *,
        show_flagged: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> ImagineOutcome:
        """Runs the whole path. Raises InvalidOption (before any record) for bad options."""
        started = time.perf_counter()
        # 1. Options: fail at the boundary, never clamp.
        options = validate(requested, self.limits, self.defaults)

        # 2. Prompt rules, then 3. the audit record (blocked requests too).
        verdict = check_prompt(options.prompt, await self.rules_for(requester.guild_id))
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
                verdict=Verdict.ALLOWED if verdict.allowed else Verdict.BLOCKED,
                verdict_reasons=verdict.reasons,
            )
        )
        if not verdict.allowed:
            log.info("blocked ◆ job %d ◆ %s", job_id, verdict.summary())
            return ImagineOutcome(job_id, JobStatus.BLOCKED, verdict, options.prompt, options.seeds)

        # 4. The worker, then 5. the grid, the files and the outcome. Whatever happens, the
        # record ends in one terminal status with the reason.
        try:
            await self.audit.mark_running(job_id)
            result = await self.supervisor.run(WorkRequest(job_id, options), on_progress)
            worker_done = time.perf_counter()
            shown = [self._shown(image, show_flagged) for image in result.images]
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
    def _shown(image: VariantImage, show_flagged: bool) -> ShownImage:
        withhold = image.safety.flagged and not show_flagged
        return ShownImage(
            variant=image.variant,
            seed=image.seed,
            png=None if withhold else image.png,
            sha256=image.sha256,
            watermark_id=image.watermark_id,
            watermark_verified=image.watermark_verified,
            safety_score=image.safety.score,
            safety_verdict=image.safety.verdict.value,
            width=image.width,
            height=image.height,
        )

    @staticmethod
    def _grid(job_id: int, shown: list[ShownImage], raw: tuple[VariantImage, ...]) -> ShownImage:
        """The 2×2 grid of what may be shown, withheld tiles greyed, with its own watermark."""
        tiles = [
            images.placeholder(image.width, image.height, f"#{image.variant} withheld")
            if image.png is None
            else variant.rgb
            for image, variant in zip(shown, raw, strict=True)
        ]
        marked = watermark.embed(images.make_grid(tiles), watermark_id(job_id, 0))
        png = images.to_png(marked.rgb)
        visible = [v for v, s in zip(raw, shown, strict=True) if s.png is not None]
        flagged = any(v.safety.flagged for v in visible)
        return ShownImage(
            variant=0,
            seed=shown[0].seed,
            png=png,
            sha256=hashlib.sha256(png).hexdigest(),
            watermark_id=marked.watermark_id,
            watermark_verified=marked.verified,
            safety_score=max((v.safety.score for v in visible), default=0.0),
            safety_verdict=(SafetyVerdict.FLAGGED if flagged else SafetyVerdict.SAFE).value,
            width=marked.rgb.shape[1],
            height=marked.rgb.shape[0],
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
            if image.png is None:
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
    )
