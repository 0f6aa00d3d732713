"""Alembic: round trips on both databases, no drift from the models, and the start-up refusal."""

from __future__ import annotations

import asyncio

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from storage import migrations
from storage.engine import create_engine
from storage.errors import DatabaseBehind
from storage.models import Base

TABLES = {
    "alembic_version", "bans", "guild_settings", "images", "jobs", "moderation_actions",
    "posted_messages", "terms",
}  # fmt: skip


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


def _drift(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def _inspect(url: str) -> tuple[set[str], list[object]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(_tables), await connection.run_sync(_drift)
    finally:
        await engine.dispose()


async def test_upgrade_downgrade_upgrade(database_url: str) -> None:
    await asyncio.to_thread(migrations.upgrade, database_url)
    tables, _ = await _inspect(database_url)
    assert tables == TABLES

    await asyncio.to_thread(migrations.downgrade, database_url, "base")
    tables, _ = await _inspect(database_url)
    assert tables <= {"alembic_version"}

    await asyncio.to_thread(migrations.upgrade, database_url)
    tables, drift = await _inspect(database_url)
    assert tables == TABLES
    assert drift == [], f"the models and the migrations differ: {drift}"


async def test_code_refuses_a_database_that_is_behind(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        with pytest.raises(DatabaseBehind, match="run `sdbot db upgrade`"):
            await migrations.ensure_up_to_date(engine)
        await asyncio.to_thread(migrations.upgrade, database_url)
        await migrations.ensure_up_to_date(engine)
        assert await migrations.current_revision(engine) == migrations.head_revision()
    finally:
        await engine.dispose()
