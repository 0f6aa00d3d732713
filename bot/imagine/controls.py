"""The controls on a finished job: upscale one variant (redrawn at twice the size), reroll (the
same prompt and settings, new seeds), vary one variant (four variations of its picture) and zoom
out an upscale (its picture shrunk into the centre, the border drawn). The new job goes through
admission like any request, for the member who used the control; each control starts one job.

A job that started from pictures given in (img2img, an edit, a ControlNet) is rerolled and
upscaled from the same pictures, as they were prepared for it (kept in its input rows); once
retention purged them, the control says so. Vary and zoom draw their start again from a seed, so
they need a job drawn from its prompt alone: a job that started from a picture, a control
picture or another job's picture cannot be varied or zoomed, and says why.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from bot.access import Control
from bot.imagine.admission import Admission
from bot.imagine.errors import ControlUnavailable
from bot.imagine.inputs import Prepared, reused
from bot.imagine.outcomes import AlreadyStarted, ImagineOutcome, Submitted
from bot.imagine.records import input_images, model_named, requested_of
from bot.imagine.types import Derived, Requester
from generation.options import UPSCALE_FACTOR, RequestedOptions
from generation.starts import VARY_STRENGTHS, Source
from moderation.policy import Disposition
from storage.models import JobKind, JobStatus
from storage.records import JobRecord
from storage.repositories import Storage

log = logging.getLogger(__name__)

VARY_DEFAULT = "subtle"  # a guild that chose nothing


def control_name(variant: int | None, control: Control | None = None) -> str:
    """The control's name in the audit log: ``upscale-2``, ``vary-2``, ``zoom``, or ``reroll``
    (what :meth:`Controls.use` claims once per job)."""
    control = chosen(variant, control)
    if control in (Control.REROLL, Control.ZOOM):
        return control.value
    return f"{control.value}-{variant}"


def chosen(variant: int | None, control: Control | None) -> Control:
    """The control asked for: None means upscale with a variant, reroll without one."""
    if control is None:
        return Control.REROLL if variant is None else Control.UPSCALE
    if control in (Control.UPSCALE, Control.VARY) and variant is None:
        raise ControlUnavailable(f"{control.value} needs a variant (1 to 4)")
    if control in (Control.REROLL, Control.ZOOM) and variant is not None:
        raise ControlUnavailable(f"{control.value} takes no variant, got {variant}")
    if control is Control.DELETE:
        raise ControlUnavailable("delete starts no job")
    return control


def _from_prompt(parent: JobRecord, what: str) -> None:
    """Vary and zoom draw their start again from a seed: only a prompt's picture can be."""
    if parent.start != "text" or parent.control is not None or parent.source_seed is not None:
        raise ControlUnavailable(
            f"job {parent.id} was drawn from a picture, not from its prompt alone; "
            f"only a prompt's picture can be {what}"
        )


def _shown_variant(parent: JobRecord, variant: int) -> int:
    """``variant``'s seed, when it is one of the job's and was not withheld."""
    if not 1 <= variant <= parent.variants:
        raise ControlUnavailable(
            f"job {parent.id} has variants 1 to {parent.variants}, not {variant}"
        )
    image = next((i for i in parent.images if i.variant == variant), None)
    if image is not None and image.disposition == Disposition.WITHHELD.value:
        raise ControlUnavailable(f"variant {variant} of job {parent.id} was withheld")
    return parent.seeds[variant - 1]


def _again(
    parent: JobRecord, kind: JobKind, variant: int | None = None, upscale: int = 1
) -> Derived:
    """A job made again from ``parent`` (a reroll, an upscale): it starts as its parent did."""
    source = None
    if parent.source_seed is not None:
        source = Source(parent.source_seed, parent.source_upscale or 1)
    strength = 1.0 if parent.strength is None else parent.strength
    return Derived(kind, parent.id, variant, upscale, source, parent.start, strength)


