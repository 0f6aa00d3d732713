"""The moderated path of one request, shared by the CLI and the Discord bot.

validate → prompt rules → audit record → worker (diffusion, safety, watermark) → image policy →
grid → outcome. Every request that passes validation gets a record, and every record one terminal
status.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import functools
import hashlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from generation import images
from generation.errors import GenerationError
from generation.limits import Limits, RateLimited, options_units
from generation.models import EMBEDDED_MODEL_DIR
from generation.options import (
    UPSCALE_FACTOR,
    GenerationOptions,
    ModelDefaults,
    OptionLimits,
    RequestedOptions,
    validate,
)
from generation.protocol import Progress, VariantImage, WorkRequest, WorkResult, watermark_id
from generation.queue import (
    Cancelled,
    CancelOutcome,
    Done,
    Failed,
    JobHandle,
    JobQueue,
    Queued,
    QueuedJob,
    Started,
)
from generation.supervisor import ProgressCallback, notify
from moderation import watermark
from moderation.guild_rules import GuildRulesCache
from moderation.policy import Disposition, ImageDecision, ImagePolicy, NsfwPolicy, decide
from moderation.prompts import (
    GuildRule,
    PromptRules,
    PromptVerdict,
    RuleAction,
    check_prompt,
)
from storage import pictures
from storage.admin import (
    BanList,
    GuildSettingsRecord,
    GuildSettingsRepository,
    ModerationLog,
    TermList,
    TermRecord,
)
from storage.audit import AuditLog, JobRecord, Lease, NewImage, NewJob
from storage.errors import JobAlreadyFinished
from storage.models import JobKind, JobStatus, Verdict, utcnow
from storage.pictures import StagedPictures, StagedState, SweepReport

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
    parent_channel_id: int | None = None  # a thread's channel


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
    retry_after: float | None = None  # refused: seconds until the same request would pass
    refusal: Refusal | None = None  # refused: by what


class Refusal(enum.StrEnum):
    """Why a request was refused before it was queued (it is recorded all the same)."""

    RATE = "rate"  # a rate limit, a member's cap or the queue bound
    BANNED = "banned"  # the member is banned from the bot in this guild
    PAUSED = "paused"  # the guild's moderators paused generation
    CHANNEL = "channel"  # the bot does not answer in this channel
    DIRECT = "direct"  # a direct message, where no guild's rules apply (unless allowed)


@dataclass(frozen=True)
class GuildLimits:
    """What a guild's members may ask for, and how much of it."""

    options: OptionLimits
    defaults: ModelDefaults
    rates: Limits
    settings: GuildSettingsRecord | None  # None outside a guild


@dataclass(frozen=True)
class Submitted:
    """A request recorded and queued: follow it with :meth:`ImagineService.follow`."""

    job: QueuedJob
    handle: JobHandle
    verdict: PromptVerdict
    started: float
    channel_nsfw: bool = False  # where it was asked for: its pictures' policy follows it


QueuedCallback = Callable[[Queued], Awaitable[None] | None]
OutcomeCallback = Callable[["ImagineOutcome"], Awaitable[None] | None]


class NotYours(Exception):
    """A user asked to act on a job that does not exist or belongs to someone else."""


class ShuttingDown(Exception):
    """The bot is stopping: it takes no new work until it starts again."""


class ControlUnavailable(Exception):
    """A control (upscale, reroll) that cannot start a job on this one; the message says why."""


@dataclass(frozen=True)
class AlreadyStarted:
    """The control was used before: ``job`` is what it started (None: being started now)."""

    job: JobRecord | None


@dataclass(frozen=True)
class Derived:
    """What makes a job a reroll or an upscale of another."""

    kind: JobKind
    parent_job_id: int
    parent_variant: int | None = None
    upscale: int = 1


def ban_message(reason: str, expires_at: datetime | None) -> str:
    """What a banned member is told (and what their refused requests record)."""
    until = "" if expires_at is None else f" until {expires_at:%Y-%m-%d %H:%M} UTC"
    why = f" ({reason})" if reason else ""
    return f"you are banned from sdbot on this server{until}{why}"


