"""Engine and session factory, built in the entry point and passed in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from storage.errors import InvalidDatabaseUrl

SessionFactory = async_sessionmaker[AsyncSession]


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


_ASYNC_DRIVERS = {"sqlite": "aiosqlite", "postgresql": "asyncpg"}


def check_database_url(url: str) -> None:
    """Raises InvalidDatabaseUrl (a ValueError) saying what sdbot cannot use in ``url``; the
    message never repeats the URL (it may carry a password)."""
    try:
        parsed = make_url(url)
    except Exception as error:  # sqlalchemy raises several kinds for text that is no URL
        raise InvalidDatabaseUrl(f"it does not parse ({type(error).__name__})") from None
    backend, _, driver = parsed.drivername.partition("+")  # loading the dialect may fail
    if _ASYNC_DRIVERS.get(backend) != driver:
        raise InvalidDatabaseUrl(
            f"{parsed.drivername} is not one it supports; it needs an async driver: "
            "sqlite+aiosqlite://… or postgresql+asyncpg://…"
        )
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise InvalidDatabaseUrl(f"port {parsed.port} is not from 1 to 65535")
    if backend == "postgresql" and "sslmode" in parsed.query:
        raise InvalidDatabaseUrl(
            "asyncpg takes ?ssl=disable|prefer|require|verify-ca|verify-full, not ?sslmode="
        )


def ensure_sqlite_folder(url: str) -> None:
    """Creates the folder of a SQLite database file, so that a first run just works."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)


def create_engine(url: str) -> AsyncEngine:
    """An async engine for ``url``; SQLite files get WAL and foreign keys, and their folder."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        ensure_sqlite_folder(url)
        engine = create_async_engine(url)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_pre_ping=True)


def create_session_factory(engine: AsyncEngine) -> SessionFactory:
    return async_sessionmaker(engine, expire_on_commit=False)
