"""/readyz follows what the process needs, for real: a private redis-server killed, hung
(SIGSTOP) and started again on its port, and the real PostgreSQL behind a TCP proxy that the
test closes (refusing and dropping connections) and opens again. Meanwhile /metrics answers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import REGISTRY
from sqlalchemy.engine import make_url

from bot.ops.health import CHECK_TIMEOUT_S, RedisCheck, database_check
from bot.ops.server import MetricsServer, queue_depth, serving
from generation.queue.redis import RedisQueue
from storage import migrations
from storage.repositories import open_storage
from tests.conftest import IN_CI


def _free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return int(probe.getsockname()[1])


async def _get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def _until(server: MetricsServer, status: int, within: float = 60) -> dict[str, Any]:
    """/readyz's body once it answers ``status`` (``within``: a ceiling for a busy machine)."""
    readyz = server.url.removesuffix("/metrics") + "/readyz"
    seen: tuple[int, str] = (0, "")
    for _ in range(int(within / 0.2)):
        seen = await _get(readyz)
        if seen[0] == status:
            return dict(json.loads(seen[1]))
        await asyncio.sleep(0.2)
    raise AssertionError(f"/readyz never answered {status} in {within} s; last: {seen}")


def _ready(check: str) -> float | None:
    return REGISTRY.get_sample_value("sdbot_ready", {"check": check})


class PrivateRedis:
    """A redis-server of this test's own on ``port``, without persistence."""

    def __init__(self, port: int, folder: Path) -> None:
        self.port, self.folder = port, folder
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def launch(self) -> None:
        options = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), *options, "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    async def start(self) -> None:
        self.launch()
        for _ in range(300):  # until it listens (a ceiling of 30 s)
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            await asyncio.sleep(0.1)
        raise AssertionError(f"redis-server did not listen on {self.port}")

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a paused one cannot die otherwise
            self.process.kill()
            self.process.wait(30)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        if IN_CI:
            pytest.fail("redis-server is not installed; CI must run this test")
        pytest.skip("redis-server is not installed: install it to run this test")
    server = PrivateRedis(_free_port(), tmp_path)
    try:
        yield server
    finally:
        server.kill()


async def test_readyz_names_redis_while_it_is_down_or_hangs_and_recovers(
    redis_server: PrivateRedis,
) -> None:
    await redis_server.start()
    check = RedisCheck(redis_server.url)
    queue = await RedisQueue.connect(redis_server.url, prefix="sdbot-readyz")
    try:
        async with serving(
            "127.0.0.1", 0, role="run", checks=[check.check()], refresh=[queue_depth(queue)]
        ) as server:
            assert await _until(server, 200) == {"ready": True, "checks": {"redis": "ok"}}
            assert _ready("redis") == 1

            redis_server.kill()
            body = await _until(server, 503)
            assert body["ready"] is False
            assert "Connect" in body["checks"]["redis"], body  # ConnectionError: refused
            assert _ready("redis") == 0
            assert (await _get(server.url))[0] == 200  # the scrape answers without Redis

            await redis_server.start()  # the same port, empty
            await _until(server, 200)
            assert _ready("redis") == 1

            # A Redis that takes connections but never answers: the check gives up in 2 s,
            # the scrape's queue depth in 1 s.
            redis_server.signal(signal.SIGSTOP)
            body = await _until(server, 503)
            assert body["checks"]["redis"] == f"no answer within {CHECK_TIMEOUT_S:g} s"
            assert (await _get(server.url))[0] == 200
            redis_server.signal(signal.SIGCONT)
            await _until(server, 200)

            # A scrape alone runs the checks too: sdbot_ready moves (and its alert can fire)
            # where nothing asks /readyz.
            redis_server.kill()
            for _ in range(100):
                assert (await _get(server.url))[0] == 200
                if _ready("redis") == 0:
                    break
            assert _ready("redis") == 0
    finally:
        await check.close()
        await queue.close()


class Proxy:
    """A TCP proxy in front of PostgreSQL that the test closes (the port refuses, every
    connection through it drops) and opens again on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._connect, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        await self._server.wait_closed()

    async def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(
            self._pump(reader, up_writer), self._pump(up_reader, writer), return_exceptions=True
        )

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            self._writers.discard(writer)
            writer.transport.abort()


@contextlib.asynccontextmanager
async def proxied(url: str) -> AsyncIterator[tuple[Proxy, str]]:
    parsed = make_url(url)
    proxy = Proxy((parsed.host or "127.0.0.1", parsed.port or 5432))
    await proxy.open()
    try:
        yield proxy, parsed.set(port=proxy.port).render_as_string(hide_password=False)
    finally:
        await proxy.close()


async def test_readyz_names_the_database_while_it_cannot_be_reached_and_recovers(
    postgres_url: str,
) -> None:
    await asyncio.to_thread(migrations.upgrade, postgres_url)
    async with (
        proxied(postgres_url) as (proxy, url),
        open_storage(url) as storage,
        serving("127.0.0.1", 0, role="run", checks=[database_check(storage)]) as server,
    ):
        assert await _until(server, 200) == {"ready": True, "checks": {"database": "ok"}}
        assert _ready("database") == 1

        await proxy.close()  # the pooled connection drops, new ones are refused
        body = await _until(server, 503)
        assert body["checks"]["database"] != "ok", body
        assert _ready("database") == 0

        await proxy.open()
        await _until(server, 200)
        assert _ready("database") == 1
