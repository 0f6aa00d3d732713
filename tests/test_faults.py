"""Faults on real processes and real servers: a database locked by another process, a full
filesystem, `sdbot recover` beside a live process and beside another recover, a double SIGTERM.
Every job ends in one terminal state with its own pictures, and no picture is left without its
record."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from bot.app import open_storage
from bot.settings import Settings
from storage import migrations
from storage.audit import AuditLog
from storage.models import JobStatus, Verdict
from storage.records import JobRecord, NewJob
from tests.conftest import IN_CI, REDIS_URL
from tests.processes import read_log, wait_for_line

CEILING_S = 180  # generous: two cores shared with other test runs


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SDBOT_")} | {
        "SDBOT_MODEL": settings.model,
        "SDBOT_DATABASE_URL": settings.effective_database_url(),
        "SDBOT_DATA_DIR": str(settings.data_dir),
        "SDBOT_DEVICE": "cpu",
        "SDBOT_TORCH_THREADS": "1",
        "SDBOT_MAX_STEPS": "500",
        "HF_HUB_OFFLINE": "1",
        **extra,
    }


def _sdbot(settings: Settings, *args: str, **extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bot", *args],
        env=_env(settings, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its model process shares its group
    )


def _finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=CEILING_S)
    return process.returncode, out, err


def _kill(*processes: subprocess.Popen[str] | None) -> None:
    """Kills what still runs, and closes the pipes: after a failure (a timeout) an open pipe
    would fail a later test in this process with a ResourceWarning."""
    for process in processes:
        if process is None:
            continue
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        for pipe in (process.stdin, process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()


async def _wait_for(
    audit: AuditLog, status: JobStatus, process: subprocess.Popen[str] | None = None
) -> JobRecord:
    deadline = time.monotonic() + CEILING_S
    while time.monotonic() < deadline:
        jobs = await audit.list_jobs(newest_first=True, limit=1)
        if jobs and jobs[0].status is status:
            return jobs[0]
        if process is not None and process.poll() is not None:
            raise AssertionError(f"sdbot ended first: {process.communicate()}")
        await asyncio.sleep(0.1)
    raise AssertionError(f"no job reached {status.value}")


def _pictures(folder: Path) -> set[Path]:
    return {path.resolve() for path in folder.rglob("*") if path.is_file()}


def _resolved(paths: set[str]) -> set[Path]:
    return {Path(path).resolve() for path in paths}


async def _recorded(audit: AuditLog) -> set[Path]:
    return _resolved(await audit.image_paths())


def _entries(folder: Path) -> list[Path]:
    return list(folder.iterdir())


def _copy(source: str, target: Path) -> None:
    target.write_bytes(Path(source).read_bytes())


def _start_locker(database: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _LOCKER, database],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
async def migrated(settings: Settings) -> Settings:
    await asyncio.to_thread(migrations.upgrade, settings.effective_database_url())
    return settings


_LOCKER = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()  # until the test closes our stdin
connection.execute("COMMIT")
"""


