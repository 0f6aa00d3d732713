"""Alembic driven from code: `sdbot db upgrade`, and the check that refuses an old schema."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.errors import DatabaseBehind


def _script_location() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "alembic", here / "alembic"):  # source tree, then wheel
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError(f"alembic scripts not found beside {here}")


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_script_location()))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None, "alembic has no revisions"
    return head


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url), revision)


def _current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as connection:
        return await connection.run_sync(_current_revision)


async def ensure_up_to_date(engine: AsyncEngine) -> None:
    """Raises DatabaseBehind unless the database is at this code's head revision."""
    head = head_revision()
    current = await current_revision(engine)
    if current != head:
        raise DatabaseBehind(current, head)