def control_name(variant: int | None) -> str:
    """The control's name in the audit log: ``upscale-2``, or ``reroll`` for None."""
    return "reroll" if variant is None else f"upscale-{variant}"


def guild_limits(
    defaults: Limits,
    *,
    user_per_hour: float | None,
    guild_per_hour: float | None,
    max_jobs_per_user: int | None,
) -> Limits:
    """A guild's own rates over the defaults; bursts scale with the rate, never below one
    full grid of standard images (4) so that the smallest rate can still make one."""

    def burst(rate: float | None, default_rate: float, default_burst: float) -> float:
        if rate is None:
            return default_burst
        return max(4.0, rate * default_burst / default_rate)

    return dataclasses.replace(
        defaults,
        user_units_per_hour=user_per_hour or defaults.user_units_per_hour,
        user_burst=burst(user_per_hour, defaults.user_units_per_hour, defaults.user_burst),
        guild_units_per_hour=guild_per_hour or defaults.guild_units_per_hour,
        guild_burst=burst(guild_per_hour, defaults.guild_units_per_hour, defaults.guild_burst),
        max_jobs_per_user=max_jobs_per_user or defaults.max_jobs_per_user,
    )


def guild_rule(record: TermRecord) -> GuildRule:
    return GuildRule(RuleAction(record.kind.value), record.term, is_regex=record.is_regex)


async def guild_entries(terms: TermList, guild_id: int | None) -> tuple[GuildRule, ...]:
    """The guild's own (and the global) entries in force now, in the order they were added."""
    return tuple(guild_rule(record) for record in await terms.for_guild(guild_id))


