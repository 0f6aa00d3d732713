"""Log fields that follow a job: the job id, its guild and the worker, on every line logged while
they are bound (text or JSON lines: ``configure``).

``bound(job=…, guild=…, worker=…)`` binds fields for the code inside it, in this task and the
tasks it starts (contextvars); ``bind`` binds them for the rest of the current task. None
unbinds a field (``bound(job=None)``: a line about no job shows none, not an earlier one's).
Fields are plain values (ints and short strings), never a prompt. A thread starts with none
bound (run it in ``contextvars.copy_context()`` to carry them), and ``extra={"job": …}`` on
one call sets a field for that line alone. A task that outlives the job whose code starts it
(a queue's dispatcher, a lease renewer) starts in a context of its own,
``asyncio.create_task(…, context=contextvars.Context())``, or it shows that job for life.

``configure`` installs the one handler every process logs through, whatever library logs:
text lines as before with the bound fields appended, or one JSON object a line; both with the
secrets it is given (the bot token, the database and Redis passwords) replaced by ****, and
so are Discord's interaction and webhook tokens wherever they show (a route, a payload).
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import json
import logging
import re
import sys
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
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
    """Binds fields for the rest of this task (and the tasks it starts from now on); a None
    value unbinds that field."""
    merged = {**_fields.get(), **fields}
    return _fields.set(MappingProxyType(_present(**merged)))


def bind_job(job: int, guild: int | None = None) -> contextvars.Token[Mapping[str, Any]]:
    """Binds a job's fields for the rest of this task, replacing an earlier job's: a task that
    follows one job after another never shows the last one's guild or worker."""
    kept = {key: value for key, value in _fields.get().items() if key not in FIELDS}
    return _fields.set(MappingProxyType(kept | _present(job=job, guild=guild)))


def _present(**fields: Any) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not None}


@contextlib.contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Binds fields for the code inside (None: unbinds that one there)."""
    token = bind(**fields)
    try:
        yield
    finally:
        _fields.reset(token)


# --- configuring the process's logging --------------------------------------------------------

MASK = "****"
MIN_SECRET_LENGTH = 4  # shorter values would mask ordinary words and numbers
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
_format = "text"  # what ``configure`` set: ``say`` writes its lines the same way
# Discord's interaction and webhook tokens, which let anyone answer as the bot for 15 minutes:
# in a route (``/interactions/{id}/{token}/callback``, ``/webhooks/{id}/{token}/…``) and in a
# payload (``"token": "…"``, as JSON, escaped JSON or a dict's repr; the bot's IDENTIFY too).
_DISCORD_TOKENS = (
    (re.compile(r"/(interactions|webhooks)/(\d+)/[^/\s?#'\"\\]+"), rf"/\1/\2/{MASK}"),
    (re.compile(r"""(['"]token\\?['"]\s*:\s*\\?['"])[^'"\\]*"""), rf"\1{MASK}"),
)


class Redactor(logging.Filter):
    """Replaces each secret, and Discord's interaction and webhook tokens, with ****: in a
    record (its message rendered with its arguments, its traceback, its stack and its text
    extras), in any text (:meth:`redact`) and in the strings of a JSON-able value
    (:meth:`redact_value`).

    A secret is matched as given, URL-encoded (a password inside a logged URL) and JSON-escaped
    (inside a JSON line); values under 4 characters are not secrets worth the noise."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        forms = set()
        for secret in secrets:
            if secret and len(secret) >= MIN_SECRET_LENGTH:
                forms |= {secret, urllib.parse.quote(secret, safe=""), json.dumps(secret)[1:-1]}
        longest_first = sorted(forms, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, longest_first))) if forms else None

    def redact(self, text: str) -> str:
        if self._pattern is not None:
            text = self._pattern.sub(MASK, text)
        for pattern, replacement in _DISCORD_TOKENS:
            text = pattern.sub(replacement, text)
        return text

    def redact_value(self, value: Any) -> Any:
        """``value`` with its strings redacted, however deep in lists and dicts: masking a JSON
        line's values before it is written keeps it JSON (a secret "true" would turn
        ``"flag": true`` into ``"flag": ****``)."""
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, dict):
            return {key: self.redact_value(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.redact_value(item) for item in value]
        return value

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            record.msg, record.args = self.redact(record.getMessage()), None
        except Exception:  # arguments that do not fit: logging's report would show them bare
            record.msg = self.redact(f"{record.msg} (arguments that do not fit: {record.args!r})")
            record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        for key, value in _extras(record).items():
            if isinstance(value, str):
                setattr(record, key, self.redact(value))
        return True


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    """What the call gave with ``extra=`` (the attributes a plain record does not have)."""
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The job fields of a line: those bound where it was logged, then its own ``extra=``."""
    own = {key: getattr(record, key) for key in FIELDS if getattr(record, key, None) is not None}
    return {**current(), **own}


