"""The composition root: builds engine, repositories, worker and service from the settings."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from bot.service import ImagineService
from bot.settings import Settings
from generation.models import model_defaults, resolve_model
from generation.protocol import WorkerSpec
from generation.queue import BatchPolicy, JobQueue, LocalQueue
from generation.supervisor import WorkerSupervisor
from moderation.prompts import PromptRules
from storage.admin import BanList, GuildSettingsRepository, ModerationLog, TermList
from storage.audit import AuditLog
from storage.engine import SessionFactory, create_engine, create_session_factory
from storage.migrations import ensure_up_to_date


@dataclass
class Storage:
    sessions: SessionFactory
    audit: AuditLog
    terms: TermList
    guild_settings: GuildSettingsRepository
    bans: BanList
    moderation: ModerationLog


@asynccontextmanager
async def open_storage(settings: Settings) -> AsyncIterator[Storage]:
    """The database, refused when its schema is behind this code."""
    engine = create_engine(settings.effective_database_url())
    try:
        await ensure_up_to_date(engine)
        yield _repositories(create_session_factory(engine))
    finally:
        await engine.dispose()


def unopened_storage(settings: Settings) -> Storage:
    """Repositories over an engine that has not connected (it connects on first use): for what
    needs the bot's objects but not its data, such as ``sdbot discord check``."""
    sessions = create_session_factory(create_engine(settings.effective_database_url()))
    return _repositories(sessions)


def _repositories(sessions: SessionFactory) -> Storage:
    return Storage(
        sessions,
        AuditLog(sessions),
        TermList(sessions),
        GuildSettingsRepository(sessions),
        BanList(sessions),
        ModerationLog(sessions),
    )


def worker_spec(settings: Settings) -> WorkerSpec:
    return WorkerSpec(
        model=settings.model,
        device=settings.device,
        dtype=settings.dtype,
        min_output_side=settings.min_output_side,
        torch_threads=settings.torch_threads,
        log_level=logging.getLevelName(logging.getLogger().getEffectiveLevel()),
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
        if isinstance(queue, LocalQueue):
            await queue.supervisor.close()


def build_service(settings: Settings, storage: Storage, queue: JobQueue) -> ImagineService:
    """The imagine path over ``storage`` and ``queue``; nothing starts or connects here."""
    return ImagineService(
        audit=storage.audit,
        terms=storage.terms,
        guild_settings=storage.guild_settings,
        bans=storage.bans,
        moderation=storage.moderation,
        queue=queue,
        limits=settings.limits(),
        defaults=model_defaults(resolve_model(settings.model)),
        model_name=settings.model,
        rules=PromptRules.default(),
        nsfw_threshold=settings.nsfw_threshold,
        nsfw_strict_threshold=settings.nsfw_strict_threshold,
        output_dir=settings.effective_output_dir(),
        default_limits=settings.queue_limits(),
        direct_messages=settings.discord_allow_dms,
        lease_s=settings.job_lease_s,
    )


async def open_queue(settings: Settings) -> JobQueue:
    """In this process in front of one worker, or on Redis when SDBOT_REDIS_URL is set."""
    batch = BatchPolicy(settings.batch_max_jobs, settings.batch_max_images)
    if settings.redis_url:
        from generation.redis_queue import RedisQueue

        return await RedisQueue.connect(
            settings.redis_url, prefix=settings.redis_prefix, lost_after_s=settings.redis_lost_s
        )
    supervisor = WorkerSupervisor(
        worker_spec(settings), stall_timeout_s=settings.job_stall_timeout_s
    )
    return LocalQueue(supervisor, batch)
