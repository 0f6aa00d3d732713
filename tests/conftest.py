"""Shared fixtures: real SQLite files, a real PostgreSQL database, the embedded model.

PostgreSQL and Redis tests run whenever the servers answer. Without them a developer's run skips
those tests with a notice; in CI (CI=true) an unreachable server fails the run instead.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy.engine import make_url

from bot.imagine.service import ImagineService
from bot.settings import Settings
from fake_discord import Channel, FakeDiscord, Guild, User
from generation.models import EMBEDDED_MODEL_DIR
from storage import migrations
from storage.engine import SessionFactory, create_engine, create_session_factory

if TYPE_CHECKING:
    from bot.discord.client import ImagineBot

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a model hub

POSTGRES_URL = os.environ.get(
    "SDBOT_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
# Under pytest-xdist (make test) each worker process has its own name: the databases and Redis
# prefixes a test makes carry it, so that tests running at once can never pick the same name.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
_UNREACHABLE = " is not reachable at "
if "PYTEST_XDIST_WORKER_COUNT" in os.environ and "OMP_NUM_THREADS" not in os.environ:
    # xdist's processes share the cores: torch in each (the tests that draw in-process) takes its
    # share of them, as on 2 cores two processes with a thread per core wait on each other's
    # threads (tests/test_lora_style.py). A worker process sdbot starts sets its own count.
    _cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    _share = (_cores or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    os.environ["OMP_NUM_THREADS"] = str(max(1, _share))


def _reachable(url: str, default_port: int) -> bool:
    parsed = make_url(url)
    try:
        with socket.create_connection((parsed.host or "127.0.0.1", parsed.port or default_port), 1):
            return True
    except OSError:
        return False


def require_service(name: str, url: str, default_port: int) -> None:
    if _reachable(url, default_port):
        return
    where = make_url(url).render_as_string(hide_password=True)
    message = f"{name}{_UNREACHABLE}{where}"
    if IN_CI:
        pytest.fail(f"{message}; CI must run these tests (.ci/run starts the server)")
    pytest.skip(f"{message}: start it to run this test")


# The slowest files, slowest first (a fresh clone's whole run, one process, CI's 2-core machine:
# 226, 120, 116, 112, 94 and 85 s). Under xdist (make test: --dist loadfile, files in this order
# with --no-loadscope-reorder) they start first, so that the processes finish near together
# rather than one running a long file at the end while the other waits.
SLOW_FIRST = (
    "test_cli.py",
    "test_cli_pictures.py",
    "test_faults.py",
    "test_discord_faults.py",
    "test_discord_controls.py",
    "test_service_queue.py",
    "test_logs.py",
    "test_discord_privacy.py",
    "test_metrics_work.py",
    "test_prometheus.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if WORKER == "main":
        return  # one process: the files in their usual order
    rank = {name: index for index, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    # Read from the skips' reports, which reach this process from xdist's workers too.
    missing = set()
    for report in terminalreporter.stats.get("skipped", []):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else ""
        if _UNREACHABLE in reason:
            missing.add(reason.removeprefix("Skipped: ").split(_UNREACHABLE)[0])
    for name in sorted(missing):
        terminalreporter.write_line(
            f"NOTICE: {name} tests were skipped because the server is not running", yellow=True
        )


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The embedded model the project ships (SDBOT_TEST_MODEL overrides it for experiments)."""
    path = Path(os.environ.get("SDBOT_TEST_MODEL", EMBEDDED_MODEL_DIR))
    assert (path / "model_index.json").is_file(), f"no model at {path}"
    return path


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'sdbot.db'}"


def _postgres_admin_url() -> str:
    return make_url(POSTGRES_URL).set(drivername="postgresql").render_as_string(False)


async def _admin(statement: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(_postgres_admin_url())
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A brand-new PostgreSQL database for one test, dropped afterwards."""
    require_service("PostgreSQL", POSTGRES_URL, 5432)
    name = f"sdbot_test_{WORKER}_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(False)
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test that takes this runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'sdbot.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[SessionFactory]:
    """A migrated database (through Alembic, as users get it) and its session factory."""
    await asyncio.to_thread(migrations.upgrade, database_url)
    engine = create_engine(database_url)
    try:
        yield create_session_factory(engine)
    finally:
        await engine.dispose()


@pytest.fixture
def settings(tmp_path: Path, model_dir: Path, sqlite_url: str) -> Settings:
    """Settings as a user would have them, in a scratch data folder, on the embedded model."""
    return Settings(
        _env_file=None,  # type: ignore[call-arg]  # pydantic-settings' init-only option
        model=str(model_dir),
        data_dir=tmp_path / "data",
        database_url=sqlite_url,
        device="cpu",
    )


@pytest.fixture
async def service(settings: Settings) -> AsyncIterator[ImagineService]:
    """The moderated path on a migrated SQLite file, with its queue and worker process."""
    from bot.app import open_service, open_storage

    await asyncio.to_thread(migrations.upgrade, settings.effective_database_url())
    async with open_storage(settings) as storage, open_service(settings, storage) as service:
        yield service


@pytest.fixture
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    """A fresh fake Discord, with discord.py pointed at it the way the bot is: by its settings."""
    from bot.discord import endpoints

    server = await FakeDiscord().start()
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        discord_api_url=server.api_url,
        discord_gateway_url=server.gateway_url,
    )
    before = endpoints.use(endpoints.from_settings(settings))
    try:
        yield server
    finally:
        endpoints.use(before)
        await server.close()
    server.check()  # no route the fake does not know, no failure inside it


__all__ = ["IN_CI", "REDIS_URL", "require_service"]


REDIS_URL = os.environ.get("SDBOT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A Redis key prefix of this test's own (on the shared server), deleted afterwards."""
    import redis.asyncio as aioredis

    require_service("Redis", REDIS_URL, 6379)
    name = f"sdbot-test-{WORKER}-{uuid.uuid4().hex[:10]}"
    yield name
    client = aioredis.Redis.from_url(REDIS_URL)
    keys = [key async for key in client.scan_iter(f"{name}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
def world(fake_discord: FakeDiscord) -> tuple[Guild, Channel, User]:
    """A guild with an ``images`` channel and one member, ada."""
    guild = fake_discord.create_guild("art club")
    channel = fake_discord.create_channel(guild, "images")
    member = fake_discord.create_user("ada")
    fake_discord.add_member(guild, member)
    return guild, channel, member


@pytest.fixture
async def bot(
    fake_discord: FakeDiscord, service: ImagineService, world: object
) -> AsyncIterator[ImagineBot]:
    """The real bot, logged in to the fake Discord, on the service and its worker."""
    from bot.discord.client import ImagineBot
    from fake_discord.client import running

    client = ImagineBot(service, edit_every_s=0.2, notice_s=5.0, guild_ready_timeout=0.05)
    async with running(fake_discord, client):
        yield client
