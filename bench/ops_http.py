"""The cost of a scrape: ``/metrics`` and ``/readyz`` on a real metrics port (``serving``), the
registry first filled with as many series as a busy bot holds.

The series: every kind × outcome, every stage, 10 models' image, device and batch counters, 50
Discord route templates × 4 error statuses, every prompt-block rule × layer and every refusal
reason, the queue gauges, both purge reasons and the model process's gauges (this process's
pid stands in for the model process). A real `sdbot run` holds fewer until something fails on
every route; this is the large end. The client is aiohttp in the same event loop as the server,
so each figure is the whole round trip as one process sees it: the checks and refresh hooks
a scrape runs, the rendering (in a thread, as served), HTTP and reading the body.
"""

from __future__ import annotations

import os
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp
from prometheus_client import REGISTRY, generate_latest

from bot.ops.health import Check
from bot.ops.server import Refresh, serving
from common import metrics

MODELS = 10
ROUTES = 50
ERROR_STATUSES = ("0", "429", "500", "503")  # no answer, rate limited, Discord's own failures
RULES = ("minors", "term", "pattern", "negative_clothing", "other")
LAYERS = ("default", "profanity", "guild", "always")
REFUSAL_REASONS = ("rate", "banned", "paused", "channel", "direct", "model", "input")
_REAL_ROUTES = (
    ("POST", "/interactions/{interaction_id}/{interaction_token}/callback"),
    ("PATCH", "/webhooks/{webhook_id}/{webhook_token}/messages/@original"),
    ("POST", "/webhooks/{webhook_id}/{webhook_token}"),
    ("POST", "/channels/{channel_id}/messages"),
    ("PATCH", "/channels/{channel_id}/messages/{message_id}"),
    ("GET", "/channels/{channel_id}/messages/{message_id}"),
    ("DELETE", "/channels/{channel_id}/messages/{message_id}"),
    ("PUT", "/applications/{application_id}/commands"),
)


@dataclass(frozen=True)
class ScrapeFigures:
    series: int  # sample lines in the body (what Prometheus stores a scrape)
    route_series: int  # sdbot_discord_api_errors_total lines: ROUTES × statuses when all there
    body_bytes: int
    render_p50_ms: float  # generate_latest alone, in this thread
    render_p99_ms: float
    scrape_p50_ms: float  # GET /metrics over HTTP, checks and refresh included
    scrape_p99_ms: float
    scrapes: int
    readyz_p50_ms: float
    readyz_p99_ms: float
    readyz_checks: tuple[str, ...]  # which checks /readyz ran
    readyz_status: int


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile by rank (nearest rank below, the benches' way)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def route_templates(count: int = ROUTES) -> list[tuple[str, str]]:
    """The routes the bot calls, padded with routes of the same shape up to ``count``."""
    routes = list(_REAL_ROUTES)
    extra = 0
    while len(routes) < count:
        routes.append(("POST", f"/channels/{{channel_id}}/bench-route-{extra}/{{message_id}}"))
        extra += 1
    return routes[:count]


def fill_registry(seed: int = 0) -> int:
    """Moves every labelled sdbot series once (values drawn at random); returns how many
    label sets it touched."""
    rng = random.Random(seed)
    touched = 0
    for kind in metrics.KINDS:
        for outcome in metrics.OUTCOMES:
            metrics.JOBS.labels(kind, outcome).inc(rng.randint(1, 1000))
            touched += 1
    for stage in metrics.STAGES:
        for _ in range(20):
            metrics.STAGE.labels(stage).observe(rng.expovariate(1.0))
        touched += 1
    for n in range(MODELS):
        model = f"model-{n}"
        for counter in (
            metrics.IMAGES,
            metrics.STANDARD_IMAGES,
            metrics.DEVICE_SECONDS,
            metrics.IMAGES_FLAGGED,
            metrics.BATCHES,
        ):
            counter.labels(model).inc(rng.randint(1, 1000))
            touched += 1
    for method, route in route_templates():
        for status in ERROR_STATUSES:
            metrics.DISCORD_API_ERRORS.labels(method, route, status).inc()
            touched += 1
    for rule in RULES:
        for layer in LAYERS:
            metrics.PROMPT_BLOCKS.labels(rule, layer).inc()
            touched += 1
    for reason in REFUSAL_REASONS:
        metrics.REFUSALS.labels(reason).inc()
        touched += 1
    for state in ("queued", "running"):
        metrics.QUEUE_JOBS.labels(state).set(rng.randint(0, 100))
        touched += 1
    for why in ("retention", "forget"):
        metrics.PURGED_JOBS.labels(why).inc(0)
        touched += 1
    for _ in range(20):
        metrics.DISCORD_ACK.observe(rng.uniform(0.01, 3.0))
    return touched


def _render_times(rounds: int) -> tuple[list[float], bytes]:
    times, body = [], b""
    for _ in range(rounds):
        started = time.perf_counter()
        body = generate_latest(REGISTRY)
        times.append((time.perf_counter() - started) * 1000)
    return times, body


async def measure_scrape(
    checks: Sequence[Check], refresh: Sequence[Refresh], rounds: int
) -> ScrapeFigures:
    """``rounds`` GETs of /metrics and of /readyz (after a few not timed), and ``rounds``
    renders of the registry alone."""
    fill_registry()
    async with (
        serving(
            "127.0.0.1",
            0,
            role="run",
            checks=checks,
            refresh=refresh,
            model_pid=os.getpid,  # the model process's gauges, read from /proc as served
        ) as server,
        aiohttp.ClientSession() as client,
    ):
        base = server.url.removesuffix("/metrics")
        scrapes = await _get_times(client, server.url, rounds)
        readyz = await _get_times(client, f"{base}/readyz", rounds)
        async with client.get(server.url) as answer:
            body = await answer.read()
        async with client.get(f"{base}/readyz") as answer:
            status = answer.status
            verdicts = (await answer.json())["checks"]
        renders, _ = _render_times(rounds)
    samples = [line for line in body.decode().splitlines() if line and not line.startswith("#")]
    return ScrapeFigures(
        series=len(samples),
        route_series=sum(line.startswith("sdbot_discord_api_errors_total{") for line in samples),
        body_bytes=len(body),
        render_p50_ms=statistics.median(renders),
        render_p99_ms=percentile(renders, 0.99),
        scrape_p50_ms=statistics.median(scrapes),
        scrape_p99_ms=percentile(scrapes, 0.99),
        scrapes=rounds,
        readyz_p50_ms=statistics.median(readyz),
        readyz_p99_ms=percentile(readyz, 0.99),
        readyz_checks=tuple(verdicts),
        readyz_status=status,
    )


async def _get_times(
    client: aiohttp.ClientSession, url: str, rounds: int, warm_up: int = 3
) -> list[float]:
    times = []
    for n in range(warm_up + rounds):
        started = time.perf_counter()
        async with client.get(url) as answer:
            await answer.read()
        if n >= warm_up:
            times.append((time.perf_counter() - started) * 1000)
    return times