async def rules_for(
    terms: TermList,
    base: PromptRules,
    guild_id: int | None,
    *,
    cache: GuildRulesCache | None = None,
) -> PromptRules:
    """The shipped rules plus the guild's own (and the global) entries in force now, built in
    a thread; with ``cache`` (the bot's), built once per set of entries. An entry that fails
    today's checks is skipped with a warning (see ``moderation.guild_rules``)."""
    cache = cache or GuildRulesCache(base)
    return await cache.rules(await guild_entries(terms, guild_id), guild_id=guild_id)


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
        bans: BanList,
        moderation: ModerationLog,
        queue: JobQueue,
        limits: OptionLimits,
        defaults: ModelDefaults,
        model_name: str,
        rules: PromptRules,
        nsfw_threshold: float,
        nsfw_strict_threshold: float,
        output_dir: Path | None = None,
        default_limits: Limits | None = None,
        direct_messages: bool = False,
        lease_s: float = 30.0,
    ) -> None:
        self.audit = audit
        # This process's lease on the open jobs it follows, renewed while it runs.
        self.lease = Lease(lease_owner(), lease_s)
        self._renewing: asyncio.Task[None] | None = None
        self.direct_messages = direct_messages  # Discord DMs draw under the global rules only
        self.terms = terms
        self.guild_settings = guild_settings
        self.bans = bans
        self.moderation = moderation
        self.nsfw_threshold = nsfw_threshold
        self.nsfw_strict_threshold = nsfw_strict_threshold
        self.queue = queue
        self.default_limits = default_limits or Limits()
        self.closing = False
        self.accepting = True
        self._running: set[int] = set()  # followed jobs a worker has started
        self._recovered: dict[int, asyncio.Task[None]] = {}  # job id → its delivery
        self._stop_reasons: dict[int, str] = {}  # job id → why it was stopped, for its post
        self.limits = limits
        self.defaults = defaults
        self.model_name = model_name
        self.rules = rules
        self.rules_cache = GuildRulesCache(rules)  # a guild's rules, per set of its entries
        self.output_dir = output_dir

    @property
    def model_label(self) -> str:
        """The model as shown to members: a hub id or a file name, never a local path."""
        path = Path(self.model_name)
        if path.resolve() == EMBEDDED_MODEL_DIR.resolve():
            return "sdbot embedded model"
        return path.name if path.exists() else self.model_name

    async def rules_for(self, guild_id: int | None) -> PromptRules:
        return await rules_for(self.terms, self.rules, guild_id, cache=self.rules_cache)

    async def image_policy(
        self, guild_id: int | None, channel_nsfw: bool, verdict: PromptVerdict
    ) -> ImagePolicy:
        """The thresholds and NSFW policy for this guild and channel."""
        guild_threshold, nsfw_policy = None, NsfwPolicy.BLOCK
        if guild_id is not None:
            settings = await self.guild_settings.get(guild_id)
            guild_threshold, nsfw_policy = settings.nsfw_threshold, settings.nsfw_policy
        return ImagePolicy.for_request(
            threshold=self.nsfw_threshold,
            strict_threshold=self.nsfw_strict_threshold,
            guild_threshold=guild_threshold,
            nsfw_policy=nsfw_policy,
            channel_nsfw=channel_nsfw,
            force_safe=verdict.force_safe,
        )

    async def limits_here(self, guild_id: int | None) -> GuildLimits:
        """The option limits, defaults and rates in force in a guild (one read of its settings):
        its own maximum steps and rates over the bot's."""
        if guild_id is None:
            return GuildLimits(self.limits, self.defaults, self.default_limits, None)
        record = await self.guild_settings.get(guild_id)
        options, defaults = self.limits, self.defaults
        if record.max_steps is not None and record.max_steps < options.max_steps:
            options = dataclasses.replace(options, max_steps=record.max_steps)
            defaults = dataclasses.replace(defaults, steps=min(defaults.steps, record.max_steps))
        if record.max_side is not None and record.max_side < options.max_side:
            side = max(record.max_side, options.min_side)
            options = dataclasses.replace(options, max_side=side)
            defaults = dataclasses.replace(
                defaults, width=min(defaults.width, side), height=min(defaults.height, side)
            )
        rates = guild_limits(
            self.default_limits,
            user_per_hour=record.user_images_per_hour,
            guild_per_hour=record.guild_images_per_hour,
            max_jobs_per_user=record.max_jobs_per_user,
        )
        return GuildLimits(options, defaults, rates, record)

    async def imagine(
        self,
        requested: RequestedOptions,
        requester: Requester,
        *,
        on_progress: ProgressCallback | None = None,
        on_queued: QueuedCallback | None = None,
    ) -> ImagineOutcome:
        """Runs the whole path. Raises InvalidOption (before any record) for bad options.

        Cancelling the awaiting task cancels the job (recorded ``cancelled``), unless the
        service is closing: then the job stays open, to be resumed at the next start.
        """
        submitted = await self.submit(requested, requester)
        if isinstance(submitted, ImagineOutcome):
            return submitted
        return await self.follow(
            submitted.job,
            submitted.handle,
            submitted.verdict,
            requester.channel_nsfw,
            on_progress=on_progress,
            on_queued=on_queued,
            started=submitted.started,
        )

    async def submit(
        self, requested: RequestedOptions, requester: Requester, *, derived: Derived | None = None
    ) -> Submitted | ImagineOutcome:
        """Checks, records and queues a request; fast (no model). Blocked and refused requests
        come back as their final outcome, an accepted one as its job to :meth:`follow`.
        Raises InvalidOption (before any record) for bad options."""
        started = time.perf_counter()
        if not self.accepting:
            raise ShuttingDown("sdbot is restarting; try again in a minute")
        # 1. Options: fail at the boundary, never clamp; the guild may allow fewer steps.
        here = await self.limits_here(requester.guild_id)
        options = validate(requested, here.options, here.defaults)
        if derived is not None and derived.upscale > 1:
            options = dataclasses.replace(options, upscale=derived.upscale)

        # 2. Prompt rules, then 3. the guild's moderators (a ban, a pause, the channels: they
        # come first, so a banned member hears of the ban and cannot probe the lists), then
        # 4. admission and the audit record (blocked and refused too).
        rules = await self.rules_for(requester.guild_id)
        verdict = check_prompt(options.prompt, rules, options.negative_prompt)
        new = new_job(requester, options, verdict, self.model_name, derived)
        gate = await self.gate(requester, here.settings)
        if gate is not None:
            return await self._refuse(new, verdict, options, *gate)
        if not verdict.allowed:
            job_id = await self.audit.create_job(new)
            log.info("blocked ◆ job %d ◆ %s", job_id, verdict.summary())
            return ImagineOutcome(job_id, JobStatus.BLOCKED, verdict, options.prompt, options.seeds)
        guild, user = requester.guild_id, requester.user_id
        units = options_units(options)
        try:
            await self.queue.admit(guild, user, units, here.rates)
        except RateLimited as refusal:
            return await self._refuse(
                new, verdict, options, Refusal.RATE, str(refusal), refusal.retry_after
            )
        try:  # recorded before it is acknowledged: a crash from here on leaves it queued
            job_id = await self.audit.create_job(new, lease=self.lease)
            self._keep_leases()
        except BaseException:
            await self.queue.release(guild, user)
            raise
        job = QueuedJob(WorkRequest(job_id, options), guild, user, new.uid)
        try:
            handle = await self.queue.submit(job)
        except BaseException as error:  # the queue is unreachable: say so, end the record
            reason = f"could not queue the job: {type(error).__name__}: {error}"
            await asyncio.shield(self._finish_quietly(job_id, JobStatus.FAILED, reason))
            with contextlib.suppress(Exception):
                await self.queue.release(guild, user)
            raise
        return Submitted(job, handle, verdict, started, requester.channel_nsfw)

    async def _refuse(
        self,
        new: NewJob,
        verdict: PromptVerdict,
        options: GenerationOptions,
        refusal: Refusal,
        reason: str,
        retry_after: float | None = None,
    ) -> ImagineOutcome:
        """Records a request refused before it was queued, and its outcome."""
        job_id = await self.audit.create_job(new, refused=reason)
        log.info("refused ◆ job %d ◆ %s", job_id, reason)
        return ImagineOutcome(
            job_id,
            JobStatus.REFUSED,
            verdict,
            options.prompt,
            options.seeds,
            error=reason,
            retry_after=retry_after,
            refusal=refusal,
        )

    async def gate(
        self, requester: Requester, settings: GuildSettingsRecord | None
    ) -> tuple[Refusal, str] | None:
        """What the guild's moderators decided stands in the way of this member here, in words
        (None: nothing): a ban, a pause, a channel the bot does not answer in; outside a guild,
        a direct message when they are not allowed."""
        if requester.guild_id is None and requester.source == "discord":
            if self.direct_messages:
                return None
            return Refusal.DIRECT, (
                "sdbot does not draw in direct messages: a server's bans, lists and limits "
                "cannot apply here. Use /imagine in a server"
            )
        if requester.guild_id is None or settings is None:
            return None
        if requester.user_id is not None:
            ban = await self.bans.active_ban(requester.guild_id, requester.user_id)
            if ban is not None:
                return Refusal.BANNED, ban_message(ban.reason, ban.expires_at)
        if settings.paused:
            why = f": {settings.pause_reason}" if settings.pause_reason else ""
            return Refusal.PAUSED, f"the moderators paused image generation here{why}"
        if not (
            settings.answers_in(requester.channel_id)
            or (requester.parent_channel_id and settings.answers_in(requester.parent_channel_id))
        ):
            assert settings.channels is not None
            where = ", ".join(f"<#{channel}>" for channel in settings.channels)
            return Refusal.CHANNEL, f"sdbot answers only in {where} on this server"
        return None

    async def use_control(
        self, job_id: int, variant: int | None, requester: Requester
    ) -> Submitted | ImagineOutcome | AlreadyStarted:
        """A control on a finished grid: upscale ``variant`` (1–4), or reroll (None) with new
        seeds. The new job goes through the whole path (rules, limits, record) for the member
        who used the control. Each control starts one job: using it again, or a reaction that
        Discord delivers twice, gets :class:`AlreadyStarted` with the job it started.

        Raises ControlUnavailable (nothing to upscale, a withheld variant) or InvalidOption (the
        guild's limits changed since).
        """
        parent = await self.audit.get_job(job_id)
        if parent is None:
            raise ControlUnavailable(f"there is no job {job_id}")
        requested, derived = _derive(parent, variant)
        action = control_name(variant)
        claim = await self.audit.claim_action(job_id, action, requester.user_id)
        if not claim.claimed:
            return AlreadyStarted(claim.existing)
        try:
            submitted = await self.submit(requested, requester, derived=derived)
        except BaseException:
            await asyncio.shield(self.audit.release_action(job_id, action))
            raise
        child = submitted.job.job_id if isinstance(submitted, Submitted) else submitted.job_id
        assert claim.claimed_at is not None
        try:  # the job is queued: nothing here may stop it from being followed
            if not await self.audit.action_started(job_id, action, child, claim.claimed_at):
                log.warning(
                    "%s of job %d was claimed again meanwhile ◆ job %d", action, job_id, child
                )
        except Exception:
            log.exception("could not link job %d to %s of job %d", child, action, job_id)
        return submitted

    async def follow(
        self,
        job: QueuedJob,
        handle: JobHandle,
        verdict: PromptVerdict,
        channel_nsfw: bool,
        *,
        on_progress: ProgressCallback | None = None,
        on_queued: QueuedCallback | None = None,
        started: float | None = None,
    ) -> ImagineOutcome:
        """Reads a submitted job's events to its outcome, recording each step in the audit log.

        Whatever happens, the record ends in one terminal status with the reason.
        """
        started = time.perf_counter() if started is None else started
        job_id, options = job.job_id, job.request.options

        def ended(status: JobStatus, reason: str) -> ImagineOutcome:
            log.warning("%s ◆ job %d ◆ %s", status.value, job_id, reason)
            return ImagineOutcome(
                job_id, status, verdict, options.prompt, options.seeds, error=reason
            )

        try:
            policy = await self.image_policy(job.guild_id, channel_nsfw, verdict)
            result: WorkResult | None = None
            async for event in handle.events():
                if isinstance(event, Queued):
                    await notify(on_queued, event)
                elif isinstance(event, Started):
                    self._running.add(job_id)
                    # A bot that restarted replays the events: the attempt number, not the
                    # count of Started events, is what the record keeps.
                    attempts = await self.audit.mark_running(job_id, event.attempt)
                    if attempts > 1:
                        log.warning("retrying ◆ job %d ◆ attempt %d", job_id, attempts)
                elif isinstance(event, Progress):
                    await notify(on_progress, event)
                elif isinstance(event, Done):
                    result = event.result
                elif isinstance(event, Failed):
                    await self._finish_quietly(job_id, JobStatus.FAILED, event.reason)
                    return ended(JobStatus.FAILED, event.reason)
                elif isinstance(event, Cancelled):
                    why = self._stop_reasons.pop(job_id, None)
                    reason = f"{event.reason} ({why})" if why else event.reason
                    await self._finish_quietly(job_id, JobStatus.CANCELLED, reason)
                    return ended(JobStatus.CANCELLED, reason)
            assert result is not None, "a job's events end with Done, Failed or Cancelled"
            worker_done = time.perf_counter()
            shown = [self._shown(image, decide(image.safety, policy)) for image in result.images]
            grid: ShownImage | None
            if options.upscale > 1:  # an upscale: its one image is what is posted, if it may be
                grid = None
            else:
                grid = await asyncio.to_thread(self._grid, job_id, shown, result.images)
            # Files under a staging name first; they take their names only once the row with
            # their paths committed, so no fault leaves a picture without its record.
            try:
                staged, shown, grid = await asyncio.to_thread(
                    self._write_files, job_id, job.uid, shown, grid
                )
            except OSError as error:
                raise SaveFailed(f"cannot save: {error}") from error
            try:
                await self.audit.record_outcome(
                    job_id,
                    JobStatus.SUCCEEDED,
                    images=[_new_image(image) for image in shown + ([grid] if grid else [])],
                    generation_ms=result.diffusion_ms + result.postprocess_ms,
                )
            except BaseException:
                if staged is not None:
                    await asyncio.shield(asyncio.to_thread(staged.discard))
                raise
            if staged is not None:
                try:
                    await asyncio.to_thread(staged.publish)
                except OSError:  # recorded: `sdbot recover` moves the folder into place
                    log.exception("job %d ◆ could not move its files into place", job_id)
            if grid is None and not shown[0].withheld:
                grid = shown[0]
        except (GenerationError, SaveFailed) as error:
            reason = str(error)
            await asyncio.shield(self._finish_quietly(job_id, JobStatus.FAILED, reason))
            return ended(JobStatus.FAILED, reason)
        except asyncio.CancelledError:
            if not self.closing:  # the requester gave up: the job is cancelled, wherever it is
                await asyncio.shield(self._cancel_and_record(job_id, "cancelled"))
            raise
        except BaseException as error:
            reason = f"internal error: {type(error).__name__}: {error}"
            await asyncio.shield(self._cancel_and_record(job_id, reason, JobStatus.FAILED))
            raise
        finally:
            self._running.discard(job_id)

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

    async def cancel(self, job_id: int, user_id: int | None) -> str:
        """The owner cancels a job: a queued one never runs, a running one stops at its next
        denoising step. Returns what happened, in words; raises NotYours for someone else's."""
        record = await self.audit.get_job(job_id)
        if record is None:
            raise NotYours(f"there is no job {job_id}")
        if record.user_id != user_id:
            raise NotYours(f"job {job_id} is not yours to cancel")
        if record.status.is_terminal:
            return f"job {job_id} already ended: {record.status.value}"
        outcome = await self.stop(job_id, "by its requester")
        if outcome == CancelOutcome.DEQUEUED:
            return f"job {job_id} was cancelled before it started"
        if outcome == CancelOutcome.STOPPING:
            return f"job {job_id} stops at its next step"
        return f"job {job_id} is not in the queue any more"

    async def stop(self, job_id: int, why: str) -> str:
        """Cancels a job in the queue; ``why`` (who stopped it, in words that may be shown in
        public: never a ban's reason) ends the reason its record and its post give."""
        self._stop_reasons[job_id] = why
        record = await self.audit.get_job(job_id)
        outcome = await self.queue.cancel(job_id, None if record is None else record.uid)
        if outcome not in (CancelOutcome.DEQUEUED, CancelOutcome.STOPPING):
            self._stop_reasons.pop(job_id, None)
        return outcome

    async def _cancel_and_record(
        self, job_id: int, reason: str, status: JobStatus = JobStatus.CANCELLED
    ) -> None:
        with contextlib.suppress(Exception):  # the queue may be closing; the record stands
            await self.queue.cancel(job_id)
        await self._finish_quietly(job_id, status, reason)

    async def recover(
        self,
        on_outcome: OutcomeCallback,
        on_held: Callable[[JobRecord], None] | None = None,
    ) -> int:
        """At start-up: every job a stopped process left open is resumed or ended.

        Only jobs whose lease ran out (or whose holder is a process of this host that is gone)
        are taken, each by one process: a job a live process still runs is left to it and
        reported to ``on_held``. Queued jobs go back in the queue; a running one is retried
        once (its ``attempts`` say how often a worker started it), then failed with the reason.
        With Redis, jobs the queue still holds are followed where they are. Each outcome goes
        to ``on_outcome``. Returns how many jobs were resumed.
        """
        resumed = 0
        for candidate in await self.audit.open_jobs():
            record = await self.audit.take_lease(candidate.id, self.lease, dead=lease_owner_dead)
            if record is None:
                current = await self.audit.get_job(candidate.id)
                if current is not None and not current.status.is_terminal and on_held:
                    on_held(current)
                continue
            self._keep_leases()
            verdict = PromptVerdict(
                True, (), record.verdict == Verdict.FORCE_SAFE.value, record.verdict_reasons
            )
            job = QueuedJob(
                WorkRequest(record.id, options_of(record)),
                record.guild_id,
                record.user_id,
                record.uid,
            )
            handle = await self.queue.attach(record.id, record.uid)
            if handle is None:
                if record.status is JobStatus.RUNNING and record.attempts >= 2:
                    reason = (
                        f"stopped {record.attempts} times while running (the bot or its worker "
                        "went away); not retried again"
                    )
                    await self._finish_quietly(record.id, JobStatus.FAILED, reason)
                    continue
                await self.audit.requeue(record.id)
                handle = await self.queue.submit(job, readmit=True)
            resumed += 1
            task = asyncio.create_task(
                self._deliver(job, handle, verdict, record.channel_nsfw, on_outcome)
            )
            self._recovered[record.id] = task
            task.add_done_callback(functools.partial(self._forget_recovered, record.id))
        if resumed:
            log.info("resumed %d open jobs", resumed)
        return resumed

    async def _deliver(
        self,
        job: QueuedJob,
        handle: JobHandle,
        verdict: PromptVerdict,
        channel_nsfw: bool,
        on_outcome: OutcomeCallback,
    ) -> None:
        outcome = await self.follow(job, handle, verdict, channel_nsfw)
        await notify(on_outcome, outcome)

    async def wait_recovered(self) -> None:
        """Until every job :meth:`recover` resumed has its outcome."""
        while self._recovered:
            await asyncio.gather(*self._recovered.values(), return_exceptions=True)

    def _forget_recovered(self, job_id: int, _: asyncio.Task[None]) -> None:
        self._recovered.pop(job_id, None)

    def recovered_deliveries(self, job_ids: set[int]) -> list[asyncio.Task[None]]:
        """The deliveries :meth:`recover` started for these jobs that are still going."""
        return [task for job_id, task in self._recovered.items() if job_id in job_ids]

    async def stop_taking_work(self) -> set[int]:
        """The first step of a graceful stop: new requests get :class:`ShuttingDown`, queued
        jobs stay queued (recorded, resumed at the next start). Returns the ids of the jobs
        running now, which the caller may let finish."""
        self.accepting = False
        return await self.queue.hold() | self._running

    async def close(self) -> None:
        """Stops taking work; open jobs stay open in the audit log for the next start."""
        self.closing = True
        for task in list(self._recovered.values()):
            task.cancel()
        await asyncio.gather(*self._recovered.values(), return_exceptions=True)
        await self.queue.close()
        if self._renewing is not None:
            self._renewing.cancel()
            await asyncio.gather(self._renewing, return_exceptions=True)
            self._renewing = None
        try:  # the next start takes the jobs left open at once, not after the lease runs out
            await self.audit.release_leases(self.lease.owner)
        except Exception as error:  # a locked database: the leases just run out
            log.warning("could not release the leases of %s: %s", self.lease.owner, error)

    def _keep_leases(self) -> None:
        """Renews this process's leases while it lives (started with the first job)."""
        if self._renewing is None or self._renewing.done():
            self._renewing = asyncio.create_task(self._renew_leases(), name="sdbot-leases")

    async def _renew_leases(self) -> None:
        while True:
            await asyncio.sleep(self.lease.seconds / 3)
            try:
                await self.audit.renew_leases(self.lease)
            except Exception as error:  # locked or unreachable: try again; recover may win
                log.warning("could not renew the leases of %s: %s", self.lease.owner, error)

    async def sweep_files(self) -> SweepReport:
        """Removes what a fault left in the output folder (staging folders, pictures no record
        names) and moves into place the files whose record committed."""
        if self.output_dir is None:
            return SweepReport([], [])
        output_dir = self.output_dir
        recorded = await self.audit.image_paths()
        states: dict[str, StagedState] = {}
        if output_dir.is_dir():
            for entry in output_dir.iterdir():
                if entry.name.startswith(pictures.STAGING_PREFIX):
                    uid = entry.name.removeprefix(pictures.STAGING_PREFIX)
                    states[uid] = await self._staged_state(output_dir, uid)
        gone = StagedState(recorded=False, final=None, busy=False)
        return await asyncio.to_thread(
            pictures.sweep, output_dir, recorded, lambda uid: states.get(uid, gone)
        )

    async def _staged_state(self, output_dir: Path, uid: str) -> StagedState:
        record = await self.audit.get_job_by_uid(uid)
        if record is None:
            return StagedState(recorded=False, final=None, busy=False)
        if not record.status.is_terminal:
            held = (
                record.lease_owner is not None
                and record.lease_expires_at is not None
                and record.lease_expires_at > utcnow()
                and not lease_owner_dead(record.lease_owner)
            )
            return StagedState(recorded=False, final=None, busy=held)
        paths = [Path(image.path) for image in record.images if image.path]
        if record.status is not JobStatus.SUCCEEDED or not paths:
            return StagedState(recorded=False, final=None, busy=False)
        return StagedState(recorded=True, final=output_dir / paths[0].parent.name, busy=False)

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
        self, job_id: int, uid: str, shown: list[ShownImage], grid: ShownImage | None
    ) -> tuple[StagedPictures | None, list[ShownImage], ShownImage | None]:
        """Writes the files under a staging name; the images carry their final paths."""
        if self.output_dir is None:
            return None, shown, grid
        staged = pictures.stage(self.output_dir, job_id, uid)
        written = []
        try:
            for image in shown + ([grid] if grid else []):
                if image.png is None:  # withheld
                    written.append(image)
                    continue
                name = "grid.png" if image.variant == 0 else f"variant-{image.variant}.png"
                staged.write(name, image.png)
                written.append(dataclasses.replace(image, path=staged.path_of(name)))
        except BaseException:
            staged.discard()
            raise
        if grid is None:
            return staged, written, None
        return staged, written[:-1], written[-1]


