"""The schema's revision: checked on every open without Alembic, changed with it.

Opening storage only asks whether the database is at this code's head revision. That is one
``SELECT`` of ``alembic_version`` compared with the head read from the migration scripts' text
(their ``revision`` and ``down_revision`` lines), so a command that opens the database does not
import Alembic (about 0.1 s of start-up). Alembic is imported to change the schema (``upgrade``,
``downgrade``) and to confirm a mismatch before a database is refused: a script the text reading
got wrong can cost time, never refuse a database that Alembic finds up to date.
``tests/test_migrations.py`` checks that the head read from the text is Alembic's.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.errors import DatabaseBehind

if TYPE_CHECKING:
    from alembic.config import Config

VERSION_TABLE = "alembic_version"  # Alembic's default, which alembic/env.py keeps
# `revision: str = "0006"`, `down_revision: str | None = "0005"` (or None, or a tuple of merges)
_ASSIGNMENT = re.compile(r"^(revision|down_revision)\b[^=\n]*=(.*)$", re.MULTILINE)
_QUOTED = re.compile(r"""["']([^"']+)["']""")


def _script_location() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "alembic", here / "alembic"):  # source tree, then wheel
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError(f"alembic scripts not found beside {here}")


def alembic_config(database_url: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_script_location()))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def head_revision() -> str:
    """The head revision as Alembic reads it (imports Alembic; ``scripts_head`` does not)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None, "alembic has no revisions"
    return head


@functools.cache
def scripts_head() -> str | None:
    """The head revision read from the scripts' text: the one revision that no script revises.

    None when the text does not name exactly one (a branched history): then only Alembic can
    tell. Read once per process.
    """
    revisions: set[str] = set()
    revised: set[str] = set()
    for script in sorted((_script_location() / "versions").glob("*.py")):
        for name, value in _ASSIGNMENT.findall(script.read_text(encoding="utf-8")):
            names = _QUOTED.findall(value)
            if name == "revision":
                revisions.update(names[:1])
            else:
                revised.update(names)
    heads = revisions - revised
    return heads.pop() if len(heads) == 1 else None


def upgrade(database_url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str = "base") -> None:
    from alembic import command

    command.downgrade(alembic_config(database_url), revision)


def _current_revision(connection: Connection) -> str | None:
    """What ``alembic_version`` holds, as Alembic's ``get_current_revision`` reads it: None
    without the table or a row; more than one row is a branched history, which Alembic
    refuses in its own words."""
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    rows = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    if len(rows) > 1:
        from alembic.runtime.migration import MigrationContext

        return MigrationContext.configure(connection).get_current_revision()
    return str(rows[0]) if rows else None


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as connection:
        return await connection.run_sync(_current_revision)


async def ensure_up_to_date(engine: AsyncEngine) -> None:
    """Raises DatabaseBehind unless the database is at this code's head revision.

    The usual case (it is) reads one table and no Alembic; a mismatch asks Alembic for the head
    before refusing.
    """
    expected = scripts_head()
    current = await current_revision(engine)
    if expected is not None and current == expected:
        return
    head = head_revision()
    if current != head:
        raise DatabaseBehind(current, head)
