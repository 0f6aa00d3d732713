"""A member's deletion (forget) on real SQLite and PostgreSQL, a real image folder and real
Redis: nothing of the member is left but the bans and the record that it was done, and
nobody else's data is touched."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData, select

from bot.access import Control
from bot.app import build_service, open_queue
from bot.imagine.errors import ControlUnavailable
from bot.imagine.service import ImagineService
from bot.imagine.types import Requester
from bot.ops.privacy import forget_member
from bot.settings import Settings
from generation.queue.redis import RedisQueue
from storage import migrations
from storage.models import JobStatus, Verdict
from storage.records import NewImage, NewInput, NewJob
from storage.repositories import Storage, open_storage
from tests.conftest import REDIS_URL

GUILD, OTHER_GUILD = 1_100_000_000_000_000_001, 1_100_000_000_000_000_009
ADA, BEA, MOD = 2_200_000_000_000_000_002, 2_200_000_000_000_000_003, 2_200_000_000_000_000_004
ADA_PROMPT, ADA_NEGATIVE = "ada's secret lighthouse at dusk", "ada's unwanted fog"
BEA_PROMPT = "bea's teapot in the rain"


def new_job(user_id: int, prompt: str, guild_id: int | None, **extra: object) -> NewJob:
    values: dict[str, object] = {
        "source": "discord" if guild_id else "cli",
        "guild_id": guild_id,
        "channel_id": 3 if guild_id else None,
        "user_id": user_id,
        "prompt": prompt,
        "negative_prompt": ADA_NEGATIVE if user_id == ADA else "",
        "steps": 4,
        "guidance_scale": 5.0,
        "width": 64,
        "height": 64,
        "variants": 1,
        "scheduler": "dpmpp",
        "model": "embedded",
        "seeds": (7,),
        "verdict": Verdict.ALLOWED,
    }
    values.update(extra)
    return NewJob(**values)  # type: ignore[arg-type]


def given(png: bytes) -> NewInput:
    return NewInput("image", "ab" * 32, "PNG", len(png), 64, 64, png, nsfw_score=0.1)


async def finished_job(
    storage: Storage, output_dir: Path, user_id: int, prompt: str, guild_id: int | None
) -> int:
    """A succeeded job with one picture on disk and one picture given in."""
    job_id = await storage.audit.create_job(
        new_job(user_id, prompt, guild_id), inputs=[given(b"given-" + prompt.encode())]
    )
    folder = output_dir / f"job-{job_id}"
    folder.mkdir(parents=True)
    path = folder / "variant-1.png"
    path.write_bytes(b"png of " + prompt.encode())
    image = NewImage(1, 7, f"{job_id:064x}", 1000 + job_id, True, 0.1, "safe", 64, 64, str(path))
    await storage.audit.record_outcome(job_id, JobStatus.SUCCEEDED, images=[image])
    return job_id


@dataclass
class World:
    settings: Settings
    storage: Storage
    service: ImagineService
    output_dir: Path
    ada_jobs: list[int]  # finished: guild, other guild, DM
    ada_open: int  # queued, in Redis when the queue is
    bea_job: int


@pytest.fixture
async def world(database_url: str, tmp_path: Path, model_dir: Path) -> AsyncIterator[World]:
    settings = Settings(
        _env_file=None,
        model=str(model_dir),
        data_dir=tmp_path / "data",
        database_url=database_url,
        device="cpu",
    )
    await asyncio.to_thread(migrations.upgrade, database_url)
    output_dir = settings.effective_output_dir()
    async with open_storage(database_url) as storage:
        queue = await open_queue(settings)
        service = build_service(settings, storage, queue)
        ada_jobs = [
            await finished_job(storage, output_dir, ADA, ADA_PROMPT, guild)
            for guild in (GUILD, OTHER_GUILD, None)
        ]
        bea_job = await finished_job(storage, output_dir, BEA, BEA_PROMPT, GUILD)
        ada_open = await storage.audit.create_job(new_job(ADA, ADA_PROMPT, GUILD))
        # ada used a control on bea's grid; a moderator banned her, quoting her prompt
        await storage.claims.claim_action(bea_job, "upscale-1", ADA)
        await storage.bans.ban(GUILD, ADA, banned_by=MOD, reason="spam")
        await storage.moderation.record(
            guild_id=GUILD, actor_id=MOD, action="ban", target_user_id=ADA,
            reason=f"kept asking for {ADA_PROMPT}", details={"quoted": ADA_PROMPT},
        )  # fmt: skip
        try:
            yield World(settings, storage, service, output_dir, ada_jobs, ada_open, bea_job)
        finally:
            await queue.close()


async def _dump(storage: Storage) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, as text-able values."""
    metadata = MetaData()
    async with storage.sessions() as session:
        connection = await session.connection()
        await connection.run_sync(metadata.reflect)
        tables = {}
        for name, table in metadata.tables.items():
            rows = (await session.execute(select(table))).mappings()
            tables[name] = [dict(row) for row in rows]
    return tables