async def test_a_database_locked_by_another_process_leaves_no_picture_without_a_record(
    migrated: Settings,
) -> None:
    """Another process holds the SQLite file in BEGIN EXCLUSIVE past the busy timeout while the
    job finishes: `sdbot imagine` fails with one line, writes no picture, and once the lock is
    gone `sdbot recover` runs the job again to its own recorded pictures."""
    output = migrated.effective_output_dir()
    database = migrated.effective_database_url().split("///", 1)[1]
    imagine = _sdbot(migrated, "imagine", "a red circle", "--steps", "150", "--variants", "2")
    locker: subprocess.Popen[str] | None = None
    try:
        async with open_storage(migrated) as storage:
            job = await _wait_for(storage.audit, JobStatus.RUNNING, imagine)
            locker = _start_locker(database)
            assert locker.stdout is not None
            assert await asyncio.to_thread(locker.stdout.readline) == "locked\n"
            code, _, err = await asyncio.to_thread(_finish, imagine)
            assert code == 1, err
            assert "Traceback" not in err
            assert err.strip().splitlines()[-1] == "sdbot: error: database: database is locked"
            assert _pictures(output) == set()  # nothing, not even a staging folder's files
            assert locker.stdin is not None
            locker.stdin.close()
            assert locker.wait(timeout=30) == 0
            locker.stdout.close()

            left = await storage.audit.get_job(job.id)
            assert left is not None
            assert left.status is JobStatus.RUNNING
            code, out, err = await asyncio.to_thread(_finish, _sdbot(migrated, "recover", "--json"))
            assert code == 0, err
            [outcome] = [json.loads(line) for line in out.splitlines()]
            assert (outcome["job_id"], outcome["status"]) == (job.id, "succeeded")
            record = await storage.audit.get_job(job.id)
            assert record is not None
            assert (record.status, record.attempts, len(record.images)) == (
                JobStatus.SUCCEEDED,
                2,
                3,
            )
            assert _pictures(output) == await _recorded(storage.audit)
            assert len(_pictures(output)) == 3
    finally:
        _kill(imagine)
        if locker is not None:
            if locker.poll() is None:
                locker.kill()
                locker.wait(timeout=30)
            for pipe in (locker.stdin, locker.stdout):
                if pipe is not None:
                    pipe.close()


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A real filesystem with room for about one picture: a 40 KiB tmpfs (needs root)."""
    folder = tmp_path / "full"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=40k", "tmpfs", str(folder)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:  # CI runs as root: there it must run
        why = f"cannot mount a tmpfs here (root only): {mounted.stderr.decode().strip()}"
        if IN_CI:
            pytest.fail(why)
        pytest.skip(why)
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


async def test_a_full_filesystem_fails_the_job_with_the_reason_and_leaves_no_file(
    migrated: Settings, full_disk: Path
) -> None:
    code, out, err = await asyncio.to_thread(
        _finish, _sdbot(migrated, "imagine", "a red circle", "--out", str(full_disk), "--json")
    )
    assert code == 1, err
    outcome = json.loads(out)
    assert outcome["status"] == "failed"
    assert outcome["error"].startswith("cannot save: [Errno 28] No space left on device")
    assert _entries(full_disk) == []  # the pictures that fitted went with the rest
    async with open_storage(migrated) as storage:
        record = await storage.audit.get_job(outcome["job_id"])
        assert record is not None
        assert (record.status, record.error, record.images) == (
            JobStatus.FAILED,
            outcome["error"],
            (),
        )


async def test_recover_leaves_a_job_that_a_live_process_runs(migrated: Settings) -> None:
    """A slow `sdbot imagine` and a `sdbot recover` at the same time: the job runs once."""
    imagine = _sdbot(migrated, "imagine", "a red circle", "--steps", "200", "--json")
    try:
        async with open_storage(migrated) as storage:
            job = await _wait_for(storage.audit, JobStatus.RUNNING, imagine)
            assert job.lease_owner is not None
            assert f":{imagine.pid}:" in job.lease_owner
            code, out, err = await asyncio.to_thread(_finish, _sdbot(migrated, "recover", "--json"))
            assert code == 0, err
            assert [json.loads(line) for line in out.splitlines()] == [
                {"job_id": job.id, "status": "running", "held_by": job.lease_owner}
            ]
            code, out, err = await asyncio.to_thread(_finish, imagine)
            assert code == 0, err
            record = await storage.audit.get_job(job.id)
            assert record is not None
            assert (record.status, record.attempts, len(record.images)) == (
                JobStatus.SUCCEEDED,
                1,
                5,
            )
            assert (record.lease_owner, record.lease_expires_at) == (None, None)
    finally:
        _kill(imagine)


def _open_job(prompt: str, seed: int) -> NewJob:
    return NewJob(
        source="cli", prompt=prompt, negative_prompt="", steps=4, guidance_scale=3.0,
        width=64, height=64, variants=2, scheduler="dpmpp", model="embedded",
        seeds=(seed, seed + 1), verdict=Verdict.ALLOWED,
    )  # fmt: skip


async def test_two_recovers_at_once_end_each_job_exactly_once(migrated: Settings) -> None:
    output = migrated.effective_output_dir()
    prompts = ["a red circle", "a blue square", "a green triangle", "a yellow circle"]
    async with open_storage(migrated) as storage:
        ids = [
            await storage.audit.create_job(_open_job(prompt, 10 * n))
            for n, prompt in enumerate(prompts)
        ]
        # What a crash left: a staging folder of a job with no record, and a picture no record
        # names (a run before a database reset).
        (output / ".partial-0123456789abcdef0123456789abcdef").mkdir(parents=True)
        (output / ".partial-0123456789abcdef0123456789abcdef" / "grid.png").write_bytes(b"x")
        (output / "job-99").mkdir()
        (output / "job-99" / "variant-1.png").write_bytes(b"x")

        first, second = _sdbot(migrated, "recover", "--json"), _sdbot(migrated, "recover", "--json")
        try:
            (_, out_first, err_first), (_, out_second, err_second) = await asyncio.gather(
                asyncio.to_thread(_finish, first), asyncio.to_thread(_finish, second)
            )
        finally:
            _kill(first, second)
        lines = [json.loads(line) for line in (out_first + out_second).splitlines()]
        finished = sorted(line["job_id"] for line in lines if "held_by" not in line)
        assert finished == ids, (err_first, err_second)  # each job delivered by one of them
        for job_id in ids:
            record = await storage.audit.get_job(job_id)
            assert record is not None
            assert (record.status, record.attempts, len(record.images)) == (
                JobStatus.SUCCEEDED,
                1,
                3,
            ), (err_first, err_second)
        assert _pictures(output) == await _recorded(storage.audit)
        assert len(_pictures(output)) == 3 * len(ids)


async def test_a_double_sigterm_on_redis_records_the_job_cancelled(
    migrated: Settings, redis_prefix: str
) -> None:
    """As `timeout` does: two SIGTERMs at once. The record ends cancelled, as Redis says, in
    every run (it stayed queued in 2 of 3 before)."""
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        async with open_storage(migrated) as storage:
            for run in range(3):
                imagine = _sdbot(
                    migrated,
                    "imagine",
                    f"a red circle number {run}",
                    SDBOT_REDIS_URL=REDIS_URL,
                    SDBOT_REDIS_PREFIX=redis_prefix,
                )
                try:
                    job = await _wait_for(storage.audit, JobStatus.QUEUED, imagine)
                    deadline = time.monotonic() + CEILING_S
                    while not await client.exists(f"{redis_prefix}:job:{job.uid}"):
                        assert time.monotonic() < deadline, "the job never reached Redis"
                        await asyncio.sleep(0.05)
                    imagine.send_signal(signal.SIGTERM)
                    imagine.send_signal(signal.SIGTERM)
                    code, _, err = await asyncio.to_thread(_finish, imagine)
                finally:
                    _kill(imagine)
                assert code == 130, err
                record = await storage.audit.get_job(job.id)
                assert record is not None
                assert (record.status, record.error) == (JobStatus.CANCELLED, "cancelled"), err
                state = await client.hget(f"{redis_prefix}:job:{job.uid}", "state")
                assert state == b"done"
    finally:
        await client.aclose()


def _worker(settings: Settings, redis_url: str, prefix: str, log: Path) -> subprocess.Popen[str]:
    with log.open("w") as stderr:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "bot", "worker", "--name", "w1"],
            env=_env(settings, SDBOT_REDIS_URL=redis_url, SDBOT_REDIS_PREFIX=prefix),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            text=True,
            start_new_session=True,
        )


_wait_for_text = wait_for_line


async def test_a_reset_database_hands_out_job_1_again_and_it_draws_its_own_pictures(
    migrated: Settings, redis_prefix: str, tmp_path: Path
) -> None:
    """Job 1 runs on Redis; the database is reset (a fresh SQLite file, `sdbot db upgrade`);
    the new job 1 must not read the old one's events or result (they were keyed by id and
    lived a day), and `sdbot trace` of the old picture must not point to the new row."""
    log = tmp_path / "worker.log"
    worker = _worker(migrated, REDIS_URL, redis_prefix, log)
    redis = {"SDBOT_REDIS_URL": REDIS_URL, "SDBOT_REDIS_PREFIX": redis_prefix}
    try:
        await _wait_for_text(log, "taking jobs from")
        code, out, err = await asyncio.to_thread(
            _finish, _sdbot(migrated, "imagine", "a red circle", "--seed", "1", "--json", **redis)
        )
        assert code == 0, err
        old = json.loads(out)
        assert old["job_id"] == 1
        kept = tmp_path / "old-variant-1.png"  # a picture that left the system
        _copy(old["images"][0]["path"], kept)

        fresh = migrated.model_copy(
            update={"database_url": f"sqlite+aiosqlite:///{tmp_path / 'reset.db'}"}
        )
        code, _, err = await asyncio.to_thread(_finish, _sdbot(fresh, "db", "upgrade"))
        assert code == 0, err
        code, out, err = await asyncio.to_thread(
            _finish,
            _sdbot(fresh, "imagine", "a blue square", "--seed", "50", "--json", **redis),
        )
        assert code == 0, err
        new = json.loads(out)
        assert (new["job_id"], new["status"], new["seeds"]) == (1, "succeeded", [50, 51, 52, 53])
        old_hashes = {image["sha256"] for image in old["images"]}
        assert not old_hashes & {image["sha256"] for image in new["images"]}
        async with open_storage(fresh) as storage:
            record = await storage.audit.get_job(1)
            assert record is not None
            assert (record.prompt, record.attempts) == ("a blue square", 1)
            assert {image.sha256 for image in record.images} == {
                image["sha256"] for image in [*new["images"], new["grid"]]
            }
            assert Path(new["images"][0]["path"]).parent.name.startswith("job-1-")

        code, out, err = await asyncio.to_thread(_finish, _sdbot(fresh, "trace", str(kept)))
        assert code == 4, out
        assert "this database's job 1 made another picture" in err
        assert "a blue square" not in out
        code, out, err = await asyncio.to_thread(
            _finish, _sdbot(fresh, "trace", new["images"][0]["path"])
        )
        assert code == 0, err
        assert "a blue square" in out
    finally:
        _kill(worker)


async def test_a_follower_rejects_events_and_results_of_another_job(redis_prefix: str) -> None:
    from generation.options import GenerationOptions
    from generation.protocol import Progress, WorkRequest
    from generation.queue import Failed, QueuedJob
    from generation.queue.redis import RedisQueue
    from moderation.policy import ImagePolicy

    queue = await RedisQueue.connect(REDIS_URL, prefix=redis_prefix)
    try:
        options = GenerationOptions("a red circle", "", (1,), 4, 3.0, 64, 64, "dpmpp")
        policy = ImagePolicy(threshold=0.5, strict_threshold=0.3)
        job = QueuedJob(WorkRequest(1, options, policy), None, None, uid="a" * 32)
        handle = await queue.submit(job)
        stream = f"{redis_prefix}:ev:{job.uid}"
        other = "b" * 32
        await queue.client.xadd(stream, {"type": "done", "uid": other})  # not ours
        await queue.client.xadd(stream, {"type": "progress", "step": 1, "total": 4, "uid": job.uid})
        await queue.client.hset(
            f"{redis_prefix}:result:{job.uid}", mapping={"meta": json.dumps({"uid": other})}
        )
        await queue.client.xadd(stream, {"type": "done", "uid": job.uid})
        events = [event async for event in handle.events() if not hasattr(event, "ahead")]
        assert events[0] == Progress(1, 1, 4)
        assert events[-1] == Failed(
            f"rejected the result in Redis: the result belongs to job uid {other!r}, not "
            f"{job.uid!r}"
        )
        assert len(events) == 2
    finally:
        await queue.close()


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class OwnRedis:
    """A redis-server of this test's own, on its own port, that it kills and starts again."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = _free_port()
        self.folder = tmp_path
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def _spawn(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    async def start(self) -> None:
        self._spawn()
        client = aioredis.Redis.from_url(self.url)
        deadline = time.monotonic() + 30
        try:
            while True:
                try:
                    await client.ping()
                    return
                except aioredis.ConnectionError:
                    assert time.monotonic() < deadline, "redis-server did not start"
                    await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


async def test_redis_dying_mid_job_fails_the_waiting_job_and_the_worker_carries_on(
    migrated: Settings, tmp_path: Path
) -> None:
    if shutil.which("redis-server") is None:  # CI starts Redis from it: there it must run
        if IN_CI:
            pytest.fail("redis-server is not installed")
        pytest.skip("redis-server is not installed")
    server = OwnRedis(tmp_path)
    await server.start()
    log = tmp_path / "worker.log"
    worker = _worker(migrated, server.url, "sdbot", log)
    redis = {"SDBOT_REDIS_URL": server.url, "SDBOT_REDIS_PREFIX": "sdbot"}
    imagine: subprocess.Popen[str] | None = None
    try:
        await _wait_for_text(log, "taking jobs from")
        async with open_storage(migrated) as storage:
            # 1. Redis dies mid-job and comes back empty: the job fails at once with why (its
            # keys are gone), long before the bound.
            imagine = _sdbot(
                migrated, "imagine", "a red circle", "--steps", "400", "--json",
                SDBOT_REDIS_LOST_S="600", **redis,
            )  # fmt: skip
            first = await _wait_for(storage.audit, JobStatus.RUNNING, imagine)
            server.kill()
            await server.start()
            code, out, err = await asyncio.to_thread(_finish, imagine)
            assert code == 1, err
            outcome = json.loads(out)
            assert outcome["status"] == "failed"
            assert outcome["error"] == "Redis lost the job (it restarted without its data)"
            record = await storage.audit.get_job(first.id)
            assert record is not None
            assert record.status is JobStatus.FAILED

            # 2. The worker made its consumer group again: the next job runs on it.
            code, out, err = await asyncio.to_thread(
                _finish, _sdbot(migrated, "imagine", "a blue square", "--json", **redis)
            )
            assert code == 0, (err, read_log(log))
            assert json.loads(out)["status"] == "succeeded"
            assert "made it again" in read_log(log)

            # 3. Redis dies and stays away: the waiting job fails after SDBOT_REDIS_LOST_S.
            imagine = _sdbot(
                migrated, "imagine", "a green triangle", "--steps", "400", "--json",
                SDBOT_REDIS_LOST_S="3", **redis,
            )  # fmt: skip
            third = await _wait_for(storage.audit, JobStatus.RUNNING, imagine)
            server.kill()
            lost_at = time.monotonic()
            code, out, err = await asyncio.to_thread(_finish, imagine)
            waited = time.monotonic() - lost_at
            assert code == 1, err
            outcome = json.loads(out)
            assert outcome["error"].startswith("lost the Redis queue for "), outcome
            assert "(SDBOT_REDIS_LOST_S is 3)" in outcome["error"]
            assert 3 <= waited < 60
            record = await storage.audit.get_job(third.id)
            assert record is not None
            assert record.status is JobStatus.FAILED
    finally:
        _kill(imagine, worker)
        server.kill()
