"""`sdbot worker`: a model process that takes jobs from Redis, on this machine or any other."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import TYPE_CHECKING, Any

from bot.cli import EXIT_OK, CommandError

if TYPE_CHECKING:
    from bot.settings import Settings


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
    worker.set_defaults(handler=run_worker)


async def run_worker(args: argparse.Namespace, settings: Settings) -> int:
    from bot.app import worker_spec
    from bot.masking import mask_url
    from generation.queue.batch import BatchPolicy
    from generation.queue.redis import RedisWorker
    from generation.supervisor import WorkerSupervisor

    if not settings.redis_url:
        raise CommandError("sdbot worker takes its jobs from Redis: set SDBOT_REDIS_URL")
    supervisor = WorkerSupervisor(
        worker_spec(settings), stall_timeout_s=settings.job_stall_timeout_s
    )
    worker = await RedisWorker.connect(
        settings.redis_url,
        supervisor,
        prefix=settings.redis_prefix,
        name=args.name,
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
            print("sdbot worker: finishing the jobs in hand, then stopping", file=sys.stderr)
            stop.set()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)
    try:
        ready = await supervisor.start()
        print(
            f"sdbot worker {worker.name}: {ready.model} on {ready.device} ({ready.dtype}), "
            f"taking jobs from {mask_url(settings.redis_url)} (prefix {settings.redis_prefix})",
            file=sys.stderr,
            flush=True,
        )
        await worker.run(stop)
    finally:
        await supervisor.close()
        await worker.close()
    done = worker.jobs_done
    print(
        f"sdbot worker {worker.name}: stopped after {done} job{'s' if done != 1 else ''}",
        file=sys.stderr,
    )
    return EXIT_OK