def _is_file(path: str | None) -> bool:
    return path is not None and Path(path).is_file()


def _mentions(value: object, needle: str) -> bool:
    if isinstance(value, bytes):
        return needle.encode() in value
    return needle in json.dumps(value, default=str, ensure_ascii=False)


async def test_forget_leaves_nothing_of_the_member_but_bans_and_the_record(world: World) -> None:
    report = await forget_member(
        world.service, user_id=ADA, guild_id=None, actor_id=None, via="cli"
    )
    assert (report.jobs, report.images, report.inputs, report.cancelled) == (4, 3, 3, 1)

    tables = await _dump(world.storage)
    for name, rows in tables.items():
        for row in rows:
            for needle in (ADA_PROMPT, ADA_NEGATIVE, "ada's"):
                assert not any(_mentions(value, needle) for value in row.values()), (name, row)
            if any(_mentions(value, str(ADA)) for value in row.values()):
                assert name in ("bans", "moderation_actions"), (name, row)
                if name == "moderation_actions":
                    assert row["action"] in ("ban", "forget"), row
    scrubbed = [row for row in tables["moderation_actions"] if row["action"] == "ban"]
    assert [(row["reason"], row["details"]) for row in scrubbed] == [
        ("kept asking for [purged]", {"quoted": "[purged]"})
    ]
    forgot = [row for row in tables["moderation_actions"] if row["action"] == "forget"]
    assert [(row["actor_id"], row["target_user_id"], row["details"]) for row in forgot] == [
        (0, ADA, {"jobs": 4, "images": 3, "inputs": 3, "redis_entries": 0, "cancelled": 1,
                  "via": "cli"})
    ]  # fmt: skip

    for job_id in [*world.ada_jobs, world.ada_open]:
        job = await world.storage.audit.get_job(job_id)
        assert job is not None
        assert (job.prompt, job.negative_prompt, job.user_id, job.purge_reason) == (
            "", "", None, "forget"
        )  # fmt: skip
        assert job.purged_at is not None
        assert all(image.path is None and image.sha256 for image in job.images)
        assert not (world.output_dir / f"job-{job_id}").exists()
    cancelled = await world.storage.audit.get_job(world.ada_open)
    assert cancelled is not None
    assert cancelled.status is JobStatus.CANCELLED

    bea = await world.storage.audit.get_job(world.bea_job)
    assert bea is not None
    assert (bea.prompt, bea.user_id, bea.purged_at) == (BEA_PROMPT, BEA, None)
    assert [await asyncio.to_thread(_is_file, image.path) for image in bea.images] == [True]
    pngs = await world.storage.audit.input_pngs(world.bea_job)
    assert pngs is not None
    assert pngs.image == b"given-" + BEA_PROMPT.encode()


