"""A real Prometheus server scrapes a real `sdbot worker` and a real `sdbot run` (on Redis and the
fake Discord) while members make images, and its HTTP API shows the job counters and histograms
moving; every query of the dashboard and every alert runs on it.

The Prometheus server is Debian's ``prometheus`` package (.ci/run installs it). Without it, or
without Redis, the test is skipped with the reason; in CI it fails instead.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from bot.discord.render import CONTROLS
from bot.settings import Settings
from fake_discord import Channel, FakeDiscord, Guild, Interaction, Message, User
from storage import migrations
from tests.conftest import REDIS_URL
from tests.processes import read_log, wait_for_line
from tests.test_deploy import (
    PROMETHEUS_DIR,
    SDBOT_SERVICES,
    alerts,
    compose_config,
    dashboard_queries,
    health_exit,
    healthcheck_command,
    tool,
)

SCRAPE_S = 1
# The panels that must show data once jobs have run on a CPU worker (the GPU's, the blocks',
# the refusals' and the errors' stay empty: nothing of the kind happened).
PANELS_WITH_DATA = (
    "Targets up",
    "Readiness checks failing",
    "Failure rate (failed / all finished)",
    "Cost per image",
    "Cost per image, fully loaded",
    "Jobs in the queue",
    "Queue wait",
    "Finished jobs by outcome (per minute)",
    "Stage p95",
    "End to end",
    "Discord acknowledgement",
    "Device-seconds per image",
    "Device-seconds per standard image",
    "Images per second",
    "Images per pipeline call",
    "CPU (cores)",
    "Resident memory",
)

# What two /imagine jobs raise at least by, each where it moves: the bot counts jobs and times
# the ends, the worker draws.
RISING = {
    'sum(sdbot_jobs_total{job="sdbot-bot", kind="imagine", outcome="succeeded"})': 2,
    'sum(sdbot_stage_seconds_count{job="sdbot-worker", stage="diffusion"})': 2,
    'sum(sdbot_stage_seconds_count{job="sdbot-bot", stage="queue_wait"})': 2,
    'sum(sdbot_stage_seconds_count{job="sdbot-bot", stage="end_to_end"})': 2,
    'sum(sdbot_stage_seconds_count{job="sdbot-bot", stage="posting"})': 2,
    'sum(sdbot_discord_ack_seconds_count{job="sdbot-bot"})': 2,
    'sum(sdbot_images_total{job="sdbot-worker"})': 2 * 4,  # four variants each
    'sum(sdbot_batches_total{job="sdbot-worker"})': 1,
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def metrics_port(log: Path) -> int:
    found = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", read_log(log))
    assert found, f"{log.name} names no metrics port:\n{read_log(log)}"
    return int(found.group(1))


def base_environment(settings: Settings, prefix: str) -> dict[str, str]:
    """What the compose stack sets, here: Redis, the metrics port (0: any free one), JSON logs."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SDBOT_")} | {
        "SDBOT_MODEL": settings.model,
        "SDBOT_DEVICE": "cpu",
        "SDBOT_TORCH_THREADS": "1",
        "SDBOT_DATA_DIR": str(settings.data_dir),
        "SDBOT_REDIS_URL": REDIS_URL,
        "SDBOT_REDIS_PREFIX": prefix,
        "SDBOT_METRICS_PORT": "0",
        "SDBOT_PRICE_PER_DEVICE_HOUR": "1.8",
    }


@asynccontextmanager
async def started(
    command: list[str], environment: dict[str, str], log: Path
) -> AsyncIterator[None]:
    """A process group of its own (the worker's model process with it), ended with SIGTERM, then
    SIGKILL if it lingers; waited on without blocking this loop, where the fake Discord that
    `sdbot run` says goodbye to runs."""
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            *command,
            env=environment,
            stdout=output,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield
    finally:
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 60)
            except TimeoutError:
                os.killpg(process.pid, signal.SIGKILL)
                await asyncio.wait_for(process.wait(), 30)