def lease_owner() -> str:
    """This process as a lease holder: ``host:pid:random`` (a reused pid is not the same)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def lease_owner_dead(owner: str) -> bool:
    """The holder is a process of this host that no longer exists: its lease means nothing."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit() or int(pid_text) == os.getpid():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return False


def new_job(
    requester: Requester,
    options: GenerationOptions,
    verdict: PromptVerdict,
    model: str,
    derived: Derived | None = None,
) -> NewJob:
    """The audit record of a request, before its outcome is known."""
    return NewJob(
        source=requester.source,
        parent_job_id=None if derived is None else derived.parent_job_id,
        parent_variant=None if derived is None else derived.parent_variant,
        guild_id=requester.guild_id,
        channel_id=requester.channel_id,
        user_id=requester.user_id,
        channel_nsfw=requester.channel_nsfw,
        kind=JobKind.IMAGINE if derived is None else derived.kind,
        prompt=options.prompt,
        negative_prompt=options.negative_prompt,
        steps=options.steps,
        guidance_scale=options.guidance_scale,
        width=options.width,
        height=options.height,
        variants=options.variants,
        scheduler=options.scheduler,
        model=model,
        seeds=options.seeds,
        verdict=_audit_verdict(verdict),
        verdict_reasons=verdict.reasons or verdict.safe_reasons,
    )