async def test_forget_is_idempotent_and_says_nothing_was_left(world: World) -> None:
    first = await forget_member(world.service, user_id=ADA, guild_id=None, actor_id=MOD, via="mod")
    assert not first.nothing
    again = await forget_member(world.service, user_id=ADA, guild_id=None, actor_id=MOD, via="mod")
    assert again.nothing
    assert again.counts() == dict.fromkeys(again.counts(), 0)
    forgot = [row for row in (await _dump(world.storage))["moderation_actions"]
              if row["action"] == "forget"]  # fmt: skip
    assert [row["details"]["jobs"] for row in forgot] == [4, 0]  # each request is recorded
    bea = await world.storage.audit.get_job(world.bea_job)
    assert bea is not None
    assert bea.prompt == BEA_PROMPT


async def test_forget_in_one_guild_keeps_the_member_elsewhere(world: World) -> None:
    report = await forget_member(
        world.service, user_id=ADA, guild_id=GUILD, actor_id=MOD, via="mod"
    )
    assert (report.jobs, report.images, report.cancelled) == (2, 1, 1)
    here, elsewhere, dm = [await world.storage.audit.get_job(i) for i in world.ada_jobs]
    assert here is not None
    assert (here.prompt, here.user_id) == ("", None)
    for kept in (elsewhere, dm):
        assert kept is not None
        assert (kept.prompt, kept.user_id, kept.purged_at) == (ADA_PROMPT, ADA, None)
        assert [await asyncio.to_thread(_is_file, image.path) for image in kept.images] == [True]
    newest = (await world.storage.moderation.list(GUILD, user_id=ADA))[0]
    assert (newest.action, newest.details["jobs"], newest.details["via"]) == ("forget", 2, "mod")


@pytest.fixture
async def redis_world(world: World, redis_prefix: str) -> AsyncIterator[World]:
    """The world with its queue on real Redis: ada's open job queued there, and every
    finished job's entries as a job leaves them (its hash, events and result)."""
    queue = await RedisQueue.connect(REDIS_URL, prefix=redis_prefix)
    service = build_service(world.settings, world.storage, queue)
    client = queue.client
    for job_id in [*world.ada_jobs, world.bea_job]:
        job = await world.storage.audit.get_job(job_id)
        assert job is not None
        await client.hset(
            f"{redis_prefix}:job:{job.uid}",
            mapping={"payload": json.dumps({"prompt": job.prompt}), "state": "done"},
        )
        await client.xadd(f"{redis_prefix}:ev:{job.uid}", {"kind": "done", "uid": job.uid})
        await client.hset(f"{redis_prefix}:result:{job.uid}", mapping={"png": b"pixels"})
    opened = await world.storage.audit.get_job(world.ada_open)
    assert opened is not None
    await queue.scripts.push(
        args=[redis_prefix, opened.uid, str(GUILD), str(ADA),
              json.dumps({"prompt": ADA_PROMPT}), "1", "1", opened.id, "0", "", b"blob"]
    )  # fmt: skip
    try:
        yield dataclasses.replace(world, service=service)
    finally:
        await queue.close()


async def test_forget_deletes_the_members_entries_in_redis(
    redis_world: World, redis_prefix: str
) -> None:
    import redis.asyncio as aioredis

    report = await forget_member(
        redis_world.service, user_id=ADA, guild_id=None, actor_id=None, via="privacy"
    )
    # three finished jobs' hash, events and result; the open job's hash and events (it was
    # dequeued: its cancel left an event)
    assert (report.redis_entries, report.cancelled) == (11, 1)
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        left = {key.decode() async for key in client.scan_iter(f"{redis_prefix}:*")}
        blob = b"".join([await client.dump(key) or b"" for key in left])
    finally:
        await client.aclose()
    assert ADA_PROMPT.encode() not in blob
    bea = await redis_world.storage.audit.get_job(redis_world.bea_job)
    assert bea is not None
    assert {f"{redis_prefix}:{kind}:{bea.uid}" for kind in ("job", "ev", "result")} <= left
    for job_id in [*redis_world.ada_jobs, redis_world.ada_open]:
        job = await redis_world.storage.audit.get_job(job_id)
        assert job is not None
        assert not any(job.uid in key for key in left)
    again = await forget_member(
        redis_world.service, user_id=ADA, guild_id=None, actor_id=None, via="privacy"
    )
    assert again.nothing