def prometheus_config(path: Path, bot_port: int, worker_port: int) -> Path:
    """deploy/prometheus/prometheus.yml with its targets here, scraping every second, and the
    stack's alerts loaded."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": f"{SCRAPE_S}s", "evaluation_interval": f"{SCRAPE_S}s"}
    config["rule_files"] = [str(PROMETHEUS_DIR / "alerts.yml")]
    ports = {"sdbot-bot": bot_port, "sdbot-worker": worker_port}
    config["scrape_configs"] = [
        {"job_name": job["job_name"], "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
        for job in config["scrape_configs"]
        for port in [ports[job["job_name"]]]
    ]
    path.write_text(yaml.safe_dump(config))
    return path


class PrometheusApi:
    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session, self.url = session, url

    async def get(self, path: str, **params: str) -> Any:
        async with self.session.get(f"{self.url}{path}", params=params) as response:
            body = await response.json()
        assert body["status"] == "success", f"{path} {params}: {body}"
        return body["data"]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        data = await self.get("/api/v1/query", query=expr)
        result: list[dict[str, Any]] = data["result"]
        return result

    async def value(self, expr: str) -> float:
        """A one-series query's value; 0 while it has none."""
        result = await self.query(expr)
        assert len(result) <= 1, f"{expr} gives {len(result)} series"
        return float(result[0]["value"][1]) if result else 0.0


def posted(interaction: Interaction) -> Callable[[], Message | None]:
    """The interaction's answer once it is a grid with its controls."""

    def check() -> Message | None:
        original = interaction.original
        return original if original and len(original.reacted) == len(CONTROLS) else None

    return check


async def eventually(check: Callable[[], Awaitable[bool]], what: str, within: float = 120) -> None:
    for _ in range(int(within * 2)):
        if await check():
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"never: {what}")


@asynccontextmanager
async def prometheus(
    tmp_path: Path, bot_port: int, worker_port: int
) -> AsyncIterator[PrometheusApi]:
    binary = tool("prometheus", "apt-get install prometheus")
    config = prometheus_config(tmp_path / "prometheus.yml", bot_port, worker_port)
    address = f"127.0.0.1:{free_port()}"
    command = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address={address}",
    ]
    log = tmp_path / "prometheus.log"
    timeout = aiohttp.ClientTimeout(total=10)
    async with (
        started(command, dict(os.environ), log),
        aiohttp.ClientSession(timeout=timeout) as session,
    ):
        api = PrometheusApi(session, f"http://{address}")

        async def answers() -> bool:
            try:
                async with session.get(f"{api.url}/-/ready") as response:
                    return response.status == 200
            except aiohttp.ClientError:
                return False

        try:
            await eventually(answers, "Prometheus is ready", within=60)
        except AssertionError:
            raise AssertionError(f"Prometheus did not start:\n{read_log(log)}") from None
        yield api


