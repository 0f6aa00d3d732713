"""Audit export formats, including spreadsheet-formula escaping of user text."""

from __future__ import annotations

import csv
import io
import json

from storage.audit import AuditLog
from storage.engine import SessionFactory
from storage.export import CSV_COLUMNS, write_csv, write_jsonl
from storage.models import JobStatus, Verdict
from storage.records import NewImage
from tests.test_storage import new_job


async def test_csv_and_jsonl(sessions: SessionFactory) -> None:
    audit = AuditLog(sessions)
    ok = await audit.create_job(new_job(prompt="=HYPERLINK('x')"))
    await audit.record_outcome(
        ok,
        JobStatus.SUCCEEDED,
        images=[NewImage(1, 7, "ab" * 32, 33, True, 0.01, "safe", 256, 256)],
    )
    await audit.create_job(new_job(Verdict.BLOCKED))
    jobs = await audit.list_jobs()

    out = io.StringIO()
    assert write_csv(jobs, out) == 2
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert rows[0]["prompt"] == "'=HYPERLINK('x')"
    assert (rows[0]["status"], rows[0]["images"], rows[0]["seeds"]) == ("succeeded", "1", "7 8")
    assert (rows[1]["status"], rows[1]["verdict"]) == ("blocked", "blocked")
    assert rows[1]["verdict_reasons"] == "contains the blocked term 'x'"

    out = io.StringIO()
    assert write_jsonl(jobs, out) == 2
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert records[0]["prompt"] == "=HYPERLINK('x')"  # JSON keeps the text as it was
    assert records[0]["images"][0]["watermark_id"] == 33
    assert records[1]["verdict_reasons"] == ["contains the blocked term 'x'"]