async def test_forget_stops_a_running_job_and_purges_it_with_its_pictures(
    service: ImagineService,
) -> None:
    """A job the real worker is drawing: it stops, ends cancelled, and leaves no picture."""
    from bot.imagine.types import Requester
    from generation.options import RequestedOptions

    ada = Requester(source="test", guild_id=GUILD, channel_id=70, user_id=ADA)
    busy = asyncio.Event()
    running = asyncio.create_task(
        service.imagine(
            RequestedOptions(prompt=ADA_PROMPT, steps=40),
            ada,
            on_progress=lambda progress: busy.set(),
        )
    )
    await asyncio.wait_for(busy.wait(), 120)
    report = await forget_member(service, user_id=ADA, guild_id=GUILD, actor_id=MOD, via="mod")
    outcome = await asyncio.wait_for(running, 120)
    assert outcome.status is JobStatus.CANCELLED
    assert (report.cancelled, report.jobs) == (1, 1)
    job = await service.storage.audit.get_job(outcome.job_id)
    assert job is not None
    assert (job.status, job.prompt, job.user_id, job.purge_reason) == (
        JobStatus.CANCELLED, "", None, "forget"
    )  # fmt: skip
    assert job.images == ()
    output = service.pictures.output_dir
    assert output is not None
    assert await asyncio.to_thread(lambda: list(output.rglob("*.png"))) == []


async def test_sdbot_forget_on_redis_counts_then_deletes_the_entries(
    settings: Settings, redis_prefix: str, tmp_path: Path
) -> None:
    """The command as an operator runs it, with SDBOT_REDIS_URL: no worker, no model."""
    import redis.asyncio as aioredis

    from tests.test_cli import sdbot

    await asyncio.to_thread(migrations.upgrade, settings.effective_database_url())
    async with open_storage(settings.effective_database_url()) as storage:
        job_id = await finished_job(storage, tmp_path / "images", ADA, ADA_PROMPT, GUILD)
        job = await storage.audit.get_job(job_id)
    assert job is not None
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        await client.hset(f"{redis_prefix}:job:{job.uid}", mapping={"payload": ADA_PROMPT})
        await client.hset(f"{redis_prefix}:result:{job.uid}", mapping={"png": b"pixels"})
        env = {"SDBOT_REDIS_URL": REDIS_URL, "SDBOT_REDIS_PREFIX": redis_prefix}

        counted = await asyncio.to_thread(sdbot, settings, "forget", str(ADA), "--json", **env)
        assert counted.returncode == 0, counted.stderr
        assert json.loads(counted.stdout) | {"deleted": False, "redis_entries": 2, "jobs": 1} == (
            json.loads(counted.stdout)
        )
        assert await client.exists(f"{redis_prefix}:job:{job.uid}") == 1

        done = await asyncio.to_thread(sdbot, settings, "forget", str(ADA), "--yes", **env)
        assert done.returncode == 0, done.stderr
        assert "1 record (prompts purged" in done.stdout
        assert "2 Redis entries" in done.stdout
        assert [key async for key in client.scan_iter(f"{redis_prefix}:*:{job.uid}")] == []
    finally:
        await client.aclose()


async def test_the_controls_of_a_forgotten_job_say_it_was_purged(world: World) -> None:
    """An upscale or reroll of a purged job would draw from an empty prompt or a deleted file:
    it is refused, saying why."""
    await forget_member(world.service, user_id=ADA, guild_id=GUILD, actor_id=MOD, via="mod")
    moderator = Requester(source="test", guild_id=GUILD, channel_id=3, user_id=MOD)
    for control in (Control.UPSCALE, Control.REROLL):
        variant = 1 if control is Control.UPSCALE else None
        with pytest.raises(ControlUnavailable, match="purged; its controls no longer work"):
            await world.service.use_control(world.ada_jobs[0], variant, moderator, control=control)
