"""Hostile and careless input at the command line's edge: every refusal is one line that names
the value, with exit 2, and a request refused for what no database can hold is still recorded.

The CLI runs in-process (``bot.cli.main``) on a real SQLite file or PostgreSQL database.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.cli import main
from generation.errors import InvalidOption
from generation.options import ModelDefaults, OptionLimits, RequestedOptions, validate
from storage import migrations
from tests.conftest import require_service

Run = Callable[..., tuple[int, str, str]]
REDIS_URL = "redis://127.0.0.1:6379/0"


def one_line_error(err: str) -> str:
    assert err.endswith("\n"), err
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    line = err.strip()
    assert line.startswith("sdbot"), line
    assert ": error: " in line, line
    return line


def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, model_dir: Path, url: str) -> None:
    """The process environment ``sdbot`` reads its settings from, and nothing else."""
    import os

    for key in list(os.environ):
        if key.startswith("SDBOT_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    monkeypatch.setenv("SDBOT_MODEL", str(model_dir))
    monkeypatch.setenv("SDBOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SDBOT_DATABASE_URL", url)
    monkeypatch.setenv("SDBOT_DEVICE", "cpu")


def runner(capsys: pytest.CaptureFixture[str]) -> Run:
    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as stop:  # argparse: a usage error, or --help
            code = stop.code if isinstance(stop.code, int) else 2
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def cli(
    database_url: str,
    tmp_path: Path,
    model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Run:
    """``sdbot`` on a migrated database, on SQLite and on PostgreSQL."""
    cli_env(monkeypatch, tmp_path, model_dir, database_url)
    migrations.upgrade(database_url)
    return runner(capsys)


@pytest.fixture
def sqlite_cli(
    sqlite_url: str,
    tmp_path: Path,
    model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Run:
    cli_env(monkeypatch, tmp_path, model_dir, sqlite_url)
    migrations.upgrade(sqlite_url)
    return runner(capsys)


def exported(run: Run) -> list[dict[str, Any]]:
    code, out, err = run("audit", "export", "--format", "jsonl")
    assert code == 0, err
    return [json.loads(line) for line in out.splitlines()]


# --- requests the database cannot hold --------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "named", "stored_prompt", "stored_negative"),
    [
        (
            ["a cat\udcff"],
            "prompt must be valid UTF-8 text, got 'a cat\\udcff'",
            "a cat\\udcff",
            "",
        ),
        (
            ["a\x00cat"],
            "prompt must be text without NUL characters, got 'a\\x00cat'",
            "a\\x00cat",
            "",
        ),
        (
            ["a cat", "--negative", "dogs\udcfe"],
            "negative prompt must be valid UTF-8 text, got 'dogs\\udcfe'",
            "a cat",
            "dogs\\udcfe",
        ),
        (
            ["a cat", "--negative", "\x00"],
            "negative prompt must be text without NUL characters, got '\\x00'",
            "a cat",
            "\\x00",
        ),
    ],
)
def test_unstorable_text_is_refused_and_recorded(
    cli: Run, args: list[str], named: str, stored_prompt: str, stored_negative: str
) -> None:
    code, out, err = cli("imagine", *args, "--steps", "2", "--variants", "1", "--guild", "42")
    assert (code, out) == (2, "")
    line = one_line_error(err)
    assert named in line
    assert "(recorded as job 1, refused)" in line
    (job,) = exported(cli)
    assert job["status"] == "refused"
    assert (job["prompt"], job["negative_prompt"]) == (stored_prompt, stored_negative)
    assert job["guild_id"] == 42
    assert named in job["error"]


@pytest.mark.parametrize("guild", [str(2**63), str(2**64 + 5), "-1", "0"])
def test_imagine_for_a_guild_id_beyond_64_bits_is_refused_and_recorded(
    cli: Run, guild: str
) -> None:
    code, _, err = cli("imagine", "a cat", "--steps", "2", "--guild", guild)
    line = one_line_error(err)
    assert code == 2
    assert f"a guild id must be a whole number from 1 to 2^63-1, got {guild}" in line
    (job,) = exported(cli)
    assert (job["status"], job["guild_id"], job["prompt"]) == ("refused", None, "a cat")


def test_invalid_options_with_unstorable_text_are_refused_without_a_record(cli: Run) -> None:
    code, _, err = cli("imagine", "a\x00", "--steps", "0")
    assert code == 2
    assert "steps must be a whole number from 1 to 50, got 0" in one_line_error(err)
    assert exported(cli) == []


@pytest.mark.parametrize("text", ["clown\udcff", "clo\x00wn"])
def test_list_entries_the_database_cannot_hold_are_refused(cli: Run, text: str) -> None:
    for command in ("add", "remove"):
        code, _, err = cli("terms", command, text, "--guild", "5")
        assert code == 2
        allowed = "text without NUL characters" if "\x00" in text else "valid UTF-8 text"
        assert f"term must be {allowed}, got {text!r}" in one_line_error(err)
        assert repr(text) in err
    code, out, _ = cli("terms", "list", "--json")
    assert (code, json.loads(out)) == (0, [])


@pytest.mark.parametrize("text", ["nude\udcff", "nu\x00de"])
def test_moderate_refuses_unstorable_text(sqlite_cli: Run, text: str) -> None:
    for args in ([text], ["a cat", "--negative", text]):
        code, out, err = sqlite_cli("moderate", *args)
        assert (code, out) == (2, "")
        assert repr(text) in one_line_error(err)


GUILD_COMMANDS = [
    ["imagine", "x", "--steps", "0", "--guild"],
    ["moderate", "x", "--guild"],
    ["terms", "add", "clown", "--guild"],
    ["terms", "remove", "clown", "--guild"],
    ["terms", "list", "--guild"],
    ["audit", "export", "--guild"],
    ["bench", "moderation", "--guild"],
    ["discord", "sync", "--guild"],
    ["guild", "show"],
    ["guild", "set", "--max-steps", "3", "--"],
]


@pytest.mark.parametrize("command", GUILD_COMMANDS, ids=lambda c: " ".join(c[:2]))
@pytest.mark.parametrize("guild", [str(2**63), "-5", "abc"])
def test_every_guild_argument_refuses_ids_beyond_64_bits(
    sqlite_cli: Run, command: list[str], guild: str
) -> None:
    if command[0] == "imagine" and guild != "abc":
        return  # imagine records the request: the test above
    code, out, err = sqlite_cli(*command, guild)
    assert (code, out) == (2, "")
    line = one_line_error(err)
    assert "guild id must be a whole number from 1 to 2^63-1" in line or "invalid int" in line
    assert guild in line


# --- what crashed ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("since", "code"),
    [
        ("0001-01-01", 0),
        ("0001-01-01T00:00:00+00:00", 0),
        ("9999-12-31T23:59:59", 0),
        ("9999-12-31T23:59:59.999999+00:00", 0),
        ("0001-01-01T00:00+01:00", 2),
        ("9999-12-31T23:59:59-01:00", 2),
        ("10000-01-01", 2),
        ("tomorrow", 2),
    ],
)
def test_since_at_the_ends_of_the_date_range(cli: Run, since: str, code: int) -> None:
    result, out, err = cli("audit", "export", "--since", since)
    assert result == code, err
    if code:
        assert repr(since) in one_line_error(err)
    else:
        assert (out, err) == ("", "")


def test_a_pattern_with_version0_is_refused(sqlite_cli: Run) -> None:
    for pattern in ("(?V0)nude", "nu(?V0)de", "(?V0:nude)"):
        code, _, err = sqlite_cli("terms", "add", pattern, "--regex")
        assert code == 2
        assert f"the pattern {pattern!r} is not a valid regular expression" in one_line_error(err)


def test_pndm_is_refused_below_its_warm_up_before_any_worker(sqlite_cli: Run) -> None:
    for steps in ("1", "2", "3"):
        code, _, err = sqlite_cli("imagine", "a cat", "--scheduler", "pndm", "--steps", steps)
        assert code == 2
        assert "steps must be at least 4 with the pndm scheduler" in one_line_error(err)
        assert err.strip().endswith(f"got {steps}")
    assert exported(sqlite_cli) == []
    limits, defaults = OptionLimits(), ModelDefaults(steps=2, scheduler="pndm")
    with pytest.raises(InvalidOption, match="at least 4 with the pndm"):
        validate(RequestedOptions("a cat"), limits, defaults)  # the model's default steps too
    assert validate(RequestedOptions("a cat", steps=4), limits, defaults).steps == 4


def huge_png(path: Path, width: int, height: int) -> None:
    """A PNG whose header says width × height, with almost no pixel data behind it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def test_trace_refuses_a_picture_above_the_pixel_limit_before_decoding(
    sqlite_cli: Run, tmp_path: Path
) -> None:
    picture = tmp_path / "huge.png"
    huge_png(picture, 12_000, 12_000)
    started = time.monotonic()
    code, _, err = sqlite_cli("trace", str(picture))
    assert time.monotonic() - started < 5  # decoding it took 32 s and 3.5 GB
    assert code == 2
    line = one_line_error(err)
    assert f"image {picture} is 12000x12000 (144 megapixels)" in line
    assert "at most 50 megapixels" in line


