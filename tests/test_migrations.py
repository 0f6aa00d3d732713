"""Alembic: round trips on both databases, no drift from the models, and the start-up refusal."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from storage import migrations
from storage.engine import create_engine
from storage.errors import DatabaseBehind
from storage.models import Base
from storage.repositories import open_storage

TABLES = {
    "alembic_version", "bans", "guild_settings", "images", "job_actions", "job_inputs", "jobs",
    "moderation_actions", "posted_messages", "terms",
}  # fmt: skip


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


def _drift(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def _inspect(url: str) -> tuple[set[str], list[object]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(_tables), await connection.run_sync(_drift)
    finally:
        await engine.dispose()


async def test_upgrade_downgrade_upgrade(database_url: str) -> None:
    await asyncio.to_thread(migrations.upgrade, database_url)
    tables, _ = await _inspect(database_url)
    assert tables == TABLES

    await asyncio.to_thread(migrations.downgrade, database_url, "base")
    tables, _ = await _inspect(database_url)
    assert tables <= {"alembic_version"}

    await asyncio.to_thread(migrations.upgrade, database_url)
    tables, drift = await _inspect(database_url)
    assert tables == TABLES
    assert drift == [], f"the models and the migrations differ: {drift}"


async def test_code_refuses_a_database_that_is_behind(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        with pytest.raises(DatabaseBehind, match="run `sdbot db upgrade`"):
            await migrations.ensure_up_to_date(engine)
        await asyncio.to_thread(migrations.upgrade, database_url)
        await migrations.ensure_up_to_date(engine)
        assert await migrations.current_revision(engine) == migrations.head_revision()
    finally:
        await engine.dispose()


async def test_open_storage_refuses_a_database_behind_and_opens_a_migrated_one(
    database_url: str,
) -> None:
    with pytest.raises(DatabaseBehind, match="run `sdbot db upgrade`"):
        async with open_storage(database_url):
            pass
    await asyncio.to_thread(migrations.upgrade, database_url)
    async with open_storage(database_url) as storage:
        assert await storage.audit.list_jobs() == []
        assert (await storage.guild_settings.get(1)).guild_id == 1


def test_the_head_read_from_the_scripts_is_alembics() -> None:
    """Opening storage compares the database with the head read from the scripts' text; a new
    migration that the reading misses fails here rather than in front of a user."""
    assert migrations.scripts_head() == migrations.head_revision()


async def test_a_database_ahead_is_refused_with_both_revisions(database_url: str) -> None:
    await asyncio.to_thread(migrations.upgrade, database_url)
    await _execute(database_url, "UPDATE alembic_version SET version_num = '9999'")
    engine = create_engine(database_url)
    try:
        with pytest.raises(DatabaseBehind, match="is at revision 9999 but this sdbot needs"):
            await migrations.ensure_up_to_date(engine)
    finally:
        await engine.dispose()


def test_opening_an_up_to_date_database_does_not_import_alembic(tmp_path: Path) -> None:
    """Alembic takes about 0.1 s to import; commands that only open the database skip it."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'sdbot.db'}"
    migrations.upgrade(url)
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from storage.repositories import open_storage

        async def main() -> None:
            async with open_storage({url!r}) as storage:
                await storage.audit.list_jobs()

        asyncio.run(main())
        print(sorted(name for name in sys.modules if name.split(".")[0] == "alembic"))
        """
    )
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=root, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


async def _execute(url: str, *statements: str) -> list[tuple[object, ...]]:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            rows: list[tuple[object, ...]] = []
            for statement in statements:
                result = await connection.execute(text(statement))
                if result.returns_rows:
                    rows += [tuple(row) for row in result]
            return rows
    finally:
        await engine.dispose()


async def test_0002_keeps_old_data_meaningful(database_url: str) -> None:
    await asyncio.to_thread(migrations.upgrade, database_url, "0001")
    now = "'2026-11-01 00:00:00'"
    await _execute(
        database_url,
        "INSERT INTO guild_settings (guild_id, nsfw_policy, updated_at) "
        f"VALUES (1, 'channel', {now}), (2, 'show', {now})",
        "INSERT INTO jobs (id, kind, source, prompt, negative_prompt, steps, guidance_scale, "
        "width, height, variants, scheduler, model, seeds, verdict, verdict_reasons, status, "
        "created_at) "
        f"VALUES (1, 'imagine', 'cli', 'p', '', 1, 1.0, 64, 64, 2, 'default', 'm', '[1, 2]', "
        f"'allowed', '[]', 'succeeded', {now})",
        *(
            "INSERT INTO images (job_id, variant, seed, sha256, watermark_id, watermark_verified, "
            f"safety_score, safety_verdict, width, height, created_at) VALUES (1, {variant}, 1, "
            f"'x', {16 + variant}, true, {score}, '{verdict}', 256, 256, {now})"
            for variant, score, verdict in (
                (0, 0.1, "flagged"),
                (1, 0.9, "flagged"),
                (2, 0.1, "safe"),
            )
        ),
        f"INSERT INTO terms (guild_id, kind, term, created_at) VALUES (1, 'block', 'clown', {now})",
    )

    await asyncio.to_thread(migrations.upgrade, database_url)
    policies = await _execute(database_url, "SELECT guild_id, nsfw_policy FROM guild_settings")
    assert sorted(policies) == [(1, "block"), (2, "block")]
    shown = await _execute(database_url, "SELECT variant, disposition FROM images")
    assert sorted(shown) == [(0, "shown"), (1, "withheld"), (2, "shown")]
    await _execute(
        database_url,
        "INSERT INTO terms (guild_id, kind, term, is_regex, created_at) VALUES "
        f"(1, 'force_safe', 'swimsuit', false, {now}), (1, 'block', 'x+y', true, {now})",
    )

    # Down again: force-safe and pattern entries have no place there, the rest stays.
    await asyncio.to_thread(migrations.downgrade, database_url, "0001")
    assert await _execute(database_url, "SELECT kind, term FROM terms") == [("block", "clown")]


async def test_0003_turns_job_limits_into_image_limits_and_keeps_the_images(
    database_url: str,
) -> None:
    await asyncio.to_thread(migrations.upgrade, database_url, "0002")
    now = "'2026-11-01 00:00:00'"
    await _execute(
        database_url,
        "INSERT INTO guild_settings (guild_id, nsfw_policy, jobs_per_user_per_hour, "
        f"jobs_per_guild_per_hour, max_queued_per_user, updated_at) VALUES (1, 'block', 5, 50, "
        f"2, {now})",
        "INSERT INTO jobs (id, kind, source, prompt, negative_prompt, steps, guidance_scale, "
        "width, height, variants, scheduler, model, seeds, verdict, verdict_reasons, status, "
        f"created_at) VALUES (1, 'imagine', 'cli', 'p', '', 1, 1.0, 64, 64, 1, 'default', 'm', "
        f"'[1]', 'allowed', '[]', 'succeeded', {now})",
        "INSERT INTO images (job_id, variant, seed, sha256, watermark_id, watermark_verified, "
        "safety_score, safety_verdict, width, height, disposition, created_at) VALUES "
        f"(1, 1, 1, 'x', 17, true, 0.1, 'safe', 256, 256, 'shown', {now})",
    )
    await asyncio.to_thread(migrations.upgrade, database_url)
    limits = await _execute(
        database_url,
        "SELECT user_images_per_hour, guild_images_per_hour, max_jobs_per_user FROM guild_settings",
    )
    assert limits == [(20.0, 200.0, 2)]  # a job was a 4-image grid
    assert await _execute(database_url, "SELECT attempts, channel_nsfw FROM jobs") == [(0, False)]
    # On SQLite a table copy of `jobs` would have cascaded to its images.
    assert await _execute(database_url, "SELECT job_id, variant FROM images") == [(1, 1)]

    await _execute(database_url, "UPDATE jobs SET status = 'refused'")
    await asyncio.to_thread(migrations.downgrade, database_url, "0002")
    assert await _execute(
        database_url,
        "SELECT jobs_per_user_per_hour, jobs_per_guild_per_hour, max_queued_per_user "
        "FROM guild_settings",
    ) == [(5, 50, 2)]
    assert await _execute(database_url, "SELECT status FROM jobs") == [("failed",)]
    assert await _execute(database_url, "SELECT job_id, variant FROM images") == [(1, 1)]


async def test_0006_gives_every_job_its_own_uid_and_keeps_the_images(database_url: str) -> None:
    await asyncio.to_thread(migrations.upgrade, database_url, "0005")
    now = "'2026-11-01 00:00:00'"
    await _execute(
        database_url,
        *(
            "INSERT INTO jobs (id, kind, source, prompt, negative_prompt, steps, guidance_scale, "
            "width, height, variants, scheduler, model, seeds, verdict, verdict_reasons, status, "
            f"created_at) VALUES ({job_id}, 'imagine', 'cli', 'p', '', 1, 1.0, 64, 64, 1, "
            f"'default', 'm', '[1]', 'allowed', '[]', '{status}', {now})"
            for job_id, status in ((1, "succeeded"), (2, "queued"), (3, "running"))
        ),
        "INSERT INTO images (job_id, variant, seed, sha256, watermark_id, watermark_verified, "
        "safety_score, safety_verdict, width, height, disposition, created_at) VALUES "
        f"(1, 1, 1, 'x', 17, true, 0.1, 'safe', 256, 256, 'shown', {now})",
    )
    await asyncio.to_thread(migrations.upgrade, database_url)
    rows = await _execute(
        database_url, "SELECT id, uid, lease_owner, lease_expires_at FROM jobs ORDER BY id"
    )
    uids = [str(uid) for _, uid, _, _ in rows]
    assert len(set(uids)) == 3
    assert all(len(uid) == 32 and int(uid, 16) >= 0 for uid in uids)
    assert [(job_id, owner, until) for job_id, _, owner, until in rows] == [
        (1, None, None),
        (2, None, None),
        (3, None, None),
    ]  # no lease: `sdbot recover` may take the open ones at once
    assert await _execute(database_url, "SELECT job_id, variant FROM images") == [(1, 1)]
    with pytest.raises(Exception, match=r"(?i)unique"):  # the database itself refuses a reuse
        await _execute(database_url, f"UPDATE jobs SET uid = '{uids[0]}' WHERE id = 2")

    await asyncio.to_thread(migrations.downgrade, database_url, "0005")
    assert await _execute(database_url, "SELECT id FROM jobs ORDER BY id") == [(1,), (2,), (3,)]
    assert await _execute(database_url, "SELECT job_id, variant FROM images") == [(1, 1)]


async def test_0007_gives_earlier_jobs_no_loras_and_keeps_the_images(database_url: str) -> None:
    await asyncio.to_thread(migrations.upgrade, database_url, "0006")
    now = "'2026-11-01 00:00:00'"
    await _execute(
        database_url,
        "INSERT INTO jobs (id, uid, kind, source, prompt, negative_prompt, steps, "
        "guidance_scale, width, height, variants, scheduler, model, seeds, verdict, "
        "verdict_reasons, status, created_at) VALUES (1, 'u1', 'imagine', 'cli', 'p', '', 1, "
        f"1.0, 64, 64, 1, 'default', 'm', '[1]', 'allowed', '[]', 'succeeded', {now})",
        "INSERT INTO images (job_id, variant, seed, sha256, watermark_id, watermark_verified, "
        "safety_score, safety_verdict, width, height, disposition, created_at) VALUES "
        f"(1, 1, 1, 'x', 17, true, 0.1, 'safe', 256, 256, 'shown', {now})",
        "INSERT INTO guild_settings (guild_id, nsfw_policy, updated_at) "
        f"VALUES (1, 'block', {now})",
    )
    await asyncio.to_thread(migrations.upgrade, database_url)
    async with open_storage(database_url) as storage:
        job = await storage.audit.get_job(1)
        settings = await storage.guild_settings.get(1)
    assert job is not None
    assert (job.model, job.loras, job.embeddings, len(job.images)) == ("m", (), (), 1)
    assert (settings.allowed_models, settings.allowed_loras) == (None, None)
    assert await _execute(database_url, "SELECT job_id, variant FROM images") == [(1, 1)]

    await asyncio.to_thread(migrations.downgrade, database_url, "0006")
    assert await _execute(database_url, "SELECT id FROM jobs") == [(1,)]
    assert await _execute(database_url, "SELECT job_id, variant FROM images") == [(1, 1)]


async def test_0008_starts_earlier_jobs_from_text_and_drops_pictures_on_the_way_down(
    database_url: str,
) -> None:
    await asyncio.to_thread(migrations.upgrade, database_url, "0007")
    now = "'2026-11-01 00:00:00'"
    await _execute(
        database_url,
        "INSERT INTO jobs (id, uid, kind, source, prompt, negative_prompt, steps, "
        "guidance_scale, width, height, variants, scheduler, model, seeds, verdict, "
        "verdict_reasons, status, created_at, loras, embeddings) VALUES (1, 'u1', 'imagine', "
        "'cli', 'p', '', 1, 1.0, 64, 64, 1, 'default', 'm', '[1]', 'allowed', '[]', "
        f"'succeeded', {now}, '[]', '[]')",
        "INSERT INTO images (job_id, variant, seed, sha256, watermark_id, watermark_verified, "
        "safety_score, safety_verdict, width, height, disposition, created_at) VALUES "
        f"(1, 1, 1, 'x', 17, true, 0.1, 'safe', 256, 256, 'shown', {now})",
        "INSERT INTO guild_settings (guild_id, nsfw_policy, updated_at) "
        f"VALUES (1, 'block', {now})",
    )
    await asyncio.to_thread(migrations.upgrade, database_url)
    async with open_storage(database_url) as storage:
        job = await storage.audit.get_job(1)
        settings = await storage.guild_settings.get(1)
    assert job is not None
    assert (job.start, job.strength, job.source_seed, job.control, job.inputs) == (
        "text", None, None, None, ()
    )  # fmt: skip
    assert settings.vary is None
    await _execute(
        database_url,
        "INSERT INTO job_inputs (job_id, role, sha256, format, size_bytes, width, height, "
        f"png, created_at) VALUES (1, 'image', 'ab', 'PNG', 3, 8, 8, NULL, {now})",
        "UPDATE guild_settings SET vary = 'strong'",
    )

    await asyncio.to_thread(migrations.downgrade, database_url, "0007")
    assert await _execute(database_url, "SELECT id FROM jobs") == [(1,)]
    assert await _execute(database_url, "SELECT job_id, variant FROM images") == [(1, 1)]
    assert await _execute(database_url, "SELECT guild_id FROM guild_settings") == [(1,)]
    tables, _ = await _inspect(database_url)
    assert "job_inputs" not in tables


async def test_0010_gives_guilds_the_default_gore_policy_and_keeps_earlier_jobs(
    database_url: str,
) -> None:
    await asyncio.to_thread(migrations.upgrade, database_url, "0009")
    now = "'2026-11-01 00:00:00'"
    await _execute(
        database_url,
        "INSERT INTO guild_settings (guild_id, nsfw_policy, controls, updated_at) "
        f"VALUES (1, 'spoiler', 'everyone', {now})",
        "INSERT INTO jobs (id, uid, kind, source, prompt, negative_prompt, steps, "
        "guidance_scale, width, height, variants, scheduler, model, seeds, verdict, "
        "verdict_reasons, status, created_at, loras, embeddings) VALUES (1, 'u1', 'imagine', "
        "'cli', 'p', '', 1, 1.0, 64, 64, 1, 'default', 'm', '[1]', 'allowed', '[]', "
        f"'succeeded', {now}, '[]', '[]')",
        "INSERT INTO images (job_id, variant, seed, sha256, watermark_id, watermark_verified, "
        "safety_score, safety_verdict, width, height, disposition, created_at) VALUES "
        f"(1, 1, 1, 'x', 17, true, 0.1, 'safe', 256, 256, 'shown', {now})",
    )
    await asyncio.to_thread(migrations.upgrade, database_url)
    async with open_storage(database_url) as storage:
        before = await storage.guild_settings.get(1)
        assert (before.gore_policy.value, before.nsfw_policy.value) == ("age_restricted", "spoiler")
        after = await storage.guild_settings.update(1, gore_policy="block")
        job = await storage.audit.get_job(1)
    assert (after.gore_policy.value, after.controls.value) == ("block", "everyone")
    assert job is not None
    assert (job.classifier_scores, len(job.images)) == (None, 1)  # read before the classifier
    await _execute(database_url, """UPDATE jobs SET classifier_scores = '{"gore": 0.9}'""")

    await asyncio.to_thread(migrations.downgrade, database_url, "0009")
    assert await _execute(
        database_url, "SELECT guild_id, nsfw_policy, controls FROM guild_settings"
    ) == [(1, "spoiler", "everyone")]
    with pytest.raises(Exception, match=r"(?i)gore_policy"):  # the column went with it
        await _execute(database_url, "SELECT gore_policy FROM guild_settings")
    assert await _execute(database_url, "SELECT job_id, variant FROM images") == [(1, 1)]
