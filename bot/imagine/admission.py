"""Admission: whether a request may be drawn, and if so its record and its place in the queue.

1. the pictures given in, read safely (a bad file is refused before anything is recorded), then
the options, validated by the catalog (the model, its sizes, the LoRAs) against the limits in
force in the guild (never clamped); 2. the prompt rules, on the prompt as written and on its
plain words (weights and brackets out), then the guild's gore policy in this channel; 3. the
guild's moderators (a ban, a pause, the channels, the models and LoRAs they allow; a model for
NSFW channels only), then the pictures' NSFW scores under the image policy here; 4. the rate
limits; then the audit record (blocked and refused requests are recorded too, with their
pictures' hashes and scores) and the queue. The guild's settings are read once per request:
the limits, the gate, the gore policy and the image policy fixed for the job all come from that
one read. Once recorded, a blocked prompt counts in ``PROMPT_BLOCKS`` once per reason (by rule
and layer), a refusal in ``REFUSALS`` by its kind.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Sequence

from bot.guild_limits import BotLimits, EffectiveLimits, effective_limits
from bot.imagine.errors import ShuttingDown
from bot.imagine.gate import Gate
from bot.imagine.inputs import InputChecker, Prepared, Read, prepare
from bot.imagine.leases import LeaseKeeper
from bot.imagine.outcomes import ImagineOutcome, Refusal, Submitted
from bot.imagine.records import end_quietly, new_job
from bot.imagine.rules import gore_policy, negative_moved, rules_for
from bot.imagine.types import Derived, PicturesIn, Requester
from common import logs, metrics
from generation.catalog import Catalog
from generation.errors import InvalidOption, RateLimited
from generation.inputs import Picture, nearest_size
from generation.limits import options_units
from generation.options import GenerationOptions, OptionLimits, RequestedOptions, offered_sizes
from generation.prompt_syntax import plain_text
from generation.protocol import WorkRequest
from generation.queue import CancelOutcome, JobQueue, QueuedJob
from generation.starts import (
    CONTROL_SCALE,
    CONTROL_SCALE_MAX,
    CONTROL_SCALE_MIN,
    IMAGE_STRENGTH,
    STRENGTH_MAX,
    STRENGTH_MIN,
)
from moderation.guild_rules import GuildRulesCache
from moderation.lists import PromptRules
from moderation.policy import ImagePolicy, NsfwPolicy, apply_gore_policy
from moderation.prompts import PromptVerdict, check_prompt
from moderation.reasons import reason_labels
from storage.guild_settings import GuildSettingsRecord
from storage.models import JobKind, JobStatus
from storage.records import NewInput, NewJob
from storage.repositories import Storage

log = logging.getLogger(__name__)


def check_request(options: GenerationOptions, rules: PromptRules) -> PromptVerdict:
    """The prompt rules on the prompts as written and on their plain words, which weights and
    brackets may have split (``(nu:1.2)de`` is drawn as "nude"): blocked if either reading is,
    with the reasons of both (the plain reading names the exact term where the written one
    only had the classifier's guess), force-safe if either is."""
    # Read as drawn: admission has moved a typed negative prompt already (``negative_moved``);
    # the plain reading may seem to hold one ("ne(g): (top:1.1)(less:1.1)") and is read whole.
    written = check_prompt(options.prompt, rules, options.negative_prompt, split=False)
    prompt, negative = plain_text(options.prompt), plain_text(options.negative_prompt)
    if (prompt, negative) == (options.prompt, options.negative_prompt):
        return written
    plain = check_prompt(prompt, rules, negative, split=False)
    if not written.allowed or not plain.allowed:
        refused = [verdict for verdict in (written, plain) if not verdict.allowed]
        return PromptVerdict(
            False,
            tuple(dict.fromkeys(reason for verdict in refused for reason in verdict.reasons)),
            gore=tuple(dict.fromkeys(written.gore + plain.gore)),
            classifier_scores=_highest(written.classifier_scores + plain.classifier_scores),
        )
    return PromptVerdict(
        True,
        (),
        written.force_safe or plain.force_safe,
        tuple(dict.fromkeys(written.safe_reasons + plain.safe_reasons)),
        gore=tuple(dict.fromkeys(written.gore + plain.gore)),
        classifier_scores=_highest(written.classifier_scores + plain.classifier_scores),
    )


def _highest(scores: tuple[tuple[str, float], ...]) -> tuple[tuple[str, float], ...]:
    """Each label's higher score of the two readings, in the order the labels first come."""
    best: dict[str, float] = {}
    for label, score in scores:
        best[label] = max(score, best.get(label, score))
    return tuple(best.items())


def judge_request(
    options: GenerationOptions,
    rules: PromptRules,
    settings: GuildSettingsRecord | None,
    channel_nsfw: bool,
) -> PromptVerdict:
    """:func:`check_request`, then the guild's gore policy in this channel (outside a guild:
    the default policy): a gore prompt is blocked, or made force-safe where it may be drawn."""
    return apply_gore_policy(check_request(options, rules), gore_policy(settings), channel_nsfw)


def _in_range(option: str, value: float | None, default: float, low: float, high: float) -> float:
    if value is None:
        return default
    if not (isinstance(value, int | float) and math.isfinite(value) and low <= value <= high):
        raise InvalidOption(option, value, f"a number from {low:g} to {high:g}")
    return float(value)


def starting(
    options: GenerationOptions,
    requested: RequestedOptions,
    read: Read | None,
    derived: Derived | None,
) -> GenerationOptions:
    """How the job starts. A control's job starts as its ``derived`` says (a vary from its
    tile's seed, a zoom from its upscale's; a reroll or an upscale as its parent did). A
    member's image starts an img2img (``strength`` of it redrawn, IMAGE_STRENGTH unless asked),
    with a mask an inpaint (1.0 unless asked); a control picture adds its ControlNet."""
    if derived is not None:
        if derived.upscale > 1:
            options = dataclasses.replace(options, upscale=derived.upscale)
        if derived.start != "text" or derived.source is not None:
            options = dataclasses.replace(
                options, start=derived.start, strength=derived.strength, source=derived.source
            )
    elif read is not None and read.image is not None:
        inpaint = read.mask is not None
        strength = _in_range(
            "strength",
            requested.strength,
            1.0 if inpaint else IMAGE_STRENGTH,
            STRENGTH_MIN,
            STRENGTH_MAX,
        )
        options = dataclasses.replace(
            options, start="inpaint" if inpaint else "image", strength=strength
        )
    elif requested.strength is not None:
        raise InvalidOption(
            "strength", requested.strength, "given with an image: (how much of it is redrawn)"
        )
    if requested.control is None:
        if requested.control_scale is not None and derived is None:
            raise InvalidOption(
                "control_strength", requested.control_scale, "given with a control: picture"
            )
        return options
    scale = _in_range(
        "control_strength",
        requested.control_scale,
        CONTROL_SCALE,
        CONTROL_SCALE_MIN,
        CONTROL_SCALE_MAX,
    )
    return dataclasses.replace(options, control=requested.control, control_scale=scale)


class Admission:
    """Checks, records and queues requests; fast (no model)."""

    def __init__(
        self,
        storage: Storage,
        queue: JobQueue,
        leases: LeaseKeeper,
        gate: Gate,
        *,
        bot_limits: BotLimits,
        nsfw_strict_threshold: float,
        catalog: Catalog,
        rules: PromptRules,
        inputs: InputChecker,
    ) -> None:
        self.storage = storage
        self.inputs = inputs  # reads, scores and traces the pictures members give
        self.queue = queue
        self.leases = leases
        self.gate = gate
        self.bot_limits = bot_limits  # what the bot allows everywhere; a guild may tighten it
        self.nsfw_strict_threshold = nsfw_strict_threshold
        self.catalog = catalog  # the models, LoRAs and embeddings offered
        self.rules = rules
        self.rules_cache = GuildRulesCache(rules)  # a guild's rules, per set of its entries
        self.accepting = True

    def stop_taking_work(self) -> None:
        """From now on a request gets :class:`ShuttingDown`."""
        self.accepting = False

    async def rules_for(self, guild_id: int | None) -> PromptRules:
        return await rules_for(self.storage.terms, self.rules, guild_id, cache=self.rules_cache)

    async def limits_here(self, guild_id: int | None) -> EffectiveLimits:
        """The option limits, defaults, rates and threshold in force in a guild (one read of
        its settings, which come with them)."""
        record = None if guild_id is None else await self.storage.guild_settings.get(guild_id)
        return effective_limits(record, self.bot_limits)

    def policy_for(
        self, settings: GuildSettingsRecord | None, channel_nsfw: bool, verdict: PromptVerdict
    ) -> ImagePolicy:
        """The thresholds and NSFW policy for a guild's settings and a channel."""
        return ImagePolicy.for_request(
            threshold=self.bot_limits.nsfw_threshold,
            strict_threshold=self.nsfw_strict_threshold,
            guild_threshold=None if settings is None else settings.nsfw_threshold,
            nsfw_policy=NsfwPolicy.BLOCK if settings is None else NsfwPolicy(settings.nsfw_policy),
            channel_nsfw=channel_nsfw,
            force_safe=verdict.force_safe,
        )

    async def image_policy(
        self, guild_id: int | None, channel_nsfw: bool, verdict: PromptVerdict
    ) -> ImagePolicy:
        """The image policy in force now (for a job recorded before this process started and
        queued again: its request carries the policy of the moment it is queued again)."""
        settings = None if guild_id is None else await self.storage.guild_settings.get(guild_id)
        return self.policy_for(settings, channel_nsfw, verdict)

    async def submit(
        self,
        requested: RequestedOptions,
        requester: Requester,
        *,
        derived: Derived | None = None,
        pictures: PicturesIn | None = None,
        reuse: Prepared | None = None,
    ) -> Submitted | ImagineOutcome:
        """Blocked and refused requests come back as their final outcome, an accepted one as
        its job to follow. Raises InvalidOption (before any record) for bad options or a bad
        picture.

        ``pictures`` are the member's (read and checked first: a picture given without a size
        chooses the model's size nearest its aspect); a mask makes the request an edit
        (JobKind.EDIT, inpaint). ``reuse`` is the pictures a recorded job was prepared with,
        for a job made again from it (a control's reroll or upscale)."""
        started = time.perf_counter()
        if not self.accepting:
            raise ShuttingDown("sdbot is restarting; try again in a minute")
        # 1. Options: fail at the boundary, never clamp; the guild may allow fewer steps.
        here = await self.limits_here(requester.guild_id)
        if requested.model is None:  # the guild's first model when it does not allow the bot's
            model = here.default_model(requester.channel_nsfw)
            requested = dataclasses.replace(requested, model=model)
        read = None
        if pictures is not None and any((pictures.image, pictures.mask, pictures.control)):
            read = await self.inputs.read(pictures, requested.control)
            requested = self._sized(requested, read.shape, here.options)
        elif requested.control is not None and reuse is None:
            raise InvalidOption("control_type", requested.control, "given with a control: picture")
        options = starting(self.catalog.validate(requested, here.options), requested, read, derived)
        prepared = reuse
        if read is not None:  # fitted to the job's size, a control's edges drawn: in a thread
            prepared = await asyncio.to_thread(prepare, read, options.width, options.height)

        # 2. Prompt rules, then 3. the guild's moderators (they come first, so a banned member
        # hears of the ban and cannot probe the lists), then the pictures given in, then
        # 4. admission and the audit record.
        rules = await self.rules_for(requester.guild_id)
        options = negative_moved(options, rules, here.options)
        verdict = judge_request(options, rules, here.settings, requester.channel_nsfw)
        embeddings = self.catalog.embeddings_in(options.prompt, options.negative_prompt)
        new = new_job(requester, options, verdict, derived=derived, embeddings=embeddings)
        if derived is None and read is not None and read.mask is not None:
            new = dataclasses.replace(new, kind=JobKind.EDIT)
        unused = () if prepared is None else prepared.without_pixels()
        gate = await self.gate.check(requester, here.settings)
        if gate is not None:
            return await self._refuse(new, verdict, options, *gate, inputs=unused)
        names = [lora.name for lora in options.loras]
        refused = here.choice_refusal(options.model, names, requester.channel_nsfw)
        if refused is not None:
            return await self._refuse(new, verdict, options, Refusal.MODEL, refused, inputs=unused)
        if not verdict.allowed:
            job_id = await self.storage.audit.create_job(new, inputs=unused)
            log.info("blocked ◆ job %d ◆ %s", job_id, verdict.summary(), extra={"job": job_id})
            for reason in verdict.reasons:
                metrics.PROMPT_BLOCKS.labels(*reason_labels(reason)).inc()
            return ImagineOutcome(job_id, JobStatus.BLOCKED, verdict, options.prompt, options.seeds)
        policy = self.policy_for(here.settings, requester.channel_nsfw, verdict)
        flagged = None if prepared is None else prepared.refusal(policy)
        if flagged is not None:
            return await self._refuse(new, verdict, options, Refusal.INPUT, flagged, inputs=unused)
        guild, user = requester.guild_id, requester.user_id
        try:
            await self.queue.admit(guild, user, options_units(options), here.rates)
        except RateLimited as refusal:
            return await self._refuse(
                new, verdict, options, Refusal.RATE, str(refusal), refusal.retry_after, unused
            )
        kept = () if prepared is None else prepared.rows
        try:  # recorded before it is acknowledged: a crash from here on leaves it queued
            job_id = await self.storage.audit.create_job(new, lease=self.leases.lease, inputs=kept)
            logs.bind(job=job_id)  # the lines of its queueing (service.submit bounds it)
            self.leases.keep()
        except BaseException:
            await self.queue.release(guild, user)
            raise
        request = WorkRequest(
            job_id,
            options,
            image_policy=policy,
            inputs=None if prepared is None else prepared.images,
        )
        job = QueuedJob(request, guild, user, new.uid)
        try:
            handle = await self.queue.submit(job)
        except asyncio.CancelledError:  # the requester gave up as it was being queued
            await asyncio.shield(self._given_up(job))
            raise
        except BaseException as error:  # the queue is unreachable: say so, end the record
            reason = f"could not queue the job: {type(error).__name__}: {error}"
            await asyncio.shield(end_quietly(self.storage.audit, job_id, JobStatus.FAILED, reason))
            with contextlib.suppress(Exception):
                await self.queue.release(guild, user)
            raise
        return Submitted(job, handle, verdict, started)

    async def _given_up(self, job: QueuedJob) -> None:
        """A job cancelled while it was being queued: out of the queue if it got in (its cost
        given back), its limits released if it did not, recorded cancelled."""
        with contextlib.suppress(Exception):  # the queue may be unreachable; the record stands
            # Dequeued: the queue gave its cost back; stopping: a worker has it, and its end
            # releases it. Unknown: it never got in.
            if await self.queue.cancel(job.job_id, job.uid) == CancelOutcome.UNKNOWN:
                await self.queue.release(job.guild_id, job.user_id)
        await end_quietly(self.storage.audit, job.job_id, JobStatus.CANCELLED, "cancelled")

    def _sized(
        self, requested: RequestedOptions, picture: Picture, limits: OptionLimits
    ) -> RequestedOptions:
        """A request with a picture and no size asked: the model's size (within the limits
        here) whose aspect is nearest the picture's."""
        if (requested.aspect, requested.width, requested.height) != (None, None, None):
            return requested
        offered = offered_sizes(self.catalog.model(requested.model).sizes, limits)
        if not offered:  # validation names the sizes and the limits
            return requested
        size = nearest_size(picture.width, picture.height, offered)
        return dataclasses.replace(requested, width=size.width, height=size.height)

    async def _refuse(
        self,
        new: NewJob,
        verdict: PromptVerdict,
        options: GenerationOptions,
        refusal: Refusal,
        reason: str,
        retry_after: float | None = None,
        inputs: Sequence[NewInput] = (),
    ) -> ImagineOutcome:
        """Records a request refused before it was queued (with its pictures' rows), and its
        outcome."""
        job_id = await self.storage.audit.create_job(new, refused=reason, inputs=inputs)
        log.info("refused ◆ job %d ◆ %s", job_id, reason, extra={"job": job_id})
        metrics.REFUSALS.labels(refusal.value).inc()
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
