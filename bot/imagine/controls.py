"""The controls on a finished grid: upscale one variant (redrawn at twice the size) or reroll
(the same prompt and settings, new seeds). The new job goes through admission like any request,
for the member who used the control; each control starts one job."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from bot.imagine.admission import Admission
from bot.imagine.errors import ControlUnavailable
from bot.imagine.outcomes import AlreadyStarted, ImagineOutcome, Submitted
from bot.imagine.records import model_named, requested_of
from bot.imagine.types import Derived, Requester
from generation.options import UPSCALE_FACTOR, RequestedOptions
from moderation.policy import Disposition
from storage.models import JobKind, JobStatus
from storage.records import JobRecord
from storage.repositories import Storage

log = logging.getLogger(__name__)


def control_name(variant: int | None) -> str:
    """The control's name in the audit log: ``upscale-2``, or ``reroll`` for None."""
    return "reroll" if variant is None else f"upscale-{variant}"


def derive(parent: JobRecord, variant: int | None) -> tuple[RequestedOptions, Derived]:
    """The request a control makes from a finished job: the same prompt and settings with new
    seeds (reroll), or one variant's seed redrawn at twice the size (upscale)."""
    if parent.status is not JobStatus.SUCCEEDED:
        raise ControlUnavailable(f"job {parent.id} has no images ({parent.status.value})")
    if parent.kind == JobKind.UPSCALE:
        raise ControlUnavailable(f"job {parent.id} is already an upscale")
    requested = requested_of(parent)
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


class Controls:
    """Claims a control on a job once, and submits the job it starts."""

    def __init__(self, storage: Storage, admission: Admission) -> None:
        self.storage = storage
        self.admission = admission

    async def use(
        self, job_id: int, variant: int | None, requester: Requester
    ) -> Submitted | ImagineOutcome | AlreadyStarted:
        """Upscale ``variant`` (1–4), or reroll (None) with new seeds. Using a control again,
        or a reaction that Discord delivers twice, gets :class:`AlreadyStarted` with the job it
        started.

        Raises ControlUnavailable (nothing to upscale, a withheld variant) or InvalidOption (the
        guild's limits changed since).
        """
        parent = await self.storage.audit.get_job(job_id)
        if parent is None:
            raise ControlUnavailable(f"there is no job {job_id}")
        requested, derived = derive(parent, variant)
        model = model_named(self.admission.catalog, parent.model)  # as recorded before 0007 too
        requested = dataclasses.replace(requested, model=model)
        action = control_name(variant)
        claims = self.storage.claims
        claim = await claims.claim_action(job_id, action, requester.user_id)
        if not claim.claimed:
            return AlreadyStarted(claim.existing)
        try:
            submitted = await self.admission.submit(requested, requester, derived=derived)
        except BaseException:
            await asyncio.shield(claims.release_action(job_id, action))
            raise
        child = submitted.job.job_id if isinstance(submitted, Submitted) else submitted.job_id
        assert claim.claimed_at is not None
        try:  # the job is queued: nothing here may stop it from being followed
            if not await claims.action_started(job_id, action, child, claim.claimed_at):
                log.warning(
                    "%s of job %d was claimed again meanwhile ◆ job %d", action, job_id, child
                )
        except Exception:
            log.exception("could not link job %d to %s of job %d", child, action, job_id)
        return submitted
