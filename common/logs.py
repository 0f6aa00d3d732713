"""Log fields that follow a job: the job id, its guild and the worker, on every line logged while
they are bound (text or JSON lines: ``configure``).

``bound(job=…, guild=…, worker=…)`` binds fields for the code inside it, in this task and the
tasks it starts (contextvars); ``bind`` binds them for the rest of the current task. None
values are left out. Fields are plain values (ints and short strings), never a prompt.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

FIELDS = ("job", "guild", "worker")
_fields: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "sdbot_log_fields", default=MappingProxyType({})
)


def current() -> dict[str, Any]:
    """The fields bound here (a copy)."""
    return dict(_fields.get())


def bind(**fields: Any) -> contextvars.Token[Mapping[str, Any]]:
    """Binds fields for the rest of this task (and the tasks it starts from now on)."""
    merged = {**_fields.get(), **{k: v for k, v in fields.items() if v is not None}}
    return _fields.set(MappingProxyType(merged))


@contextlib.contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Binds fields for the code inside."""
    token = bind(**fields)
    try:
        yield
    finally:
        _fields.reset(token)
