"""The metrics port of `sdbot run` and `sdbot worker`: ``/metrics`` for Prometheus, ``/livez``
and ``/readyz`` for a load balancer, compose or Kubernetes.

It runs in the process's own event loop, so ``/livez`` answering means the loop answers. Before
each ``/metrics`` render the refresh hooks run (the queue depth, one Redis round trip), under a
short timeout so that a dead Redis never hangs a scrape: the gauges then keep their last value
and ``/readyz`` says what is wrong. ``/readyz`` runs the checks of :mod:`bot.ops.health` and
answers 200 or 503 with each check's verdict as JSON.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Literal

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from bot.ops import system
from bot.ops.health import (
    OK,
    Check,
    RedisCheck,
    database_check,
    gateway_check,
    model_check,
    run_checks,
)
from common.metrics import BUILD_INFO, PRICE_PER_DEVICE_HOUR, QUEUE_JOBS, precreate_models

if TYPE_CHECKING:
    import discord

    from bot.settings import Settings
    from generation.queue import JobQueue
    from generation.supervisor import WorkerSupervisor
    from storage.repositories import Storage

log = logging.getLogger(__name__)

REFRESH_TIMEOUT_S = 1.0
Refresh = Callable[[], Awaitable[None]]
Role = Literal["run", "worker"]


@dataclass(frozen=True)
class MetricsServer:
    """Where the metrics port listens (``port``: the one bound, also when 0 was asked)."""

    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"


def queue_depth(queue: JobQueue) -> Refresh:
    """A refresh hook: ``sdbot_queue_jobs{state}`` from ``queue.depth()``."""

    async def refresh() -> None:
        depth = await queue.depth()
        QUEUE_JOBS.labels("queued").set(depth.queued)
        QUEUE_JOBS.labels("running").set(depth.running)

    return refresh


def describe_process(role: Role, price_per_device_hour: float) -> None:
    """``sdbot_build_info`` (version, role) and ``sdbot_price_per_device_hour``."""
    try:
        version = metadata.version("sdbot")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        version = "unknown"
    BUILD_INFO.info({"version": version, "role": role})
    PRICE_PER_DEVICE_HOUR.set(price_per_device_hour)


@asynccontextmanager
async def serving(
    host: str,
    port: int,
    *,
    role: Role,
    price_per_device_hour: float = 0.0,
    checks: Sequence[Check] = (),
    refresh: Sequence[Refresh] = (),
    model_pid: Callable[[], int | None] | None = None,
) -> AsyncIterator[MetricsServer]:
    """Serves the metrics port on ``host:port`` (0: any free port) until the block ends.

    ``model_pid`` gives the model process's pid for its gauges (None: no model process here).
    Raises OSError naming the address when it cannot be bound."""
    describe_process(role, price_per_device_hour)
    system.follow_model(model_pid)
    routes = _Routes(tuple(checks), tuple(refresh))
    app = web.Application()
    app.router.add_get("/metrics", routes.metrics)
    app.router.add_get("/livez", routes.livez)
    app.router.add_get("/readyz", routes.readyz)
    sock = _bind(host, port)
    runner = web.AppRunner(app, access_log=None)  # a scrape every 15 s is not news
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        yield MetricsServer(host, sock.getsockname()[1])
    finally:
        await runner.cleanup()
        sock.close()


@asynccontextmanager
async def bot_metrics(
    settings: Settings,
    storage: Storage,
    queue: JobQueue,
    client: Callable[[], discord.Client | None],
) -> AsyncIterator[MetricsServer | None]:
    """`sdbot run`'s metrics port, when SDBOT_METRICS_PORT is set (else None): ready when its
    model (when it runs one here), database, Redis (when set) and gateway (``client()``, the
    client running now) are."""
    from generation.queue import LocalQueue

    if settings.metrics_port is None:
        yield None
        return
    supervisor = queue.supervisor if isinstance(queue, LocalQueue) else None
    checks = [model_check(supervisor)] if supervisor is not None else []
    if supervisor is not None:
        _count_models(settings)
    checks.append(database_check(storage))
    async with _redis_check(settings.redis_url) as redis:
        checks += [*redis, gateway_check(client)]
        async with serving(
            settings.metrics_host,
            settings.metrics_port,
            role="run",
            price_per_device_hour=settings.price_per_device_hour,
            checks=checks,
            refresh=[queue_depth(queue)],
            model_pid=None if supervisor is None else lambda: supervisor.pid,
        ) as server:
            yield server


@asynccontextmanager
async def worker_metrics(
    settings: Settings, supervisor: WorkerSupervisor, port: int | None = None
) -> AsyncIterator[MetricsServer | None]:
    """`sdbot worker`'s metrics port on ``port`` (default: SDBOT_METRICS_PORT; neither: None):
    ready when its model is loaded and its Redis answers. It has no database."""
    port = settings.metrics_port if port is None else port
    if port is None:
        yield None
        return
    _count_models(settings)
    async with (
        _redis_check(settings.redis_url) as redis,
        serving(
            settings.metrics_host,
            port,
            role="worker",
            price_per_device_hour=settings.price_per_device_hour,
            checks=[model_check(supervisor), *redis],
            model_pid=lambda: supervisor.pid,
        ) as server,
    ):
        yield server


def _count_models(settings: Settings) -> None:
    """The work counters of every catalog model at 0, in a process that runs them."""
    precreate_models(entry.name for entry in settings.catalog().models)


@asynccontextmanager
async def _redis_check(url: str | None) -> AsyncIterator[list[Check]]:
    if not url:
        yield []
        return
    redis = RedisCheck(url)
    try:
        yield [redis.check()]
    finally:
        await redis.close()


def _bind(host: str, port: int) -> socket.socket:
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family)
    except OSError as error:
        raise OSError(
            error.errno,
            f"the metrics port cannot listen on {host}:{port} ({error.strerror or error}); "
            "set SDBOT_METRICS_PORT to a free port, or 0 for any",
        ) from error


@dataclass(frozen=True)
class _Routes:
    checks: tuple[Check, ...]
    refresh: tuple[Refresh, ...]

    async def metrics(self, request: web.Request) -> web.Response:
        # The checks run on every scrape too, so that sdbot_ready moves (and its alert fires)
        # where nothing asks /readyz; each is bounded (CHECK_TIMEOUT_S), as the hooks are.
        await asyncio.gather(_refresh(self.refresh), run_checks(self.checks))
        body = await asyncio.to_thread(generate_latest, REGISTRY)  # NVML and /proc reads block
        response = web.Response(body=body)
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def livez(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(self, request: web.Request) -> web.Response:
        verdicts = await run_checks(self.checks)
        ready = all(verdict == OK for verdict in verdicts.values())
        return web.json_response({"ready": ready, "checks": verdicts}, status=200 if ready else 503)


async def _refresh(hooks: Sequence[Refresh]) -> None:
    """Runs the hooks at once; one that fails or takes too long leaves its gauges as they were."""
    results = await asyncio.gather(
        *(asyncio.wait_for(hook(), REFRESH_TIMEOUT_S) for hook in hooks), return_exceptions=True
    )
    for result in results:
        if isinstance(result, TimeoutError):
            log.warning("a metrics refresh took over %g s; its gauges kept", REFRESH_TIMEOUT_S)
        elif isinstance(result, Exception):
            log.warning("a metrics refresh failed; its gauges kept ◆ %r", result)
