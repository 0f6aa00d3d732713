"""The metrics port for real: the bot's, on the real discord.py client logged in to the fake
Discord with the real worker process, and a `sdbot worker` process's, read over HTTP and
parsed the way Prometheus reads them; and the GPU gauges on pretend GPUs (NVML's calls, as a
host without a driver cannot show them): which process exports them, and which GPUs."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from bot.discord.client import ImagineBot
from bot.ops import system
from bot.ops.server import bot_metrics
from bot.settings import Settings
from generation.catalog_files import single_model
from tests.conftest import REDIS_URL
from tests.processes import read_log, wait_for_line


async def _get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


def _samples(text: str) -> dict[str, list[Sample]]:
    """Every family's samples by family name (parsed as Prometheus's text format)."""
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def _one(samples: list[Sample], **labels: str) -> float:
    [value] = [s.value for s in samples if all(s.labels.get(k) == v for k, v in labels.items())]
    return value


def _nvml_starts() -> bool:
    import pynvml  # type: ignore[import-untyped]

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


async def test_the_bot_serves_metrics_livez_and_readyz_on_a_free_port(
    settings: Settings, bot: ImagineBot
) -> None:
    service = bot.service
    settings = settings.model_copy(update={"metrics_port": 0, "price_per_device_hour": 2.5})
    async with bot_metrics(settings, service.storage, service.queue, lambda: bot) as server:
        assert server is not None
        assert server.port > 0
        base = server.url.removesuffix("/metrics")
        assert await _get(f"{base}/livez") == (200, "ok\n")

        # The model process starts with the first job, or here: until then not ready.
        status, body = await _get(f"{base}/readyz")
        assert status == 503
        assert json.loads(body)["checks"]["model"].startswith("the model process is not running")
        await service.queue.start_workers()
        status, body = await _get(f"{base}/readyz")
        assert (status, json.loads(body)) == (
            200,
            {"ready": True, "checks": {"model": "ok", "database": "ok", "gateway": "ok"}},
        )
        status, text = await _get(server.url)
        # The model process dies: the next job starts it again, so this process can still
        # serve and stays ready (the balancer must not pull a worker out for that).
        supervisor = service.queue.supervisor  # type: ignore[attr-defined]  # a LocalQueue
        os.kill(supervisor.pid, signal.SIGKILL)
        for _ in range(600):
            if not supervisor.alive:
                break
            await asyncio.sleep(0.05)
        assert not supervisor.alive
        status, body = await _get(f"{base}/readyz")
        assert (status, json.loads(body)["checks"]["model"]) == (200, "ok")

    assert status == 200
    families = _samples(text)
    assert _one(families["sdbot_build_info"], role="run") == 1
    assert _one(families["sdbot_price_per_device_hour"]) == 2.5
    assert _one(families["sdbot_queue_jobs"], state="queued") == 0  # refreshed from the queue
    assert _one(families["sdbot_ready"], check="gateway") == 1
    for name in ("sdbot_jobs", "sdbot_stage_seconds", "sdbot_discord_ack_seconds"):
        assert name in families, name
    # The model process's own gauges, beside this process's.
    assert _one(families["sdbot_worker_process_resident_memory_bytes"]) > 0
    assert _one(families["process_resident_memory_bytes"]) > 0
    # The GPU gauges exist only where NVML starts (an NVIDIA driver): here they are absent.
    gpu = [name for name in families if name.startswith("sdbot_gpu_")]
    assert bool(gpu) == _nvml_starts(), gpu
    # Closed: nothing listens there any more.
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", server.port)) != 0


def _start_worker(
    settings: Settings, prefix: str, log: Path, *arguments: str, **environment: str
) -> subprocess.Popen[bytes]:
    variables = {k: v for k, v in os.environ.items() if not k.startswith("SDBOT_")} | {
        "SDBOT_MODEL": settings.model,
        "SDBOT_DEVICE": "cpu",
        "SDBOT_TORCH_THREADS": "1",
        "SDBOT_REDIS_URL": REDIS_URL,
        "SDBOT_REDIS_PREFIX": prefix,
        "SDBOT_DATA_DIR": str(settings.data_dir),
        **environment,
    }
    with log.open("wb") as stderr:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "bot", "worker", *arguments],
            env=variables,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,  # its model process shares its group: one kill takes both
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(30)


def _metrics_url(log: Path) -> str:
    found = re.search(r"metrics on (http://\S+/metrics)", read_log(log))
    assert found, read_log(log)
    return found[1]


async def test_sdbot_worker_serves_its_own_metrics_and_readiness(
    settings: Settings, redis_prefix: str, tmp_path: Path
) -> None:
    # SDBOT_METRICS_PORT names a port in use; --metrics-port overrides it (several workers on
    # one machine each get their own).
    with socket.create_server(("127.0.0.1", 0)) as taken:
        busy = str(taken.getsockname()[1])
        log = tmp_path / "worker.log"
        worker = _start_worker(
            settings,
            redis_prefix,
            log,
            "--name",
            "metrics",
            "--metrics-port",
            "0",
            SDBOT_METRICS_PORT=busy,
        )
        try:
            await wait_for_line(log, "metrics on http://127.0.0.1:")
            url = _metrics_url(log)
            assert not url.endswith(f":{busy}/metrics"), url
            base = url.removesuffix("/metrics")
            await wait_for_line(log, "taking jobs from")
            assert await _get(f"{base}/livez") == (200, "ok\n")
            status, body = await _get(f"{base}/readyz")
            assert (status, json.loads(body)) == (
                200,
                {"ready": True, "checks": {"model": "ok", "redis": "ok"}},
            )
            status, text = await _get(url)
        finally:
            await asyncio.to_thread(_stop, worker)
    assert status == 200
    families: dict[str, Any] = _samples(text)
    assert _one(families["sdbot_build_info"], role="worker") == 1
    assert _one(families["sdbot_ready"], check="model") == 1
    assert _one(families["sdbot_worker_process_resident_memory_bytes"]) > 0
    assert "sdbot_worker_restarts" in families
    # Its catalog's model counts from the start: a rate sees its first batch.
    model = single_model(settings.model).name
    assert _one(families["sdbot_device_seconds"], model=model) == 0
    assert "sdbot_queue_jobs" in families  # defined here too, moved by the bot


class _ThreeGpus:
    """NVML as the GPU gauges call it, on a host of three GPUs: each one's memory in use is
    its NVML index + 1, so a sample says which GPU it read."""

    NVMLError = RuntimeError
    UUIDS = ("GPU-aaaa-0", "GPU-bbbb-1", "GPU-cccc-2")

    def nvmlDeviceGetCount(self) -> int:
        return len(self.UUIDS)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetUUID(self, handle: int) -> bytes:
        return self.UUIDS[handle].encode()  # older pynvml: bytes

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> Any:
        return SimpleNamespace(gpu=10 * handle)

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:
        return SimpleNamespace(used=handle + 1, total=100)


def _gpus_used(families: Iterable[Any]) -> dict[tuple[str, str], float]:
    """``sdbot_gpu_memory_used_bytes`` by (gpu, uuid)."""
    return {
        (sample.labels["gpu"], sample.labels["uuid"]): sample.value
        for family in families
        if family.name == "sdbot_gpu_memory_used_bytes"
        for sample in family.samples
    }


def test_the_gpu_gauges_are_the_visible_devices_numbered_as_the_process_sees_them() -> None:
    a, b, c = _ThreeGpus.UUIDS
    every = {("0", a): 1, ("1", b): 2, ("2", c): 3}
    assert _gpus_used(system.GpuCollector(_ThreeGpus()).collect()) == every  # unset: all
    # By NVML index or by UUID prefix, in the order given; CUDA stops at a bad entry.
    for visible, shown in (
        ("2,GPU-aaaa", {("0", c): 3, ("1", a): 1}),
        (" 1 , nowhere, 0", {("0", b): 2}),
        ("7,0", {}),
        ("-1", {}),
        ("", {}),
    ):
        collected = system.GpuCollector(_ThreeGpus(), visible).collect()
        assert _gpus_used(collected) == shown, visible


def test_only_a_process_that_runs_a_model_exports_the_gpus_it_may_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bot whose model runs in `sdbot worker` processes (no model pid) shows no GPU; one
    that runs a model shows the GPUs CUDA_VISIBLE_DEVICES gives it, and stops when it no
    longer runs one."""
    monkeypatch.setattr(system, "_start_nvml", _ThreeGpus)
    monkeypatch.setattr(system, "_gpu", None)
    monkeypatch.setattr(system, "_gpu_tried", False)
    monkeypatch.setattr(system, "_gpu_shown", False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-cccc")
    try:
        system.follow_model(None)
        assert _gpus_used(REGISTRY.collect()) == {}
        system.follow_model(os.getpid)
        assert _gpus_used(REGISTRY.collect()) == {("0", "GPU-cccc-2"): 3}
        system.follow_model(None)
        assert _gpus_used(REGISTRY.collect()) == {}
    finally:
        system.follow_model(None)  # the pretend GPUs leave the registry with the patches
