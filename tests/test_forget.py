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
from bot.ops.privacy import FORGET_ROUNDS, forget_member
from bot.settings import Settings
from generation.queue.redis import RedisQueue
from storage import migrations
from storage.models import JobKind, JobStatus, Verdict
from storage.records import NewImage, NewInput, NewJob
from storage.repositories import Storage, open_storage
from tests.conftest import REDIS_URL

GUILD, OTHER_GUILD = 1_100_000_000_000_000_001, 1_100_000_000_000_000_009
ADA, BEA, MOD = 2_200_000_000_000_000_002, 2_200_000_000_000_000_003, 2_200_000_000_000_000_004
ADA_PROMPT, ADA_NEGATIVE = "ada's secret lighthouse at dusk", "ada's unwanted fog"
BEA_PROMPT = "bea's teapot in the rain"
BEA_EDIT = "bea's kettle, redrawn"
LATE_PROMPT = "ada's lighthouse, asked for again"


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
    storage: Storage,
    output_dir: Path,
    user_id: int,
    prompt: str,
    guild_id: int | None,
    *,
    parent: int | None = None,
    picture_of: int | None = None,
) -> int:
    """A succeeded job with one picture on disk and one picture given in. ``parent``: a
    control (upscale) on that job made it, copying ``prompt`` from it; ``picture_of``: the
    picture given in is one that job made."""
    extra: dict[str, object] = {}
    if parent is not None:
        extra = {"kind": JobKind.UPSCALE, "parent_job_id": parent, "parent_variant": 1}
    picture = dataclasses.replace(
        given(b"given-" + prompt.encode()), parent_job_id=picture_of or parent
    )
    job_id = await storage.audit.create_job(
        new_job(user_id, prompt, guild_id, **extra), inputs=[picture]
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
    # bea upscaled ada's grid in GUILD (it copies ada's prompt), and a moderator rerolled that
    # upscale; both stay theirs
    made_from_ada: list[int]
    bea_edit: int  # bea's own prompt, given a picture ada's job made


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
        upscale = await finished_job(
            storage, output_dir, BEA, ADA_PROMPT, GUILD, parent=ada_jobs[0]
        )
        reroll = await finished_job(storage, output_dir, MOD, ADA_PROMPT, GUILD, parent=upscale)
        bea_edit = await finished_job(
            storage, output_dir, BEA, BEA_EDIT, OTHER_GUILD, picture_of=ada_jobs[1]
        )
        # ada used a control on bea's grid; a moderator banned her, quoting her prompt, in
        # both guilds
        await storage.claims.claim_action(bea_job, "upscale-1", ADA)
        await storage.bans.ban(GUILD, ADA, banned_by=MOD, reason=f"spam: {ADA_PROMPT}")
        for guild in (GUILD, OTHER_GUILD):
            await storage.moderation.record(
                guild_id=guild, actor_id=MOD, action="ban", target_user_id=ADA,
                reason=f"kept asking for {ADA_PROMPT}", details={"quoted": ADA_PROMPT},
            )  # fmt: skip
        try:
            yield World(
                settings, storage, service, output_dir, ada_jobs, ada_open, bea_job,
                [upscale, reroll], bea_edit,
            )  # fmt: skip
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
    # ada's three finished jobs and her open one, and the two made from hers by others
    assert (report.jobs, report.prompts, report.images, report.inputs, report.cancelled) == (
        6, 6, 5, 6, 1
    )  # fmt: skip

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
    ] * 2
    assert [row["reason"] for row in tables["bans"]] == ["spam: [purged]"]
    forgot = [row for row in tables["moderation_actions"] if row["action"] == "forget"]
    assert [(row["actor_id"], row["target_user_id"], row["details"]) for row in forgot] == [
        (0, ADA, {"jobs": 6, "prompts": 6, "images": 5, "inputs": 6, "redis_entries": 0,
                  "cancelled": 1, "via": "cli"})
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
    await _made_from_ada_are_purged_and_stay_theirs(world)

    bea = await world.storage.audit.get_job(world.bea_job)
    assert bea is not None
    assert (bea.prompt, bea.user_id, bea.purged_at) == (BEA_PROMPT, BEA, None)
    assert [await asyncio.to_thread(_is_file, image.path) for image in bea.images] == [True]
    pngs = await world.storage.audit.input_pngs(world.bea_job)
    assert pngs is not None
    assert pngs.image == b"given-" + BEA_PROMPT.encode()
    # bea's edit keeps her prompt and her picture; the picture of ada's she gave it goes
    edit = await world.storage.audit.get_job(world.bea_edit)
    assert edit is not None
    assert (edit.prompt, edit.user_id, edit.purged_at) == (BEA_EDIT, BEA, None)
    assert [await asyncio.to_thread(_is_file, image.path) for image in edit.images] == [True]
    edit_pngs = await world.storage.audit.input_pngs(world.bea_edit)
    assert edit_pngs is not None
    assert edit_pngs.image is None


async def _made_from_ada_are_purged_and_stay_theirs(world: World) -> None:
    """The upscale bea made of ada's grid and the moderator's reroll of it: purged (they
    carried ada's prompt and pictures), their pictures gone, still bea's and the moderator's."""
    for job_id, owner in zip(world.made_from_ada, (BEA, MOD), strict=True):
        job = await world.storage.audit.get_job(job_id)
        assert job is not None
        assert (job.prompt, job.negative_prompt, job.user_id, job.purge_reason) == (
            "", "", owner, "forget"
        )  # fmt: skip
        assert [image.path for image in job.images] == [None]
        assert not (world.output_dir / f"job-{job_id}").exists()
        pngs = await world.storage.audit.input_pngs(job_id)
        assert pngs is not None
        assert pngs.image is None


async def test_forget_is_idempotent_and_says_nothing_was_left(world: World) -> None:
    first = await forget_member(world.service, user_id=ADA, guild_id=None, actor_id=MOD, via="mod")
    assert not first.nothing
    again = await forget_member(world.service, user_id=ADA, guild_id=None, actor_id=MOD, via="mod")
    assert again.nothing
    assert again.counts() == dict.fromkeys(again.counts(), 0)
    forgot = [row for row in (await _dump(world.storage))["moderation_actions"]
              if row["action"] == "forget"]  # fmt: skip
    assert [row["details"]["jobs"] for row in forgot] == [6, 0]  # each request is recorded
    bea = await world.storage.audit.get_job(world.bea_job)
    assert bea is not None
    assert bea.prompt == BEA_PROMPT


async def test_forget_in_one_guild_keeps_the_member_elsewhere(world: World) -> None:
    report = await forget_member(
        world.service, user_id=ADA, guild_id=GUILD, actor_id=MOD, via="mod"
    )
    # her job and her open one in GUILD, and the two made from hers there
    assert (report.jobs, report.images, report.cancelled) == (4, 3, 1)
    here, elsewhere, dm = [await world.storage.audit.get_job(i) for i in world.ada_jobs]
    assert here is not None
    assert (here.prompt, here.user_id) == ("", None)
    for kept in (elsewhere, dm):
        assert kept is not None
        assert (kept.prompt, kept.user_id, kept.purged_at) == (ADA_PROMPT, ADA, None)
        assert [await asyncio.to_thread(_is_file, image.path) for image in kept.images] == [True]
    await _made_from_ada_are_purged_and_stay_theirs(world)
    edit_pngs = await world.storage.audit.input_pngs(world.bea_edit)  # of her job elsewhere
    assert edit_pngs is not None
    assert edit_pngs.image is not None
    newest = (await world.storage.moderation.list(GUILD, user_id=ADA))[0]
    assert (newest.action, newest.details["jobs"], newest.details["via"]) == (
        "forget",
        2 + 2,
        "mod",
    )
    # the moderators' words in the other guild are that guild's: left as they were
    there = await world.storage.moderation.list(OTHER_GUILD, user_id=ADA)
    assert [(action.reason, action.details) for action in there] == [
        (f"kept asking for {ADA_PROMPT}", {"quoted": ADA_PROMPT})
    ]
    here_actions = await world.storage.moderation.list(GUILD, user_id=ADA)
    assert [action.reason for action in here_actions if action.action == "ban"] == [
        "kept asking for [purged]"
    ]
    tables = await _dump(world.storage)
    assert [row["reason"] for row in tables["bans"]] == ["spam: [purged]"]


@pytest.fixture
async def redis_world(world: World, redis_prefix: str) -> AsyncIterator[World]:
    """The world with its queue on real Redis: ada's open job queued there, and every
    finished job's entries as a job leaves them (its hash, events and result)."""
    queue = await RedisQueue.connect(REDIS_URL, prefix=redis_prefix)
    service = build_service(world.settings, world.storage, queue)
    client = queue.client
    for job_id in [*world.ada_jobs, world.bea_job, world.made_from_ada[0]]:
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
    # the keys that name members: ada's count of open jobs (her queued one), who each guild's
    # ring served last, and the rate-limit buckets
    for name, value in (
        (f"active:{GUILD}:{ADA}", "1"), (f"active:{GUILD}:{BEA}", "1"),
        (f"q:lastuser:{GUILD}", str(ADA)), (f"q:lastuser:{OTHER_GUILD}", str(BEA)),
        (f"rl:u:{GUILD}:{ADA}", "0"),
    ):  # fmt: skip
        await client.set(f"{redis_prefix}:{name}", value)
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
    # jobs, not keys: her three finished ones (hash, events, result), her open one (hash and
    # events: its cancel left one) and bea's upscale of her grid
    assert (report.redis_entries, report.cancelled) == (5, 1)
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
    for job_id in [*redis_world.ada_jobs, redis_world.ada_open, *redis_world.made_from_ada]:
        job = await redis_world.storage.audit.get_job(job_id)
        assert job is not None
        assert not any(job.uid in key for key in left)
    # her open-job count (0 once her job was cancelled) and the guild's mark of her go; bea's
    # stay, and so does her rate-limit bucket (deleting it would reset her limits)
    assert not any(key.endswith(f":{ADA}") and ":active:" in key for key in left)
    assert f"{redis_prefix}:q:lastuser:{GUILD}" not in left
    assert {
        f"{redis_prefix}:active:{GUILD}:{BEA}",
        f"{redis_prefix}:q:lastuser:{OTHER_GUILD}",
        f"{redis_prefix}:rl:u:{GUILD}:{ADA}",
    } <= left
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
        expected = {"deleted": False, "redis_entries": 1, "jobs": 1, "prompts": 1}
        assert json.loads(counted.stdout) | expected == json.loads(counted.stdout)
        assert await client.exists(f"{redis_prefix}:job:{job.uid}") == 1

        done = await asyncio.to_thread(sdbot, settings, "forget", str(ADA), "--yes", **env)
        assert done.returncode == 0, done.stderr
        assert "1 record (1 prompt purged" in done.stdout
        assert "1 job in Redis" in done.stdout
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


async def test_jobs_asked_for_while_the_forget_runs_are_cancelled_and_purged(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ada asks for a picture while her data is being deleted: the next round finds it open,
    cancels it and purges it, so the report never says deleted while a job of hers waits."""
    retention = world.storage.retention
    purge = retention.forget_member
    late: list[int] = []

    async def asking_meanwhile(*args: Any, **kwargs: Any) -> Any:
        if not late:
            late.append(await world.storage.audit.create_job(new_job(ADA, LATE_PROMPT, GUILD)))
        return await purge(*args, **kwargs)

    monkeypatch.setattr(retention, "forget_member", asking_meanwhile)
    report = await forget_member(world.service, user_id=ADA, guild_id=None, actor_id=MOD, via="mod")
    assert (report.cancelled, report.jobs, report.still_open) == (2, 7, ())
    job = await world.storage.audit.get_job(late[0])
    assert job is not None
    assert (job.status, job.prompt, job.user_id) == (JobStatus.CANCELLED, "", None)


async def test_a_member_asking_in_every_round_is_told_what_is_still_open(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    retention = world.storage.retention
    purge = retention.forget_member
    late: list[int] = []

    async def asking_meanwhile(*args: Any, **kwargs: Any) -> Any:
        late.append(await world.storage.audit.create_job(new_job(ADA, LATE_PROMPT, GUILD)))
        return await purge(*args, **kwargs)

    monkeypatch.setattr(retention, "forget_member", asking_meanwhile)
    report = await forget_member(world.service, user_id=ADA, guild_id=None, actor_id=MOD, via="mod")
    assert len(late) == FORGET_ROUNDS
    assert (report.still_open, report.cancelled, report.nothing) == ((late[-1],), 3, False)


async def test_forget_deletes_staged_pictures_and_the_sweep_removes_a_rename_that_landed_after(
    world: World,
) -> None:
    """A job's files are staged under ``.partial-UID`` until its outcome committed; a forget
    between the commit and the rename takes the staging and the job folders, and a rename that
    still lands after it (a process writing later) is removed by the next recovery sweep."""
    first, second = [await world.storage.audit.get_job(i) for i in world.ada_jobs[:2]]
    assert first is not None
    assert second is not None
    output = world.output_dir
    staging = output / f".partial-{first.uid}"
    again = output / f"job-{first.id}-{first.uid[:8]}"  # a reset database's second job-ID
    for folder in (staging, again):
        folder.mkdir()
        (folder / "variant-2.png").write_bytes(b"png of " + ADA_PROMPT.encode())

    report = await forget_member(world.service, user_id=ADA, guild_id=None, actor_id=MOD, via="mod")
    assert report.images == 5 + 2
    assert not any(path.exists() for path in (staging, again, output / f"job-{first.id}"))

    landed = output / f"job-{second.id}"
    landed.mkdir()
    (landed / "variant-1.png").write_bytes(b"late")
    staged = output / f".partial-{second.uid}"
    staged.mkdir()
    (staged / "grid.png").write_bytes(b"late")
    swept = await world.service.sweep_files()
    assert set(swept.removed) == {landed / "variant-1.png", staged}
    assert not landed.exists()
    assert not staged.exists()
    bea = await world.storage.audit.get_job(world.bea_job)
    assert bea is not None
    assert [await asyncio.to_thread(_is_file, image.path) for image in bea.images] == [True]


async def test_the_keys_naming_a_member_go_only_where_the_queue_no_longer_needs_them(
    redis_prefix: str,
) -> None:
    """``active:G:U`` counts the member's open jobs: it goes at 0, and stays while a job that
    did not stop holds it (its end must release it, or the member would pass their limit).
    ``q:lastuser:G`` goes when it names the member and they wait in no ring (then it changes
    no newcomer's place). The rate-limit bucket always stays."""
    import redis.asyncio as aioredis

    from generation.queue.redis.forget import forget_member_keys

    client = aioredis.Redis.from_url(REDIS_URL)
    p = redis_prefix
    try:
        await client.mset(
            {
                f"{p}:active:{GUILD}:{ADA}": "1",  # a job that did not stop
                f"{p}:q:lastuser:{GUILD}": str(ADA),
                f"{p}:active:{OTHER_GUILD}:{ADA}": "0",
                f"{p}:q:lastuser:{OTHER_GUILD}": str(ADA),
                f"{p}:active:-:{ADA}": "0",  # her command-line jobs
                f"{p}:active:{OTHER_GUILD}:{BEA}": "0",
                f"{p}:rl:u:{OTHER_GUILD}:{ADA}": "0",
            }
        )
        await client.rpush(f"{p}:q:users:{GUILD}", str(ADA))  # she waits in GUILD's ring

        await forget_member_keys(client, p, ADA, OTHER_GUILD)
        assert await client.exists(f"{p}:active:{OTHER_GUILD}:{ADA}") == 0
        assert await client.exists(f"{p}:q:lastuser:{OTHER_GUILD}") == 0
        assert await client.exists(f"{p}:active:-:{ADA}") == 1  # not in that guild

        await forget_member_keys(client, p, ADA, None)
        assert await client.exists(f"{p}:active:-:{ADA}") == 0
        assert await client.get(f"{p}:active:{GUILD}:{ADA}") == b"1"
        assert await client.get(f"{p}:q:lastuser:{GUILD}") == str(ADA).encode()
        for kept in (f"active:{OTHER_GUILD}:{BEA}", f"rl:u:{OTHER_GUILD}:{ADA}"):
            assert await client.exists(f"{p}:{kept}") == 1, kept
    finally:
        await client.aclose()


async def test_sdbot_forget_names_a_running_job_that_did_not_stop_and_exits_1(
    settings: Settings,
    redis_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A job a worker runs (in Redis, its state ``running``) that no worker stops: after
    ``STOP_WAIT_S`` it is recorded cancelled and purged, and the command says so on stderr
    and exits 1."""
    import argparse

    import redis.asyncio as aioredis

    import bot.ops.privacy as privacy
    from bot.cli.privacy import STOP_WAIT_HELP, run_forget

    assert f"{privacy.STOP_WAIT_S:g} s" == STOP_WAIT_HELP  # what `sdbot forget --help` says
    monkeypatch.setattr(privacy, "STOP_WAIT_S", 0.5)
    settings = settings.model_copy(update={"redis_url": REDIS_URL, "redis_prefix": redis_prefix})
    await asyncio.to_thread(migrations.upgrade, settings.effective_database_url())
    async with open_storage(settings.effective_database_url()) as storage:
        job_id = await storage.audit.create_job(new_job(ADA, ADA_PROMPT, GUILD))
        await storage.audit.mark_running(job_id)
        job = await storage.audit.get_job(job_id)
    assert job is not None
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        await client.hset(
            f"{redis_prefix}:job:{job.uid}",
            mapping={"payload": ADA_PROMPT, "state": "running", "guild": GUILD, "user": ADA},
        )
        args = argparse.Namespace(user=ADA, guild=None, yes=True, json=False)
        assert await run_forget(args, settings) == 1
    finally:
        await client.aclose()
    out, err = capsys.readouterr()
    assert f"running jobs {job_id} did not stop within 0.5 s: recorded cancelled and purged" in (
        err
    )
    assert "deleted for user" in out
    async with open_storage(settings.effective_database_url()) as storage:
        ended = await storage.audit.get_job(job_id)
    assert ended is not None
    assert (ended.status, ended.prompt, ended.user_id) == (JobStatus.CANCELLED, "", None)


async def test_sdbot_forget_will_not_strand_the_members_posts_in_discord(
    settings: Settings, tmp_path: Path
) -> None:
    """The command cannot reach Discord, and after it nothing finds the bot's posts of the
    member's jobs: it counts them, refuses --yes while there are some (naming the Discord
    commands that take them down), and deletes with --leave-posts."""
    from tests.test_cli import sdbot

    await asyncio.to_thread(migrations.upgrade, settings.effective_database_url())
    async with open_storage(settings.effective_database_url()) as storage:
        job_id = await finished_job(storage, tmp_path / "images", ADA, ADA_PROMPT, GUILD)
        await storage.posts.link_message(
            777_000_000_000_000_001, job_id, channel_id=3, guild_id=GUILD
        )

    counted = await asyncio.to_thread(sdbot, settings, "forget", str(ADA))
    assert counted.returncode == 0, counted.stderr
    assert "1 post of sdbot's in Discord shows these jobs" in counted.stdout
    refused = await asyncio.to_thread(sdbot, settings, "forget", str(ADA), "--yes")
    assert refused.returncode == 2
    assert "1 post of sdbot's in Discord shows these jobs" in refused.stderr
    assert "--leave-posts" in refused.stderr
    async with open_storage(settings.effective_database_url()) as storage:
        kept = await storage.audit.get_job(job_id)
        assert kept is not None
        assert kept.prompt == ADA_PROMPT  # nothing was deleted
    done = await asyncio.to_thread(sdbot, settings, "forget", str(ADA), "--yes", "--leave-posts")
    assert done.returncode == 0, done.stderr
    assert "1 record (1 prompt purged" in done.stdout