def options_of(record: JobRecord) -> GenerationOptions:
    """The options a recorded job ran with (they were validated when it was recorded)."""
    return GenerationOptions(
        prompt=record.prompt,
        negative_prompt=record.negative_prompt,
        seeds=record.seeds,
        steps=record.steps,
        guidance_scale=record.guidance_scale,
        width=record.width,
        height=record.height,
        scheduler=record.scheduler,
        upscale=UPSCALE_FACTOR if record.kind == JobKind.UPSCALE else 1,
    )


def _derive(parent: JobRecord, variant: int | None) -> tuple[RequestedOptions, Derived]:
    """The request a control makes from a finished job: the same prompt and settings with new
    seeds (reroll), or one variant's seed redrawn at twice the size (upscale)."""
    if parent.status is not JobStatus.SUCCEEDED:
        raise ControlUnavailable(f"job {parent.id} has no images ({parent.status.value})")
    if parent.kind == JobKind.UPSCALE:
        raise ControlUnavailable(f"job {parent.id} is already an upscale")
    requested = RequestedOptions(
        prompt=parent.prompt,
        negative_prompt=parent.negative_prompt,
        steps=parent.steps,
        guidance_scale=parent.guidance_scale,
        width=parent.width,
        height=parent.height,
        variants=parent.variants,
        scheduler=parent.scheduler,
    )
    if variant is None:
        return requested, Derived(JobKind.REROLL, parent.id)
    if not 1 <= variant <= parent.variants:
        raise ControlUnavailable(
            f"job {parent.id} has variants 1 to {parent.variants}, not {variant}"
        )
    image = next((i for i in parent.images if i.variant == variant), None)
    if image is not None and image.disposition == Disposition.WITHHELD.value:
        raise ControlUnavailable(f"variant {variant} of job {parent.id} was withheld")
    requested = dataclasses.replace(requested, seed=parent.seeds[variant - 1], variants=1)
    return requested, Derived(JobKind.UPSCALE, parent.id, variant, UPSCALE_FACTOR)


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
