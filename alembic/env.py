"""Alembic environment: async engine, batch mode for SQLite, models as the target."""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection

from storage.engine import create_engine
from storage.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    # `sdbot db upgrade` sets the URL; the plain `alembic` command reads it from the environment.
    url = config.get_main_option("sqlalchemy.url") or os.environ.get("SDBOT_DATABASE_URL")
    if not url:
        raise SystemExit("set SDBOT_DATABASE_URL, or run `sdbot db upgrade` instead")
    return url


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_online() -> None:
    engine = create_engine(_url())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_configure)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_online())
