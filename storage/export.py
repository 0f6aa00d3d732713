"""Audit export as CSV or JSON Lines, for admins and their spreadsheets."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from typing import TextIO

from storage.audit import JobRecord

CSV_COLUMNS = (
    "id", "created_at", "finished_at", "status", "verdict", "verdict_reasons", "source",
    "guild_id", "channel_id", "user_id", "kind", "parent_job_id", "prompt", "negative_prompt",
    "steps", "guidance_scale", "width", "height", "variants", "scheduler", "model", "seeds",
    "error", "total_ms", "images", "image_sha256",
)  # fmt: skip
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: object) -> str:
    """Text a spreadsheet will not run as a formula (prompts are user input)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def _row(job: JobRecord) -> list[str]:
    values = job.to_dict()
    values["verdict_reasons"] = "; ".join(job.verdict_reasons)
    values["seeds"] = " ".join(map(str, job.seeds))
    values["images"] = len(job.images)
    values["image_sha256"] = " ".join(image.sha256 for image in job.images)
    return [_cell(values[column]) for column in CSV_COLUMNS]


def write_csv(jobs: Iterable[JobRecord], out: TextIO) -> int:
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    count = 0
    for job in jobs:
        writer.writerow(_row(job))
        count += 1
    return count


def write_jsonl(jobs: Iterable[JobRecord], out: TextIO) -> int:
    count = 0
    for job in jobs:
        out.write(json.dumps(job.to_dict(), ensure_ascii=False) + "\n")
        count += 1
    return count