class TextFormatter(logging.Formatter):
    """The plain format, with the job fields appended: ``… [job=12 guild=34 worker=w1]``."""

    def __init__(self, redactor: Redactor, fmt: str = TEXT_FORMAT) -> None:
        super().__init__(fmt)
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = fields_of(record)
        if fields:
            tags = " ".join(f"{key}={fields[key]}" for key in FIELDS if key in fields)
            first, newline, rest = text.partition("\n")  # after the message, not the traceback
            text = f"{first} [{tags}]{newline}{rest}"
        return self.redactor.redact(text)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts (ISO-8601 UTC, ms), level, logger, msg, the job fields
    when bound, exc (the traceback) when there is one, and the call's JSON-able extras."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        line: dict[str, Any] = {
            "ts": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in _extras(record).items():
            if key not in FIELDS and key not in line and _jsonable(value):
                line[key] = value
        line.update(fields_of(record))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(self.redactor.redact_value(line), ensure_ascii=False, default=str)


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a line is logged (a test's capture, which is
    replaced from one test to the next, or the process's own)."""

    redactor = Redactor()

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure(level: int | str, fmt: str = "text", secrets: Iterable[str] = ()) -> None:
    """Sends every logger's lines to stderr through one handler, in ``fmt`` (text or json),
    with ``secrets`` masked; it replaces the one an earlier call installed (a test runner's
    handlers stay). Python's warnings become log lines too: masked, and in JSON, lines that
    parse."""
    global _format
    if fmt not in ("text", "json"):
        raise ValueError(f"log format must be text or json, got {fmt!r}")
    redactor = Redactor(secrets)
    handler = _StderrHandler()
    handler.redactor = redactor  # ``say``'s plain lines are masked with it too
    handler.addFilter(redactor)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(redactor))
    else:
        handler.setFormatter(TextFormatter(redactor))
    root = logging.getLogger()
    for old in root.handlers[:]:
        if isinstance(old, _StderrHandler):  # others' (a test runner's capture) stay
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
    adopt(*LIBRARIES)
    _format = fmt


LIBRARIES = ("diffusers", "transformers")  # they log past the root logger once imported


def adopt(*names: str) -> None:
    """Sends the named libraries' loggers through the root logger's handler: diffusers and
    transformers, once imported, log through a stderr handler of their own and stop there, so
    their lines would come out plain (no JSON, no masking, no job). A logger not created yet is
    left alone (naming it is no import); call this again once the library is imported."""
    for name in names:
        if name not in logging.root.manager.loggerDict:
            continue
        logger = logging.getLogger(name)
        for handler in logger.handlers[:]:
            if type(handler) is logging.StreamHandler:  # theirs: a plain one to stderr
                logger.removeHandler(handler)
        logger.propagate = True


def say(prefix: str, text: str, *, level: int = logging.INFO, **fields: Any) -> None:
    """A line the operator reads whatever the log level (``sdbot run: connected …``): plain
    ``prefix: text`` on stderr, or in JSON a line (at ``level``) from the logger the prefix
    names (``sdbot run`` → ``sdbot.run``), written even below the configured level
    (``fields``: extras on it, such as ``worker=``). Masked either way."""
    if _format != "json":
        print(_installed_redactor().redact(f"{prefix}: {text}"), file=sys.stderr, flush=True)
        return
    logger = logging.getLogger(".".join(prefix.split()[:2]))
    record = logger.makeRecord(logger.name, level, "", 0, text, (), None, extra=_present(**fields))
    logger.handle(record)


def _installed_redactor() -> Redactor:
    """The redactor of the handler ``configure`` installed (whoever put it back last)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, _StderrHandler):
            return handler.redactor
    return _StderrHandler.redactor