@pytest.mark.parametrize(
    ("name", "value", "named"),
    [
        (
            "SDBOT_WORKER_RECLAIM_S",
            "inf",
            "SDBOT_WORKER_RECLAIM_S: Input should be a finite number",
        ),
        ("SDBOT_JOB_STALL_TIMEOUT_S", "nan", "SDBOT_JOB_STALL_TIMEOUT_S: Input should be a finite"),
        ("SDBOT_MAX_GUIDANCE", "-inf", "SDBOT_MAX_GUIDANCE: Input should be a finite number"),
        ("SDBOT_NSFW_THRESHOLD", "NaN", "SDBOT_NSFW_THRESHOLD: Input should be a finite number"),
        ("SDBOT_USER_IMAGES_PER_HOUR", "1e-306", "SDBOT_USER_IMAGES_PER_HOUR: must be from 0.1"),
        ("SDBOT_GUILD_IMAGES_PER_HOUR", "1e9", "to 1000000 standard images, got 1000000000.0"),
        ("SDBOT_USER_BURST", "0.01", "SDBOT_USER_BURST: must be from 0.1 to 1000000"),
        ("SDBOT_GUILD_BURST", "1e-306", "SDBOT_GUILD_BURST: must be from 0.1 to 1000000"),
        ("SDBOT_DATA_DIR", "~nosuchuser-sdbot/data", "'~nosuchuser-sdbot/data' names a home"),
        ("SDBOT_OUTPUT_DIR", "~nosuchuser-sdbot", "SDBOT_OUTPUT_DIR: '~nosuchuser-sdbot' names"),
        ("SDBOT_MAX_STEPS", "abc", "SDBOT_MAX_STEPS: Input should be a valid integer"),
        ("SDBOT_DATABASE_URL", "mysql+aiomysql://u@h/db", "mysql+aiomysql is not one it supports"),
        ("SDBOT_DATABASE_URL", "postgresql+asyncpg://u@h/db?sslmode=require", "not ?sslmode="),
        ("SDBOT_DATABASE_URL", "postgresql+asyncpg://u@h:70000/db", "port 70000 is not from 1"),
        ("SDBOT_DATABASE_URL", "nosuchdb://u@h/db", "nosuchdb is not one it supports"),
        ("SDBOT_REDIS_URL", "redis://[bad", "'redis://[bad' is not a Redis URL: Invalid IPv6"),
        ("SDBOT_REDIS_URL", "redis://h:port/0", "is not a Redis URL: Port could not be cast"),
        ("SDBOT_REDIS_URL", "redis://h:99999/0", "is not a Redis URL: Port out of range"),
        ("SDBOT_REDIS_URL", "http://h", "is not a Redis URL: Redis URL must specify one of"),
        ("SDBOT_REDIS_URL", "redis://h/zero", "names database 'zero'; a Redis database is a num"),
        ("SDBOT_REDIS_URL", "redis://h/-1", "names database '-1'"),
    ],
)
def test_bad_settings_are_one_line_that_names_them(
    sqlite_cli: Run, monkeypatch: pytest.MonkeyPatch, name: str, value: str, named: str
) -> None:
    monkeypatch.setenv(name, value)
    code, out, err = sqlite_cli("config")
    assert (code, out) == (2, "")
    line = one_line_error(err)
    assert line.startswith("sdbot: error: invalid settings: ")
    assert named in line
    assert "errors.pydantic.dev" not in line


