"""`sdbot worker`: a model process that takes jobs from Redis, on this machine or any other."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
from typing import TYPE_CHECKING, Any

from bot.cli import EXIT_OK, CommandError
from common import logs

if TYPE_CHECKING:
    from bot.settings import Settings
    from generation.queue.redis import RedisWorker
    from generation.supervisor import WorkerSupervisor


def register(commands: Any) -> None:
    worker = commands.add_parser(
        "worker",
        help="run a GPU worker that takes jobs from Redis (needs SDBOT_REDIS_URL)",
        description=(
            "Loads the model once, then takes jobs from the Redis queue in fair order, in "
            "batches of up to SDBOT_BATCH_MAX_JOBS jobs (SDBOT_BATCH_MAX_IMAGES images) that can "
            "share one pipeline call. SIGTERM or Ctrl-C finishes the jobs in hand, then stops; a "
            "second one stops at once (another worker takes them over after "
            "SDBOT_WORKER_RECLAIM_S)."
        ),
    )
    worker.add_argument("--name", help="this worker's name in Redis (default: host-pid)")
    worker.add_argument(
        "--metrics-port",
        type=_port,
        metavar="PORT",
        help="serve /metrics, /livez and /readyz on this port (0: any free one; default: "
        "SDBOT_METRICS_PORT): one each when several workers share a machine",
    )
    worker.set_defaults(handler=run_worker)


async def run_worker(args: argparse.Namespace, settings: Settings) -> int:
    from bot.app import worker_spec
    from bot.ops.server import worker_metrics
    from generation.queue.batch import BatchPolicy
    from generation.queue.redis import RedisWorker
    from generation.supervisor import WorkerSupervisor

    if not settings.redis_url:
        raise CommandError("sdbot worker takes its jobs from Redis: set SDBOT_REDIS_URL")
    name = args.name or f"{socket.gethostname()}-{os.getpid()}"
    logs.bind(worker=name)  # on every line of this process; its model process's too (the spec)
    supervisor = WorkerSupervisor(
        worker_spec(settings, name), stall_timeout_s=settings.job_stall_timeout_s
    )
    worker = await RedisWorker.connect(
        settings.redis_url,
        supervisor,
        prefix=settings.redis_prefix,
        name=name,
        reclaim_after_s=settings.worker_reclaim_s,
        batch=BatchPolicy(settings.batch_max_jobs, settings.batch_max_images),
    )
    stop = asyncio.Event()
    task = asyncio.current_task()
    assert task is not None

    def on_signal() -> None:
        if stop.is_set():  # the second time: now
            task.cancel()
        else:
            _say(name, "finishing the jobs in hand, then stopping")
            stop.set()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)
    try:
        async with worker_metrics(settings, supervisor, args.metrics_port) as metrics:
            if metrics is not None:  # /livez answers while the model loads; /readyz says so
                _say(name, f"metrics on {metrics.url}")
            await _work(worker, supervisor, settings, stop)
    finally:
        await supervisor.close()
        await worker.close()
    done = worker.jobs_done
    _say(name, f"stopped after {done} job{'s' if done != 1 else ''}")
    return EXIT_OK


async def _work(
    worker: RedisWorker, supervisor: WorkerSupervisor, settings: Settings, stop: asyncio.Event
) -> None:
    """Loads the model, then takes jobs until ``stop``."""
    from bot.masking import mask_url

    ready = await supervisor.start()
    _say(
        worker.name,
        f"{ready.model} on {ready.device} ({ready.dtype}), "
        f"taking jobs from {mask_url(settings.redis_url or '')} (prefix {settings.redis_prefix})",
    )
    await worker.run(stop)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port from 0 to 65535, got {text!r}")
    return port


def _say(name: str, text: str) -> None:
    """A line for the operator: ``sdbot worker NAME: text``, or a JSON line (SDBOT_LOG_FORMAT)."""
    logs.say(f"sdbot worker {name}", text, worker=name)
