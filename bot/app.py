"""The composition root: builds storage, the queue with its worker, and the imagine path from
the settings."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from bot.imagine.service import ImagineService
from bot.imagine.types import ImagineConfig
from bot.settings import Settings
from generation.fast_path import FastPath
from generation.protocol import WorkerSpec
from generation.queue import BatchPolicy, JobQueue, LocalQueue
from moderation.lists import PromptRules
from storage import repositories
from storage.repositories import Storage


def open_storage(settings: Settings) -> AbstractAsyncContextManager[Storage]:
    """The database, refused when its schema is behind this code."""
    return repositories.open_storage(settings.effective_database_url())


def unopened_storage(settings: Settings) -> Storage:
    """Repositories over an engine that has not connected (it connects on first use): for what
    needs the bot's objects but not its data, such as ``sdbot discord check``."""
    return repositories.unopened_storage(settings.effective_database_url())


def worker_spec(settings: Settings, name: str | None = None) -> WorkerSpec:
    return WorkerSpec(
        name=name,
        model=settings.model,
        device=settings.device,
        dtype=settings.dtype,
        min_output_side=settings.min_output_side,
        torch_threads=settings.torch_threads,
        log_level=logging.getLevelName(logging.getLogger().getEffectiveLevel()),
        log_format=settings.log_format,
        catalog=settings.catalog(),  # the models and LoRAs admission lets through
        memory_gb=settings.model_memory_gb,
        fast=FastPath.parse(settings.fast_path),
    )


@asynccontextmanager
async def open_service(settings: Settings, storage: Storage) -> AsyncIterator[ImagineService]:
    """The imagine path with its worker process; the worker stops on the way out."""
    queue = await open_queue(settings)
    service = build_service(settings, storage, queue)
    try:
        yield service
    finally:
        await service.close()
        await queue.stop_workers()


def build_service(settings: Settings, storage: Storage, queue: JobQueue) -> ImagineService:
    """The imagine path over ``storage`` and ``queue``; nothing starts or connects here."""
    catalog = settings.catalog()
    defaults = catalog.model(None).defaults
    config = ImagineConfig(
        limits=settings.catalog_limits(),
        defaults=defaults,
        nsfw_threshold=settings.nsfw_threshold,
        nsfw_strict_threshold=settings.nsfw_strict_threshold,
        catalog=catalog,
        rates=settings.queue_limits(),
        output_dir=settings.effective_output_dir(),
        direct_messages=settings.discord_allow_dms,
        lease_s=settings.job_lease_s,
        max_input_bytes=int(settings.max_input_mb * 1024 * 1024),
        max_input_pixels=settings.max_input_pixels,
        caption_model=settings.caption_model,
        retention_days=settings.retention_days,
    )
    return ImagineService(storage, queue, config, PromptRules.default())


async def open_queue(settings: Settings) -> JobQueue:
    """In this process in front of one worker, or on Redis when SDBOT_REDIS_URL is set."""
    batch = BatchPolicy(settings.batch_max_jobs, settings.batch_max_images)
    if settings.redis_url:
        from generation.queue.redis import RedisQueue

        return await RedisQueue.connect(
            settings.redis_url, prefix=settings.redis_prefix, lost_after_s=settings.redis_lost_s
        )
    from generation.supervisor import WorkerSupervisor  # the worker's side: only when it runs here

    supervisor = WorkerSupervisor(
        worker_spec(settings), stall_timeout_s=settings.job_stall_timeout_s
    )
    return LocalQueue(supervisor, batch)
