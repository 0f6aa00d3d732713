"""Retention on real SQLite and PostgreSQL and a real image folder: only records that ended long
enough ago lose their prompts and pictures, and keep what traces a watermark to them; then the
real command line on a real job's watermarked picture (`sdbot purge`, `sdbot forget`, `sdbot
trace`), and migration 0009 up and down."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from bot.ops.retention import purge_expired, retention_loop
from bot.settings import Settings
from storage import migrations
from storage.engine import SessionFactory
from storage.export import CSV_COLUMNS, write_csv
from storage.models import Job, JobStatus, ModerationAction, utcnow
from storage.records import ImageRecord
from storage.repositories import Storage, repositories
from storage.retention import SCRUBBED, quoted
from tests.test_cli import imagine_json, sdbot
from tests.test_forget import BEA, GUILD, finished_job, new_job
from tests.test_migrations import _execute

ADA = 2_200_000_000_000_000_002


async def _age(sessions: SessionFactory, job_id: int, days: float) -> None:
    """The job ended ``days`` ago (and was created a little before)."""
    ended = utcnow() - timedelta(days=days)
    async with sessions.begin() as session:
        await session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(finished_at=ended, created_at=ended - timedelta(seconds=5))
        )


@pytest.fixture
def storage(sessions: SessionFactory) -> Storage:
    return repositories(sessions)


async def _images(storage: Storage, job_id: int) -> list[ImageRecord]:
    job = await storage.audit.get_job(job_id)
    assert job is not None
    return list(job.images)


def _exists(path: str | None) -> bool:
    return path is not None and Path(path).is_file()


async def test_retention_purges_only_what_ended_long_ago(storage: Storage, tmp_path: Path) -> None:
    output = tmp_path / "images"
    old = await finished_job(storage, output, ADA, "an old lighthouse", GUILD)
    recent = await finished_job(storage, output, ADA, "a recent lighthouse", GUILD)
    other = await finished_job(storage, output, BEA, "bea's old teapot", None)
    still_open = await storage.audit.create_job(new_job(ADA, "an open lighthouse", GUILD))
    await _age(storage.sessions, old, 40)
    await _age(storage.sessions, other, 31)
    await _age(storage.sessions, recent, 29)
    await _age(storage.sessions, still_open, 40)  # open jobs are never purged
    old_paths = [image.path for job_id in (old, other) for image in await _images(storage, job_id)]
    assert all([await asyncio.to_thread(_exists, path) for path in old_paths])

    report = await purge_expired(storage, output, 30)
    assert (report.jobs, report.images, report.inputs) == (2, 2, 2)

    for job_id, prompt in ((old, "an old lighthouse"), (other, "bea's old teapot")):
        job = await storage.audit.get_job(job_id)
        assert job is not None
        assert (job.prompt, job.negative_prompt, job.purge_reason) == ("", "", "retention")
        assert job.purged_at is not None
        assert job.user_id in (ADA, BEA)  # retention keeps who asked; forget drops it
        assert job.status is JobStatus.SUCCEEDED
        assert job.seeds == (7,)
        assert [(image.path, image.sha256) for image in job.images] == [(None, f"{job_id:064x}")]
        assert [given.sha256 for given in job.inputs] == ["ab" * 32]  # kept, without pixels
        pngs = await storage.audit.input_pngs(job_id)
        assert pngs is not None
        assert pngs.image is None
        assert prompt not in json.dumps(job.to_dict())
    assert not any([await asyncio.to_thread(_exists, path) for path in old_paths])
    found = await storage.audit.find_by_watermark(1000 + old)
    assert found is not None
    assert found[0].purge_reason == "retention"

    for job_id, prompt in ((recent, "a recent lighthouse"), (still_open, "an open lighthouse")):
        job = await storage.audit.get_job(job_id)
        assert job is not None
        assert (job.prompt, job.purged_at) == (prompt, None)
    kept = await storage.audit.get_job(recent)
    assert kept is not None
    assert [await asyncio.to_thread(_exists, image.path) for image in kept.images] == [True]

    first = await storage.audit.get_job(old)
    again = await purge_expired(storage, output, 30)
    assert (again.jobs, again.images, again.inputs) == (0, 0, 0)
    assert await storage.audit.get_job(old) == first  # purged once: its date stays


async def test_retention_works_in_batches_until_nothing_is_left(
    storage: Storage, tmp_path: Path
) -> None:
    output = tmp_path / "images"
    jobs = [await finished_job(storage, output, ADA, f"lighthouse {n}", GUILD) for n in range(5)]
    for job_id in jobs:
        await _age(storage.sessions, job_id, 2)
    cutoff = utcnow() - timedelta(days=1)
    done = await storage.retention.purge_finished_before(cutoff, output, batch=2)
    assert (done.jobs, done.images) == (5, 5)
    assert {job.prompt for job in await storage.audit.list_jobs()} == {""}
    assert await asyncio.to_thread(lambda: list(output.rglob("*.png"))) == []


async def test_the_export_shows_purged_records_with_empty_prompts(
    storage: Storage, tmp_path: Path
) -> None:
    output = tmp_path / "images"
    old = await finished_job(storage, output, ADA, "an old lighthouse", GUILD)
    await _age(storage.sessions, old, 10)
    await purge_expired(storage, output, 1)
    out = io.StringIO()
    write_csv(await storage.audit.list_jobs(), out)
    header, row = out.getvalue().splitlines()[:2]
    assert header.split(",") == list(CSV_COLUMNS)
    values = dict(zip(CSV_COLUMNS, next(csv.reader([row])), strict=True))
    assert (values["prompt"], values["negative_prompt"], values["purge_reason"]) == (
        "", "", "retention"
    )  # fmt: skip
    assert values["purged_at"].startswith(utcnow().date().isoformat())
    assert values["image_sha256"] == f"{old:064x}"


async def test_the_loop_purges_at_start_and_stops_when_asked(
    storage: Storage, tmp_path: Path, database_url: str
) -> None:
    settings = Settings(
        _env_file=None, data_dir=tmp_path, database_url=database_url, retention_days=30
    )
    old = await finished_job(storage, settings.effective_output_dir(), ADA, "old", GUILD)
    await _age(storage.sessions, old, 40)
    stop = asyncio.Event()
    loop = asyncio.create_task(retention_loop(settings, storage, stop))
    for _ in range(600):  # the first purge runs at once; a generous ceiling
        job = await storage.audit.get_job(old)
        if job is not None and job.purged_at is not None:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(loop, 30)
    job = await storage.audit.get_job(old)
    assert job is not None
    assert job.purge_reason == "retention"


async def test_migration_0009_adds_the_purge_columns_and_drops_them_on_the_way_down(
    database_url: str,
) -> None:
    await asyncio.to_thread(migrations.upgrade, database_url, "0008")
    now = "'2026-11-01 00:00:00'"
    await _execute(
        database_url,
        "INSERT INTO jobs (id, uid, kind, source, prompt, negative_prompt, steps, "
        "guidance_scale, width, height, variants, scheduler, model, seeds, verdict, "
        "verdict_reasons, status, created_at, loras, embeddings, start) VALUES (1, 'u1', "
        "'imagine', 'cli', 'p', '', 1, 1.0, 64, 64, 1, 'default', 'm', '[1]', 'allowed', '[]', "
        f"'succeeded', {now}, '[]', '[]', 'text')",
        "INSERT INTO images (job_id, variant, seed, sha256, watermark_id, watermark_verified, "
        "safety_score, safety_verdict, width, height, disposition, created_at) VALUES "
        f"(1, 1, 1, 'x', 17, true, 0.1, 'safe', 256, 256, 'shown', {now})",
    )
    await asyncio.to_thread(migrations.upgrade, database_url, "0009")
    assert await _execute(database_url, "SELECT purged_at, purge_reason FROM jobs") == [
        (None, None)
    ]
    await _execute(
        database_url,
        f"UPDATE jobs SET prompt = '', purged_at = {now}, purge_reason = 'retention'",
    )
    await asyncio.to_thread(migrations.downgrade, database_url, "0008")
    assert await _execute(database_url, "SELECT id, prompt FROM jobs") == [(1, "")]
    assert await _execute(database_url, "SELECT job_id, variant FROM images") == [(1, 1)]
    with pytest.raises(Exception, match=r"(?i)purged_at"):
        await _execute(database_url, "SELECT purged_at FROM jobs")


def _set(settings: Settings, statement: str) -> None:
    asyncio.run(_execute(settings.effective_database_url(), statement))


def test_purge_and_forget_from_the_command_line_and_the_trace_of_a_purged_picture(
    settings: Settings, tmp_path: Path
) -> None:
    assert sdbot(settings, "db", "upgrade").returncode == 0
    made = imagine_json(settings, "a lighthouse in fog", "--variants", "1", "--seed", "3")
    assert made["status"] == "succeeded"
    job_id = made["job_id"]
    kept = tmp_path / "posted.png"  # the copy a member saved from Discord
    shutil.copy(made["images"][0]["path"], kept)
    files = [Path(image["path"]) for image in made["images"]]
    files += [Path(made["grid"]["path"])] if made.get("grid") else []
    assert all(path.is_file() for path in files)

    refused = sdbot(settings, "purge")
    assert refused.returncode == 2
    assert "SDBOT_RETENTION_DAYS" in refused.stderr
    bad = sdbot(settings, "purge", "--days", "0")
    assert (bad.returncode, "'0'" in bad.stderr) == (2, True)

    nothing = sdbot(settings, "purge", "--days", "30", "--json")
    assert nothing.returncode == 0, nothing.stderr
    assert json.loads(nothing.stdout)["jobs"] == 0
    _set(settings, f"UPDATE jobs SET finished_at = '2020-01-01 00:00:00' WHERE id = {job_id}")
    purged = sdbot(settings, "purge", "--days", "30", "--json")
    assert purged.returncode == 0, purged.stderr
    assert json.loads(purged.stdout)["jobs"] == 1
    assert json.loads(purged.stdout)["images"] == len(files)
    assert not any(path.exists() for path in files)

    traced = sdbot(settings, "trace", str(kept))
    assert traced.returncode == 0, traced.stderr
    assert f"of job {job_id} (imagine, succeeded)" in traced.stdout
    assert "a lighthouse in fog" not in traced.stdout
    date = utcnow().date().isoformat()
    assert f"prompt    purged on {date} (retention)" in traced.stdout
    assert f"sha256 {made['images'][0]['sha256'][:16]}" in traced.stdout
    as_json = json.loads(sdbot(settings, "trace", str(kept), "--json").stdout)
    assert (as_json["job"]["prompt"], as_json["job"]["purge_reason"]) == ("", "retention")

    # the member asks: a CLI job has no member, so this one is given ada's id
    _set(settings, f"UPDATE jobs SET user_id = {ADA}, guild_id = {GUILD} WHERE id = {job_id}")
    counted = sdbot(settings, "forget", str(ADA))
    assert counted.returncode == 0, counted.stderr
    # its prompts went with retention: the record is counted (its id goes), its prompts not
    assert f"would delete for user {ADA} everywhere: 1 record (0 prompts purged" in counted.stdout
    as_counted = json.loads(sdbot(settings, "forget", str(ADA), "--json").stdout)
    assert (as_counted["jobs"], as_counted["prompts"]) == (1, 0)
    assert "Nothing was changed: run again with --yes" in counted.stdout
    still = json.loads(sdbot(settings, "trace", str(kept), "--json").stdout)
    assert still["job"]["user_id"] == ADA
    deleted = sdbot(settings, "forget", str(ADA), "--yes", "--json")
    assert deleted.returncode == 0, deleted.stderr
    assert json.loads(deleted.stdout) | {"deleted": True} == json.loads(deleted.stdout)
    assert json.loads(deleted.stdout)["jobs"] == 1
    traced = sdbot(settings, "trace", str(kept))
    assert f"prompt    purged on {date} (deleted at the member's request)" in traced.stdout
    assert str(ADA) not in traced.stdout
    again = sdbot(settings, "forget", str(ADA), "--yes")
    assert again.returncode == 0, again.stderr
    assert f"nothing of user {ADA} was left to delete everywhere" in again.stdout

    for wrong in ("abc", "0", "-5"):
        bad = sdbot(settings, "forget", wrong)
        assert bad.returncode == 2, wrong
        assert f"got {wrong!r}" in bad.stderr


def test_quoted_prompts_are_found_whole_and_short_ones_not_at_all() -> None:
    pattern = quoted(["a", "cat", "lighthouse", "  ", "(dusk)"])
    assert pattern is not None
    text = "banned: a lighthouse, lighthouses and a cat at (dusk)"
    assert pattern.sub(SCRUBBED, text) == ("banned: a [purged], lighthouses and a cat at [purged]")
    assert quoted(["a", "cat", ""]) is None


async def test_forget_takes_out_whole_prompts_only(storage: Storage, tmp_path: Path) -> None:
    """A moderator's words about the member keep what only looks like their prompts: "a"
    inside "banned", a short prompt as a plain word, a longer one inside a longer word."""
    output = tmp_path / "images"
    for prompt in ("a", "cat", "lighthouse"):
        await finished_job(storage, output, ADA, prompt, GUILD)
    words = "banned a cat fan of lighthouses for this lighthouse"
    await storage.moderation.record(
        guild_id=GUILD, actor_id=BEA, action="ban", target_user_id=ADA, reason=words
    )
    await storage.retention.forget_member(ADA, None, output)
    async with storage.sessions() as session:
        reasons = list(await session.scalars(select(ModerationAction.reason)))
    assert reasons == ["banned a cat fan of lighthouses for this [purged]"]