def derive(
    parent: JobRecord,
    variant: int | None,
    control: Control | None = None,
    *,
    vary: str | None = None,
) -> tuple[RequestedOptions, Derived]:
    """The request a control makes from a finished job: the same prompt and settings with new
    seeds (reroll), one variant's seed redrawn at twice the size (upscale), four variations of
    one variant (vary, at the guild's ``vary`` strength) or an upscale zoomed out (zoom)."""
    control = chosen(variant, control)
    if parent.status is not JobStatus.SUCCEEDED:
        raise ControlUnavailable(f"job {parent.id} has no images ({parent.status.value})")
    requested = requested_of(parent)
    if control is Control.ZOOM:
        if parent.kind != JobKind.UPSCALE:
            raise ControlUnavailable(
                f"job {parent.id} is not an upscale; zoom out works on an upscaled picture"
            )
        _from_prompt(parent, "zoomed out")
        requested = dataclasses.replace(requested, variants=4)
        source = Source(_shown_variant(parent, 1), UPSCALE_FACTOR)  # its one picture
        derived = Derived(
            JobKind.ZOOM, parent.id, parent.parent_variant, source=source, start="outpaint"
        )
        return requested, derived
    if parent.kind == JobKind.UPSCALE:
        done = {Control.UPSCALE: "upscaled", Control.VARY: "varied", Control.REROLL: "rerolled"}
        raise ControlUnavailable(
            f"job {parent.id} is already an upscale; it can be zoomed out, not {done[control]}"
        )
    if control is Control.REROLL:
        return requested, _again(parent, JobKind.REROLL)
    assert variant is not None  # chosen() refuses upscale and vary without one
    seed = _shown_variant(parent, variant)
    if control is Control.VARY:
        _from_prompt(parent, "varied")
        strength = VARY_STRENGTHS[vary or VARY_DEFAULT]
        requested = dataclasses.replace(requested, variants=4)
        derived = Derived(
            JobKind.VARY,
            parent.id,
            variant,
            source=Source(seed, 1),
            start="image",
            strength=strength,
        )
        return requested, derived
    requested = dataclasses.replace(requested, seed=seed, variants=1)
    return requested, _again(parent, JobKind.UPSCALE, variant, UPSCALE_FACTOR)


class Controls:
    """Claims a control on a job once, and submits the job it starts."""

    def __init__(self, storage: Storage, admission: Admission) -> None:
        self.storage = storage
        self.admission = admission

    async def use(
        self,
        job_id: int,
        variant: int | None,
        requester: Requester,
        *,
        control: Control | None = None,
        vary: str | None = None,
    ) -> Submitted | ImagineOutcome | AlreadyStarted:
        """Use a control on job ``job_id``: ``control`` None upscales ``variant`` (1–4), or
        rerolls with new seeds when ``variant`` is None; Control.VARY varies ``variant`` (at
        ``vary``, subtle or strong, when given, else at the guild's setting);
        Control.ZOOM zooms out an upscale (no variant). Using a control again, or a reaction
        that Discord delivers twice, gets :class:`AlreadyStarted` with the job it started.

        Raises ControlUnavailable (nothing to upscale, a withheld variant, a vary of an
        upscale, a zoom of a grid, pictures no longer kept) or InvalidOption (the guild's limits
        changed since).
        """
        parent = await self.storage.audit.get_job(job_id)
        if parent is None:
            raise ControlUnavailable(f"there is no job {job_id}")
        if parent.purged_at is not None:
            raise ControlUnavailable(
                f"job {job_id}'s prompt and pictures were purged; its controls no longer work"
            )
        if control is Control.VARY and vary is None:
            settings = (await self.admission.limits_here(requester.guild_id)).settings
            vary = None if settings is None else settings.vary
        requested, derived = derive(parent, variant, control, vary=vary)
        model = model_named(self.admission.catalog, parent.model)  # as recorded before 0007 too
        requested = dataclasses.replace(requested, model=model)
        reuse = await self._pictures_of(parent) if derived.source is None else None
        action = control_name(variant, control)
        claims = self.storage.claims
        claim = await claims.claim_action(job_id, action, requester.user_id)
        if not claim.claimed:
            return AlreadyStarted(claim.existing)
        try:
            submitted = await self.admission.submit(
                requested, requester, derived=derived, reuse=reuse
            )
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

    async def _pictures_of(self, parent: JobRecord) -> Prepared | None:
        """The pictures a job was prepared with, for a reroll or an upscale of it."""
        if not parent.inputs:
            return None
        images = await input_images(self.storage.audit, parent.id)
        if images is None or any(getattr(images, given.role) is None for given in parent.inputs):
            raise ControlUnavailable(
                f"the pictures job {parent.id} started from are no longer kept; "
                "give them again to draw it anew"
            )
        return reused(parent.inputs, images)