def test_settings_errors_together_are_one_line(
    sqlite_cli: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SDBOT_MAX_STEPS", "0")
    monkeypatch.setenv("SDBOT_WORKER_RECLAIM_S", "inf")
    code, _, err = sqlite_cli("config")
    assert code == 2
    assert one_line_error(err) == (
        "sdbot: error: invalid settings: SDBOT_MAX_STEPS: Input should be greater than or equal "
        "to 1, got '0'; SDBOT_WORKER_RECLAIM_S: Input should be a finite number, got 'inf'"
    )


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--user-images-per-hour", "1e-306"),
        ("--guild-images-per-hour", "1e-306"),
        ("--user-images-per-hour", "0.09"),
        ("--user-images-per-hour", "inf"),
        ("--guild-images-per-hour", "nan"),
        ("--guild-images-per-hour", "2e6"),
        ("--user-images-per-hour", "-1"),
        ("--user-images-per-hour", "many"),
    ],
)
def test_guild_rates_outside_what_the_limiter_can_wait_for_are_refused(
    cli: Run, flag: str, value: str
) -> None:
    code, out, err = cli("guild", "set", "7", flag, value)
    assert (code, out) == (2, "")
    line = one_line_error(err)
    assert f"a rate must be from 0.1 to 1000000 standard images an hour, got {value!r}" in line
    code, out, _ = cli("guild", "show", "7")
    assert code == 0
    limit = "member limit" if flag == "--user-images-per-hour" else "guild limit"
    shown = next(line for line in out.splitlines() if line.strip().startswith(limit))
    assert "(default)" in shown, out


