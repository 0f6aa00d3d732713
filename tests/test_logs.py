"""Structured logs: JSON lines on request whose job lines carry the job's id (the model
process's too), and no token or password in any output, whichever library logs it."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from bot.imagine.service import ImagineService
from bot.imagine.types import Requester
from bot.settings import Settings
from common import logs
from fake_discord import FakeDiscord
from generation.options import RequestedOptions
from storage import migrations
from tests.conftest import REDIS_URL
from tests.processes import read_log, wait_for_line
from tests.test_cli import sdbot

TOKEN = "MTk4NjIyNDgzNDcx.fake-Token.Xq7-never-LOGGED"
PASSWORD = "Pg-pass/w0rd:never@logged"  # URL-encoded in the URL, parsed back by the settings
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def json_lines(stderr: str) -> list[dict[str, Any]]:
    """Every line of stderr as its JSON object; fails on a line that is not one."""
    lines = []
    for text in stderr.splitlines():
        try:
            line = json.loads(text)
        except json.JSONDecodeError:
            raise AssertionError(f"not a JSON line: {text!r}") from None
        assert {"ts", "level", "logger", "msg"} <= set(line), text
        assert TS.match(line["ts"]), text
        lines.append(line)
    return lines


def assert_no_secret(*outputs: str) -> None:
    for output in outputs:
        for secret in (TOKEN, PASSWORD, PASSWORD.replace("/", "%2F").replace(":", "%3A")):
            assert secret not in output, f"{secret!r} in:\n{output}"


# --- the real process --------------------------------------------------------------------------


def test_json_lines_carry_the_job_from_the_bot_and_the_model_process(settings: Settings) -> None:
    """`sdbot -vv imagine` in JSON: every stderr line is a JSON object; the lines about the job,
    the model process's included, carry its id. The token, in the prompt here, is logged by
    aiosqlite's debug lines (the statement's parameters) and must come out masked."""
    upgraded = sdbot(settings, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    result = sdbot(
        settings,
        "-vv",
        *["imagine", f"a portrait of {TOKEN}", "--steps", "2", "--variants", "1", "--json"],
        SDBOT_LOG_FORMAT="json",
        SDBOT_DISCORD_TOKEN=TOKEN,
    )
    assert result.returncode == 0, result.stderr
    job_id = json.loads(result.stdout)["job_id"]
    lines = json_lines(result.stderr)
    assert_no_secret(result.stderr)
    assert "a portrait of ****" in result.stderr  # a line that showed it, masked

    about_the_job = [line for line in lines if re.search(rf"\bjob {job_id}\b", line["msg"])]
    assert about_the_job, result.stderr
    assert all(line.get("job") == job_id for line in about_the_job), about_the_job
    followed = [line for line in lines if line["logger"] == "bot.imagine.following"]
    assert followed, result.stderr
    assert all(line["job"] == job_id for line in followed), followed
    assert all(line.get("worker") == "local" for line in followed), followed  # Started's worker

    # The model process names itself by its pid (the bot's lines name the queue's worker).
    in_the_model_process = [line for line in lines if str(line.get("worker")).isdigit()]
    assert any(line.get("job") == job_id for line in in_the_model_process), result.stderr
    assert any(line["msg"].startswith("ready ◆") for line in in_the_model_process)


@pytest.fixture
def secret_postgres(postgres_url: str) -> str:
    """A fresh PostgreSQL database reached with a password (trust auth takes any)."""
    return make_url(postgres_url).set(password=PASSWORD).render_as_string(hide_password=False)


async def test_no_token_or_password_in_any_output(
    settings: Settings, secret_postgres: str, redis_prefix: str, tmp_path: Path
) -> None:
    """PostgreSQL with a password, Redis, the token set, -vv: the migration, a Redis worker, an
    imagine in JSON and in text, and commands refused for a bad value; nothing they print,
    on stdout or stderr, shows the token or the password."""
    env = {
        "SDBOT_DATABASE_URL": secret_postgres,
        "SDBOT_DISCORD_TOKEN": TOKEN,
        "SDBOT_REDIS_URL": REDIS_URL,
        "SDBOT_REDIS_PREFIX": redis_prefix,
    }
    outputs: list[str] = []

    def run(*args: str, **more: str) -> subprocess.CompletedProcess[str]:
        result = sdbot(settings, "-vv", *args, **(env | more))
        outputs.extend((result.stdout, result.stderr))
        return result

    assert run("db", "upgrade").returncode == 0, outputs[-1]
    log = tmp_path / "worker.log"
    json_env = env | {"SDBOT_LOG_FORMAT": "json"}
    worker = _start(settings, ["-vv", "worker", "--name", "w-logs"], log, json_env)
    try:
        await wait_for_line(log, "taking jobs from", within=180)
        imagine = ("imagine", "a red circle", "--steps", "2", "--variants", "1", "--json")
        for fmt in ("json", "text"):
            result = await asyncio.to_thread(run, *imagine, SDBOT_LOG_FORMAT=fmt)
            assert result.returncode == 0, result.stderr
            assert json.loads(result.stdout)["status"] == "succeeded"
        refused = await asyncio.to_thread(run, *imagine, "--steps", "0", SDBOT_LOG_FORMAT="json")
        assert refused.returncode == 2, refused.stderr
        bad = await asyncio.to_thread(run, "config", SDBOT_MAX_QUEUE_DEPTH="none")
        assert bad.returncode == 2, bad.stderr
        assert "SDBOT_MAX_QUEUE_DEPTH" in bad.stderr
        unreachable = make_url(secret_postgres).set(port=1).render_as_string(hide_password=False)
        down = await asyncio.to_thread(run, *imagine, SDBOT_DATABASE_URL=unreachable)
        assert down.returncode != 0, down.stderr
    finally:
        worker.send_signal(signal.SIGTERM)
        await asyncio.to_thread(worker.wait, 60)
    outputs.append(read_log(log))
    assert '"logger": "generation.worker"' in outputs[-1]  # the worker's model process logged
    assert_no_secret(*outputs)


async def test_sdbot_run_never_logs_its_token(
    fake_discord: FakeDiscord, settings: Settings, tmp_path: Path
) -> None:
    """`sdbot -vv run` in JSON against the fake Discord, which takes its own token: discord.py's
    debug lines (the gateway's payloads, the HTTP routes) never show it."""
    await asyncio.to_thread(migrations.upgrade, settings.effective_database_url())
    log = tmp_path / "run.log"
    env = {
        "SDBOT_DISCORD_TOKEN": fake_discord.token,
        "SDBOT_DISCORD_API_URL": fake_discord.api_url,
        "SDBOT_DISCORD_GATEWAY_URL": fake_discord.gateway_url,
        "SDBOT_LOG_FORMAT": "json",
    }
    process = _start(settings, ["-vv", "run", "--ready-timeout", "0.05"], log, env)
    try:
        await wait_for_line(log, "connected to Discord as")
    finally:
        process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(process.wait, 60)
    output = read_log(log)
    assert code == 0, output
    assert fake_discord.token not in output, output
    json_from_discord = [
        json.loads(line) for line in output.splitlines() if line.startswith('{"ts"')
    ]
    assert any(line["logger"].startswith("discord.") for line in json_from_discord), output


def _start(settings: Settings, args: list[str], log: Path, env: dict[str, str]) -> Any:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SDBOT_")} | {
        "SDBOT_MODEL": settings.model,
        "SDBOT_DATA_DIR": str(settings.data_dir),
        "SDBOT_DATABASE_URL": settings.effective_database_url(),
        "SDBOT_DEVICE": "cpu",
        "HF_HUB_OFFLINE": "1",
        **env,
    }
    with log.open("w") as stderr:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "bot", *args],
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            text=True,
        )


