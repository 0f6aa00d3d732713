"""Audit export as CSV or JSON Lines, for admins and their spreadsheets.

A purged record (retention, or a member's deletion) is exported as it is kept: empty prompts,
its images' hashes without paths, and when and why it was purged."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from typing import TextIO

from storage.moderation_log import ModerationActionRecord
from storage.records import InputRecord, JobRecord

CSV_COLUMNS = (
    "id", "created_at", "finished_at", "status", "verdict", "verdict_reasons", "source",
    "guild_id", "channel_id", "user_id", "kind", "parent_job_id", "prompt", "negative_prompt",
    "steps", "guidance_scale", "width", "height", "variants", "scheduler", "model", "loras",
    "embeddings", "seeds", "error", "total_ms", "images", "image_sha256", "start", "strength",
    "source_seed", "source_upscale", "control", "control_scale", "inputs", "purged_at",
    "purge_reason", "classifier_scores",
)  # fmt: skip
ACTION_COLUMNS = (
    "id", "created_at", "guild_id", "actor_id", "action", "target_user_id", "target_job_id",
    "reason", "details",
)  # fmt: skip
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: object) -> str:
    """Text a spreadsheet will not run as a formula (prompts are user input)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def _input(given: InputRecord) -> str:
    """A picture given in, in one cell: its role, hash, size and findings (never its pixels)."""
    score = "" if given.nsfw_score is None else f"{given.nsfw_score:.4f}"
    parent = "" if given.parent_job_id is None else str(given.parent_job_id)
    return (
        f"{given.role} sha256={given.sha256} bytes={given.size_bytes} "
        f"size={given.width}x{given.height} nsfw={score} parent={parent}"
    )


def _row(job: JobRecord) -> list[str]:
    values = job.to_dict()
    values["verdict_reasons"] = "; ".join(job.verdict_reasons)
    values["seeds"] = " ".join(map(str, job.seeds))
    values["loras"] = " ".join(job.loras)  # name:weight, without spaces
    values["embeddings"] = " ".join(job.embeddings)
    values["images"] = len(job.images)
    values["image_sha256"] = " ".join(image.sha256 for image in job.images)
    values["inputs"] = "; ".join(_input(given) for given in job.inputs)
    scores = job.classifier_scores or {}
    values["classifier_scores"] = " ".join(f"{label}={scores[label]:.2f}" for label in scores)
    return [_cell(values[column]) for column in CSV_COLUMNS]


def write_csv(jobs: Iterable[JobRecord], out: TextIO, *, header: bool = True) -> int:
    """The jobs as CSV rows (``header``: the column names first; off to append a page)."""
    writer = csv.writer(out)
    if header:
        writer.writerow(CSV_COLUMNS)
    count = 0
    for job in jobs:
        writer.writerow(_row(job))
        count += 1
    return count


def write_jsonl(jobs: Iterable[JobRecord], out: TextIO) -> int:
    """One JSON object a job, its images and the pictures it was given (without pixels)."""
    count = 0
    for job in jobs:
        out.write(json.dumps(job.to_dict(), ensure_ascii=False) + "\n")
        count += 1
    return count


def write_actions_csv(actions: Iterable[ModerationActionRecord], out: TextIO) -> int:
    """The moderation log: who did what to whom, why and when; details as JSON."""
    writer = csv.writer(out)
    writer.writerow(ACTION_COLUMNS)
    count = 0
    for action in actions:
        values = (
            action.id,
            action.created_at.isoformat(),
            action.guild_id,
            action.actor_id,
            action.action,
            action.target_user_id,
            action.target_job_id,
            action.reason,
            json.dumps(action.details, ensure_ascii=False, sort_keys=True),
        )
        writer.writerow([_cell(value) for value in values])
        count += 1
    return count