def test_guild_rates_at_the_ends_of_the_range_are_taken(cli: Run) -> None:
    code, out, err = cli("guild", "set", "7", "--user-images-per-hour", "0.1")
    assert code == 0, err
    assert "member limit    0.1 standard images an hour" in out
    code, out, err = cli("guild", "set", "7", "--guild-images-per-hour", "1000000")
    assert code == 0, err
    assert "guild limit     1e+06 standard images an hour" in out


# --- Redis that is not there, not Redis, or not what the URL says --------------------------------


@pytest.fixture
def not_redis() -> Iterator[int]:
    """A server on a free loopback port that answers like a web server."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(2)
                try:
                    connection.recv(4096)
                    connection.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        stop.set()
        thread.join()
        server.close()


def test_a_server_that_is_not_redis_is_one_line(
    sqlite_cli: Run, monkeypatch: pytest.MonkeyPatch, not_redis: int
) -> None:
    monkeypatch.setenv("SDBOT_REDIS_URL", f"redis://:pw-not-shown@127.0.0.1:{not_redis}/0")
    for command in (["imagine", "a cat", "--steps", "2", "--variants", "1"], ["worker"]):
        code, _, err = sqlite_cli(*command)
        assert code == 2
        line = one_line_error(err)
        assert f"Redis redis://:***@127.0.0.1:{not_redis}/0" in line
        assert "pw-not-shown" not in line


@pytest.mark.redis
def test_a_missing_redis_database_is_one_line(
    sqlite_cli: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_service("Redis", REDIS_URL, 6379)
    monkeypatch.setenv("SDBOT_REDIS_URL", "redis://127.0.0.1:6379/99999")
    code, _, err = sqlite_cli("imagine", "a cat", "--steps", "2", "--variants", "1")
    assert code == 2
    assert one_line_error(err) == (
        "sdbot: error: Redis redis://127.0.0.1:6379/99999: ResponseError: DB index is out of range"
    )
    assert exported(sqlite_cli) == []


@pytest.mark.redis
def test_tls_to_a_plain_redis_port_is_one_line(
    sqlite_cli: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_service("Redis", REDIS_URL, 6379)
    monkeypatch.setenv("SDBOT_REDIS_URL", "rediss://127.0.0.1:6379/0")
    code, _, err = sqlite_cli("imagine", "a cat", "--steps", "2", "--variants", "1")
    assert code == 2
    assert one_line_error(err).startswith("sdbot: error: Redis rediss://127.0.0.1:6379/0: ")
