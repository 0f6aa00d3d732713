"""How the command line shows what the imagine path did: JSON for scripts, lines for people."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.imagine.outcomes import ImagineOutcome, ShownImage
    from generation.protocol import Progress
    from generation.queue import Queued
    from moderation.prompts import PromptVerdict
    from storage.records import JobRecord


def image_json(image: ShownImage) -> dict[str, Any]:
    return {
        "variant": image.variant,
        "seed": image.seed,
        "path": None if image.path is None else str(image.path),
        "disposition": image.disposition.value,
        "reason": image.reason,
        "width": image.width,
        "height": image.height,
        "sha256": image.sha256,
        "safety": {
            "score": round(image.safety_score, 4),
            "verdict": image.safety_verdict,
            "threshold": image.safety_threshold,
            "model_flagged": image.model_flagged,
        },
        "watermark": {"id": image.watermark_id, "verified": image.watermark_verified},
    }


def verdict_json(verdict: PromptVerdict) -> dict[str, Any]:
    return {
        "allowed": verdict.allowed,
        "reasons": list(verdict.reasons),
        "force_safe": verdict.force_safe,
        "force_safe_reasons": list(verdict.safe_reasons),
        "gore": list(verdict.gore),  # why it reads as gore (the gore policy decides)
        "classifier_scores": dict(verdict.classifier_scores),
    }


def outcome_json(outcome: ImagineOutcome) -> dict[str, Any]:
    return {
        "job_id": outcome.job_id,
        "status": outcome.status.value,
        "prompt": outcome.prompt,
        "verdict": verdict_json(outcome.verdict),
        "seeds": list(outcome.seeds),
        "images": [image_json(image) for image in outcome.images],
        "grid": None if outcome.grid is None else image_json(outcome.grid),
        "error": outcome.error,
        "model": outcome.model,
        "loras": [{"name": lora.name, "weight": lora.weight} for lora in outcome.loras],
        "embeddings": list(outcome.embeddings),
        "notes": list(outcome.notes),
        "timings_ms": {name: round(ms, 1) for name, ms in outcome.timings_ms.items()},
    }


def print_outcome(outcome: ImagineOutcome) -> None:
    from storage.models import JobStatus

    print(f"job {outcome.job_id} {outcome.status.value}: {outcome.prompt}")
    if outcome.status is JobStatus.BLOCKED:
        print(f"  {outcome.verdict.summary()}")
        return
    if outcome.error:
        print(f"  error: {outcome.error}")
        return
    print(f"  {drawn_with(outcome)}")
    for note in outcome.notes:
        print(f"  note: {note}")
    if outcome.verdict.force_safe:
        print(f"  {outcome.verdict.summary()}")
    # An upscale's "grid" is its one picture: printed once.
    grid = [outcome.grid] if outcome.grid is not None and outcome.grid.variant == 0 else []
    for image in (*outcome.images, *grid):
        label = "grid" if image.variant == 0 else f"#{image.variant} seed {image.seed}"
        if image.withheld:
            where = f"withheld: {image.reason}"
        elif image.spoiler:
            where = f"{image.path} (spoiler: {image.reason})"
        else:
            where = str(image.path)
        mark = "watermark ok" if image.watermark_verified else "watermark NOT verified"
        print(
            f"  {label:<18} {image.width}x{image.height}  {image.safety_verdict} "
            f"{image.safety_score:.2f}  {mark}  {where}"
        )
    timings = outcome.timings_ms
    switch = timings.get("model_load")
    print(
        f"  {timings.get('total', 0) / 1000:.2f} s in all: "
        + (f"loading the model {switch:.0f} ms, " if switch else "")
        + "diffusion "
        f"{timings.get('diffusion', 0):.0f} ms, safety + watermark + grid "
        f"{timings.get('worker_postprocess', 0):.0f} ms, files "  # the worker draws the grid
        f"{timings.get('grid_and_files', 0):.0f} ms"
    )


def drawn_with(outcome: ImagineOutcome) -> str:
    """``model embedded · LoRA outline:0.8, stripes:1 · embeddings gloom``."""
    parts = [f"model {outcome.model or 'default'}"]
    if outcome.loras:
        parts.append("LoRA " + ", ".join(str(lora) for lora in outcome.loras))
    if outcome.embeddings:
        parts.append("embeddings " + ", ".join(outcome.embeddings))
    return " · ".join(parts)


def progress_printer(enabled: bool) -> Any:
    def show(progress: Progress) -> None:
        end = "\n" if progress.step == progress.total else ""
        print(f"\r  step {progress.step}/{progress.total}", end=end, file=sys.stderr, flush=True)

    return show if enabled else None


def queue_printer(enabled: bool) -> Any:
    def show(place: Queued) -> None:
        eta = "" if place.eta_s is None else f", done in about {place.eta_s:.0f} s"
        ahead = "next" if place.ahead == 0 else f"{place.ahead} ahead"
        print(f"\r  queued: {ahead}{eta}   ", end="", file=sys.stderr, flush=True)

    return show if enabled else None


def lineage_json(record: JobRecord | None) -> dict[str, Any]:
    """What a job came from: its kind, its parent, how it started and the pictures it was
    given (their hashes and scores)."""
    if record is None:
        return {}
    return {
        "kind": str(record.kind),
        "parent_job_id": record.parent_job_id,
        "parent_variant": record.parent_variant,
        "start": record.start,
        "strength": record.strength,
        "source_seed": record.source_seed,
        "control": record.control,
        "control_scale": record.control_scale,
        "inputs": [given.to_dict() for given in record.inputs],
    }


def lineage_lines(record: JobRecord) -> list[str]:
    """``parent``, ``start`` and ``input`` lines (none for a job drawn from its prompt)."""
    lines = []
    if record.parent_job_id is not None:
        variant = "" if record.parent_variant is None else f" variant {record.parent_variant}"
        lines.append(f"parent    job {record.parent_job_id}{variant} ({record.kind})")
    if record.start != "text" or record.control is not None:
        said = [record.start]
        if record.start != "text" and record.strength is not None:
            said.append(f"strength {record.strength:g}")
        if record.source_seed is not None:
            upscale = record.source_upscale or 1
            said.append(f"from seed {record.source_seed}" + (f" ×{upscale}" if upscale > 1 else ""))
        if record.control is not None:
            said.append(f"control {record.control} {record.control_scale or 0:g}")
        lines.append("start     " + " · ".join(said))
    for given in record.inputs:
        score = "" if given.nsfw_score is None else f" · nsfw {given.nsfw_score:.2f}"
        made = "" if given.parent_job_id is None else f" · made by job {given.parent_job_id}"
        lines.append(
            f"input     {given.role} sha256 {given.sha256} {given.format} "
            f"{given.width}x{given.height}{score}{made}"
        )
    return lines


def print_lineage(record: JobRecord | None) -> None:
    for line in [] if record is None else lineage_lines(record):
        print(f"  {line}")


def report(outcome: ImagineOutcome, record: JobRecord | None, as_json: bool) -> int:
    """Prints a drawn job's outcome with where it came from (JSON or lines) and returns its exit
    code: 0 succeeded, 3 blocked, 1 otherwise."""
    import json

    from bot.cli import EXIT_BLOCKED, EXIT_FAILED, EXIT_OK
    from storage.models import JobStatus

    if as_json:
        print(json.dumps(outcome_json(outcome) | lineage_json(record), indent=2))
    else:
        print_outcome(outcome)
        print_lineage(record)
    if outcome.status is JobStatus.BLOCKED:
        return EXIT_BLOCKED
    return EXIT_OK if outcome.status is JobStatus.SUCCEEDED else EXIT_FAILED