async def test_a_followed_job_binds_its_guild_and_worker_for_the_rest_of_its_task(
    service: ImagineService, configured: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """The lines of a job followed in this process carry its job, its guild and the worker
    that took it, and so do the lines its task logs afterwards (posting it); the next job
    followed in the same task shows none of the first one's fields."""
    logs.configure(logging.INFO, "json")
    member = Requester(source="test", guild_id=34, channel_id=340, user_id=3400)
    request = RequestedOptions(prompt="a red circle", steps=2, variants=1)
    first = await service.imagine(request, member)
    logging.getLogger("bot.discord.delivery").warning("posting its result")
    second = await service.imagine(request, Requester(source="test", user_id=3400))
    lines = json_lines(capsys.readouterr().err)
    mine = [
        line
        for line in lines
        if line["logger"] in ("bot.imagine.following", "bot.discord.delivery")
    ]
    assert [
        (line["msg"].split(" ◆ ")[0], line.get("job"), line.get("guild"), line.get("worker"))
        for line in mine
    ] == [
        ("succeeded", first.job_id, 34, "local"),
        ("posting its result", first.job_id, 34, "local"),
        ("succeeded", second.job_id, None, "local"),
    ]


# --- the formatter and the redaction, in this process -----------------------------------------


@pytest.fixture
def configured() -> Iterator[None]:
    """Leaves the root logger as it found it (``configure`` installs its handler there)."""
    root = logging.getLogger()
    level, handlers = root.level, root.handlers[:]
    yield
    logs.configure(level)  # text again, for ``say``
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    logging.captureWarnings(False)


SECRET = "s3cret-Value"


def test_json_line_has_the_fields_the_extras_and_the_traceback(
    configured: None, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure(logging.INFO, "json", [SECRET])
    log = logging.getLogger("sdbot.test")
    with logs.bound(job=12, guild=34, worker="w1"):
        log.info("drawn %d images", 4, extra={"batch": [12, 13], "thing": object()})
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    log.debug("not at INFO")
    log.warning("alone", extra={"job": 7})
    first, second, third = json_lines(capsys.readouterr().err)
    assert {k: first[k] for k in ("level", "logger", "msg", "job", "guild", "worker", "batch")} == {
        "level": "INFO",
        "logger": "sdbot.test",
        "msg": "drawn 4 images",
        "job": 12,
        "guild": 34,
        "worker": "w1",
        "batch": [12, 13],
    }
    assert "thing" not in first  # not JSON-able: left out
    assert second["exc"].startswith("Traceback")
    assert "ValueError: boom" in second["exc"]
    assert (third["job"], "guild" in third) == (7, False)  # the binding ended with its block


def test_text_line_appends_the_bound_fields(
    configured: None, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure(logging.INFO, "text", [SECRET])
    log = logging.getLogger("sdbot.test")
    with logs.bound(job=12, worker="w1"):
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    log.info("plain")
    err = capsys.readouterr().err.splitlines()
    assert err[0].endswith(" ERROR sdbot.test: failed [job=12 worker=w1]"), err
    assert err[1] == "Traceback (most recent call last):"
    assert err[-1].endswith(" INFO sdbot.test: plain"), err


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_secrets_are_masked_whoever_logs_them(
    fmt: str, configured: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """In the message, its arguments, a traceback, an extra, URL-encoded, from the libraries'

    loggers; short values are no secrets."""
    password = "p@ss/word"
    logs.configure(logging.DEBUG, fmt, [SECRET, password, "", "abc"])
    logging.getLogger("discord.gateway").debug("IDENTIFY with %s", SECRET)
    logging.getLogger("sqlalchemy.pool").warning("postgresql://u:p%40ss%2Fword@h/db")
    logging.getLogger("aiohttp.client").info("Authorization: Bot %s", SECRET, extra={"h": SECRET})
    try:
        raise RuntimeError(f"login refused for {SECRET}")
    except RuntimeError:
        logging.getLogger("discord.client").exception("failed")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn(f"deprecated {SECRET}", DeprecationWarning, stacklevel=1)
    logging.getLogger("x").info("abc is too short to be one")
    err = capsys.readouterr().err
    for secret in (SECRET, password, "p%40ss%2Fword"):
        assert secret not in err, err
    assert err.count("****") >= 5, err
    assert "RuntimeError: login refused for ****" in err
    assert "abc is too short" in err
    if fmt == "json":
        json_lines(err)  # the warning became a JSON line too


def test_say_prints_a_line_or_logs_one_in_json(
    configured: None, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure(logging.WARNING, "text")
    logs.say("sdbot run", "connected")
    assert capsys.readouterr().err == "sdbot run: connected\n"
    logs.configure(logging.WARNING, "json", [SECRET])
    logs.say("sdbot worker w1", f"stopped {SECRET}", worker="w1")  # INFO, below the level
    (line,) = json_lines(capsys.readouterr().err)
    assert (line["logger"], line["level"], line["msg"], line["worker"]) == (
        "sdbot.worker",
        "INFO",
        "stopped ****",
        "w1",
    )


def test_a_bad_log_format_is_a_settings_error(settings: Settings) -> None:
    result = sdbot(settings, "config", SDBOT_LOG_FORMAT="xml")
    assert result.returncode == 2
    assert result.stderr.startswith("sdbot: error: invalid settings: SDBOT_LOG_FORMAT: ")
    assert len(result.stderr.splitlines()) == 1
