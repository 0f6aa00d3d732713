"""The imagine path's audit records: a request as a new job, a recorded job's options back (how
it starts and from what included), the pictures it was given back, a picture as its image row,
and the one way an interrupted job's record is ended.

The record types share their field names (``RequestedOptions``, ``GenerationOptions``,
``NewJob``, ``JobRecord``; ``ShownImage``, ``NewImage``), so a value moves between them by name
(:func:`copy_fields`) instead of by a hand-written list that a new option must be added to.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from generation.catalog import Catalog
from generation.options import UPSCALE_FACTOR, GenerationOptions, LoraChoice, RequestedOptions
from generation.protocol import InputImages
from generation.starts import CONTROL_SCALE, Source
from moderation.prompts import PromptVerdict
from moderation.reasons import reason_labels
from storage.audit import AuditLog
from storage.errors import JobAlreadyFinished
from storage.models import JobKind, JobStatus, Verdict
from storage.records import JobRecord, NewImage, NewJob

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    from bot.imagine.outcomes import ShownImage
    from bot.imagine.types import Derived, Requester

Record = TypeVar("Record", bound="DataclassInstance")


def copy_fields(target: type[Record], *sources: object, **given: Any) -> Record:
    """A ``target`` whose fields are taken by name from ``sources`` (the first that has one
    wins; properties count), then from ``given``. A required field none of them has is a
    TypeError from the constructor, never a silent default."""
    values: dict[str, Any] = {}
    for spec in dataclasses.fields(target):
        if not spec.init or spec.name in given:
            continue
        for source in sources:
            if hasattr(source, spec.name):
                values[spec.name] = getattr(source, spec.name)
                break
    return target(**values, **given)


def new_job(
    requester: Requester,
    options: GenerationOptions,
    verdict: PromptVerdict,
    model: str | None = None,
    derived: Derived | None = None,
    *,
    embeddings: Sequence[str] = (),
) -> NewJob:
    """The audit record of a request, before its outcome is known: ``model`` is the catalog's
    name (None: the one the options name), ``embeddings`` the tokens its prompts use. How it
    starts is recorded as the options say; ``strength`` only for a start from a picture,
    ``control_scale`` only with a control, the source's seed and upscale only for a vary or a
    zoom (None otherwise)."""
    text = options.start == "text"
    return copy_fields(
        NewJob,
        options,  # prompt, negative prompt, seeds (variants), steps, guidance, size, scheduler
        requester,  # guild, channel, user, whether the channel is NSFW
        source=requester.source,  # where it was asked (options' ``source`` is a picture's)
        strength=None if text else options.strength,
        source_seed=None if options.source is None else options.source.seed,
        source_upscale=None if options.source is None else options.source.upscale,
        control_scale=None if options.control is None else options.control_scale,
        kind=JobKind.IMAGINE if derived is None else derived.kind,
        parent_job_id=None if derived is None else derived.parent_job_id,
        parent_variant=None if derived is None else derived.parent_variant,
        model=options.model if model is None else model,
        loras=tuple(str(lora) for lora in options.loras),  # "name:weight"
        embeddings=tuple(embeddings),
        verdict=audit_verdict(verdict),
        verdict_reasons=verdict.reasons or verdict.safe_reasons,
        classifier_scores=dict(verdict.classifier_scores) or None,
    )


def loras_of(record: JobRecord) -> tuple[LoraChoice, ...]:
    """The LoRAs a job was recorded with, as its options name them."""
    return tuple(LoraChoice.parse(lora) for lora in record.loras)


def model_named(catalog: Catalog, recorded: str) -> str:
    """The catalog's name for a recorded model. Jobs recorded before the catalog (migration
    0007) name their model by its source, SDBOT_MODEL as it was set: the entry loading from
    that source is theirs. A model no entry is (removed since) stays as recorded, for
    validation to refuse by name."""
    if any(entry.name == recorded for entry in catalog.models):
        return recorded
    where = Path(recorded).expanduser().resolve()
    for entry in catalog.models:
        if entry.source.spec == recorded or entry.source.path.resolve() == where:
            return entry.name
    return recorded


def options_of(record: JobRecord, catalog: Catalog | None = None) -> GenerationOptions:
    """The options a recorded job ran with (they were validated when it was recorded), how it
    starts included (a vary's or zoom's ``Source`` from its source seed); with ``catalog``, its
    model by the catalog's name (see :func:`model_named`). The pictures it starts from are
    not options: :func:`input_images`."""
    upscale = UPSCALE_FACTOR if record.kind == JobKind.UPSCALE else 1
    model = record.model if catalog is None else model_named(catalog, record.model)
    source = None
    if record.source_seed is not None:
        source = Source(record.source_seed, record.source_upscale or 1)
    return copy_fields(
        GenerationOptions,
        record,  # prompt, seeds, steps, guidance, size, scheduler, start, control
        upscale=upscale,
        model=model,
        loras=loras_of(record),
        source=source,  # the record's ``source`` is where it was asked
        strength=1.0 if record.strength is None else record.strength,
        control_scale=CONTROL_SCALE if record.control_scale is None else record.control_scale,
    )


def requested_of(record: JobRecord) -> RequestedOptions:
    """A recorded job asked for again: its prompt, model, LoRAs and settings, new seeds, and
    its strength and control settings (None for a text job: the defaults).

    The pictures are not in it: a reroll of a job given pictures passes them again, as they
    were prepared for it (:func:`input_images`, already checked and fitted to its size); a
    vary's or zoom's source seed and start are its ``Derived``'s, not a request's."""
    return copy_fields(RequestedOptions, record, seed=None, loras=loras_of(record))


async def input_images(audit: AuditLog, job_id: int) -> InputImages | None:
    """The pictures job ``job_id`` was given, as prepared for the worker (None: none given);
    a picture retention dropped reads None (see :func:`missing_inputs`)."""
    stored = await audit.input_pngs(job_id)
    return None if stored is None else copy_fields(InputImages, stored)


def missing_inputs(options: GenerationOptions, inputs: InputImages | None) -> str | None:
    """Why a job cannot start from what it has (None: it can): a start from a picture needs
    its picture (a vary's or zoom's is drawn from ``source``), an inpaint its mask too, a
    ControlNet its control picture."""
    given = inputs or InputImages()
    needed: list[str] = []
    if options.start in ("image", "inpaint", "outpaint") and options.source is None:
        needed.append("image")
    if options.start == "inpaint":
        needed.append("mask")
    if options.control is not None:
        needed.append("control")
    gone = [role for role in needed if getattr(given, role) is None]
    if not gone:
        return None
    return (
        f"the {' and '.join(gone)} picture{'s' if len(gone) > 1 else ''} it starts from "
        f"{'are' if len(gone) > 1 else 'is'} no longer stored (start {options.start!r}); "
        "ask again with the picture"
    )


def verdict_of(record: JobRecord) -> PromptVerdict:
    """The prompt verdict of a queued job, as its record keeps it (it passed the rules). The
    reasons that read as gore (``reason_labels``' rule "gore": a gore term or the classifier's
    gore reading) are its gore too, for the gore policy of now to judge again."""
    force_safe = record.verdict == Verdict.FORCE_SAFE.value
    reasons = record.verdict_reasons
    gore = tuple(reason for reason in reasons if reason_labels(reason)[0] == "gore")
    return PromptVerdict(True, (), force_safe, reasons, gore=gore)


def new_image(image: ShownImage) -> NewImage:
    """A picture's row: its findings, its disposition, and where its file is (if written)."""
    path = None if image.path is None else str(image.path)
    return copy_fields(NewImage, image, path=path, disposition=image.disposition.value)


def audit_verdict(verdict: PromptVerdict) -> Verdict:
    if not verdict.allowed:
        return Verdict.BLOCKED
    return Verdict.FORCE_SAFE if verdict.force_safe else Verdict.ALLOWED


async def end_quietly(audit: AuditLog, job_id: int, status: JobStatus, reason: str) -> None:
    """Records an interrupted job; if its outcome was already written, that one stands."""
    with contextlib.suppress(JobAlreadyFinished):
        await audit.record_outcome(job_id, status, error=reason)