async def test_prometheus_sees_jobs_counted_and_timed_on_the_bot_and_the_worker(
    fake_discord: FakeDiscord,
    world: tuple[Guild, Channel, User],
    settings: Settings,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    _, channel, ada = world
    await asyncio.to_thread(migrations.upgrade, settings.effective_database_url())
    environment = base_environment(settings, redis_prefix)
    bot_environment = environment | {
        "SDBOT_DATABASE_URL": settings.effective_database_url(),
        "SDBOT_DISCORD_TOKEN": fake_discord.token,
        "SDBOT_DISCORD_API_URL": fake_discord.api_url,
        "SDBOT_DISCORD_GATEWAY_URL": fake_discord.gateway_url,
        # Another price than the worker's: the cost panels take each instance's own price (the
        # bot draws nothing here), never the highest price of any process.
        "SDBOT_PRICE_PER_DEVICE_HOUR": "40",
    }
    worker_log, bot_log = tmp_path / "worker.log", tmp_path / "bot.log"
    sdbot = [sys.executable, "-m", "bot"]
    async with (
        started([*sdbot, "worker", "--name", "w1"], environment, worker_log),
        started([*sdbot, "run", "--ready-timeout", "0.05"], bot_environment, bot_log),
    ):
        await wait_for_line(worker_log, "taking jobs from")
        await wait_for_line(bot_log, "connected to Discord as")
        ports = {"worker": metrics_port(worker_log), "bot": metrics_port(bot_log)}

        # The stack's own health checks, as compose runs them, pass on the real processes.
        (tmp_path / "compose").mkdir()
        compose = await asyncio.to_thread(compose_config, tmp_path / "compose", "compose.yaml")
        for name in SDBOT_SERVICES:
            command = healthcheck_command(compose["services"][name])
            code = await asyncio.to_thread(health_exit, command, ports[name])
            assert code == 0, f"{name}'s /readyz failed:\n{read_log(tmp_path / f'{name}.log')}"

        async with prometheus(tmp_path, ports["bot"], ports["worker"]) as api:

            async def both_up() -> bool:
                up = {r["metric"]["job"]: r["value"][1] for r in await api.query("up")}
                return up == {"sdbot-bot": "1", "sdbot-worker": "1"}

            await eventually(both_up, "Prometheus scrapes the bot and the worker")
            # A worker's start-up may already have counted (its model load); jobs come next.
            before = {expr: await api.value(expr) for expr in RISING}

            prompts = ("a red circle", "two small green squares")
            interactions = [
                await fake_discord.slash(ada, channel, "imagine", prompt=prompt)
                for prompt in prompts
            ]
            for interaction in interactions:
                await fake_discord.wait_for(posted(interaction), within=180, what="a grid")

            seen: dict[str, float] = {}

            async def counted() -> bool:
                for expr in RISING:
                    seen[expr] = await api.value(expr) - before.get(expr, 0.0)
                return all(seen[expr] >= least for expr, least in RISING.items())

            try:
                await eventually(counted, "the counters and histograms rise")
            except AssertionError:
                raise AssertionError(f"risen by {seen}, not by {RISING}") from None
            assert await api.value('sum(sdbot_jobs_total{job="sdbot-worker"})') == 0
            assert await api.value('sum(sdbot_device_seconds_total{job="sdbot-worker"})') > 0
            price = 'sdbot_price_per_device_hour{job="sdbot-worker"}'
            assert await api.value(price) == 1.8
            queries = dashboard_queries()
            images = "sum(rate(sdbot_images_total[1m]))"
            drawing = 'sum(rate(sdbot_device_seconds_total{job="sdbot-worker"}[1m])) * 1.8'
            # One query each, so that both sides are read at one instant.
            [cost] = queries["Cost per image"]
            assert await api.value(f"({cost}) / ({drawing} / 3600 / {images})") == pytest.approx(1)
            [loaded] = queries["Cost per image, fully loaded"]
            assert await api.value(f"({loaded}) / (1.8 / 3600 / {images})") == pytest.approx(1)

            # Every dashboard query and every alert is valid PromQL on the real server, and the
            # panels about what just happened show it.
            empty = []
            for title, exprs in queries.items():
                results = [await api.query(expr) for expr in exprs]
                if not any(results):
                    empty.append(title)
            missing = [title for title in PANELS_WITH_DATA if title in empty]
            assert not missing, f"panels without data after the jobs ran: {missing}"
            for rule in alerts().values():
                await api.query(rule["expr"])  # status success, or it fails naming the query

            async def rules_evaluated() -> bool:
                groups = (await api.get("/api/v1/rules"))["groups"]
                health = {rule["name"]: rule["health"] for g in groups for rule in g["rules"]}
                return health == dict.fromkeys(alerts(), "ok")

            await eventually(rules_evaluated, "Prometheus evaluates every alert without error")
            firing = [
                alert["labels"]["alertname"]
                for alert in (await api.get("/api/v1/alerts"))["alerts"]
            ]
            assert "SdbotDown" not in firing
