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

from bot.cli import CommandFailed
from bot.imagine.service import ImagineService
from bot.imagine.types import Requester
from bot.settings import Settings
from common import logs
from fake_discord import FakeDiscord
from generation.options import RequestedOptions
from storage import migrations
from storage.records import Lease
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
    """`sdbot -vv run` in JSON against the fake Discord, which takes its own token, serving one
    /imagine: discord.py's debug lines (the gateway's payloads, INTERACTION_CREATE's included,
    the HTTP routes, the interaction's callback and webhook routes) never show the bot's token
    or the interaction's."""
    guild = fake_discord.create_guild("art club")
    channel = fake_discord.create_channel(guild, "images")
    ada = fake_discord.create_user("ada")
    fake_discord.add_member(guild, ada)
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
        interaction = await fake_discord.slash(ada, channel, "imagine", prompt="a red circle")
        posted = await fake_discord.wait_for(
            lambda: interaction.original and interaction.original.attachments, within=180
        )
        assert posted, read_log(log)
    finally:
        process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(process.wait, 60)
    output = read_log(log)
    assert code == 0, output
    assert fake_discord.token not in output, output
    assert interaction.token not in output, output
    assert f"/interactions/{interaction.id}/****/callback" in output  # a route, masked
    assert "'token': '****'" in output  # INTERACTION_CREATE's payload, masked
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


async def test_the_tasks_a_job_starts_for_good_never_show_it(
    service: ImagineService,
    configured: None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first job starts the lease renewer and the queue's dispatcher, which outlive it; the
    model process is killed before the second, which restarts it. No line after the first job
    shows it: the renewer's lines show no job, the restart's shows the job that caused it."""
    logs.configure(logging.INFO, "json")
    keeper = service.leases
    keeper.lease = Lease(keeper.lease.owner, 0.3)  # renewed every 0.1 s: lines to look at

    async def locked(lease: Lease) -> None:
        raise RuntimeError("database is locked (a test)")

    monkeypatch.setattr(keeper.leases, "renew_leases", locked)
    request = RequestedOptions(prompt="a red circle", steps=2, variants=1)
    member = Requester(source="test", guild_id=34, channel_id=340, user_id=3400)
    first = await asyncio.create_task(service.imagine(request, member))  # a task of its own
    supervisor = service.queue.supervisor  # type: ignore[attr-defined]
    os.kill(supervisor.pid, signal.SIGKILL)
    for _ in range(600):
        if not supervisor.alive:
            break
        await asyncio.sleep(0.1)
    logging.getLogger("sdbot.test").warning("killed")
    second = await asyncio.create_task(
        service.imagine(request, Requester(source="test", user_id=3401))
    )
    err = capsys.readouterr().err
    for _ in range(100):  # a renewal after the second job, at least
        await asyncio.sleep(0.1)
        err += (more := capsys.readouterr().err)
        if "could not renew" in more:
            break
    lines = json_lines(err)
    after = lines[next(i for i, line in enumerate(lines) if line["msg"] == "killed") :]
    leases = [line for line in lines if line["logger"] == "bot.imagine.leases"]
    assert leases, lines
    assert all("job" not in line and "guild" not in line for line in leases), leases
    assert not [line for line in after if line.get("job") == first.job_id], after
    ready = [line for line in lines if line["msg"].startswith("worker ready")]
    assert [(line.get("job"), line.get("guild")) for line in ready] == [
        (first.job_id, 34),
        (second.job_id, None),
    ], ready


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


def test_none_unbinds_a_field_there(configured: None, capsys: pytest.CaptureFixture[str]) -> None:
    """A line about no job (a batch's model loading, said by a task that once saw a job) shows
    no job at all, not the one bound around it."""
    logs.configure(logging.INFO, "json")
    log = logging.getLogger("sdbot.test")
    with logs.bound(job=12, guild=34, worker="w1"):
        with logs.bound(job=None):
            assert logs.current() == {"guild": 34, "worker": "w1"}
            log.info("about no job")
        log.info("about 12")
        logs.bind(guild=None)
        assert logs.current() == {"job": 12, "worker": "w1"}
    first, second = json_lines(capsys.readouterr().err)
    assert ("job" in first, first["guild"], second["job"]) == (False, 34, 12)


def test_say_masks_a_proxy_password_in_text_too(
    configured: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """`sdbot run` says the API URL it connected to: a REST proxy's password in it is masked,
    by ``run`` itself and by ``say`` whatever it is given (text is the default format)."""
    from bot.cli import secrets_of
    from bot.masking import mask_web_url

    proxy = f"https://bot:{SECRET}@proxy.example/api/v10"
    settings = Settings(_env_file=None, discord_api_url=proxy)
    assert SECRET not in mask_web_url(proxy)
    logs.configure(logging.WARNING, "text", secrets_of(settings))
    logs.say("sdbot run", f"connected to Discord as bot (1) at {proxy}, 0 guilds")
    err = capsys.readouterr().err
    masked = "https://bot:****@proxy.example/api/v10"
    assert err == f"sdbot run: connected to Discord as bot (1) at {masked}, 0 guilds\n"


def test_masking_keeps_a_json_line_json(
    configured: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """A secret that is also a JSON word ("true", "null") is masked in the strings only, before
    the line is written: the line still parses, its other values as they were."""
    logs.configure(logging.INFO, "json", ["true", "null", SECRET])
    logging.getLogger("sdbot.test").info(
        "it is true", extra={"flag": True, "none": None, "said": ["null and void", SECRET]}
    )
    (line,) = json_lines(capsys.readouterr().err)
    assert (line["msg"], line["flag"], line["none"], line["said"]) == (
        "it is ****",
        True,
        None,
        ["**** and void", "****"],
    )


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_interaction_and_webhook_tokens_are_masked(
    fmt: str, configured: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """As discord.py logs them at DEBUG: an interaction's callback route, a webhook route (the
    interaction's followups) and INTERACTION_CREATE's payload (a dict's repr), with no secret
    given to ``configure``; the ids stay."""
    token = "aW50ZXJhY3Rpb246MTIzNDU2Nzg5-MDEyMzQ1Njc4OTp.abc_DEF"
    logs.configure(logging.DEBUG, fmt)
    api = "https://discord.com/api/v10"
    http = logging.getLogger("discord.http")
    http.debug("POST %s/interactions/123/%s/callback with None has returned 204", api, token)
    hook = logging.getLogger("discord.webhook.async_")
    hook.debug("Webhook ID %s with PATCH %s/webhooks/456/%s/messages/@original", 456, api, token)
    payload = {"t": "INTERACTION_CREATE", "d": {"id": "123", "token": token, "type": 2}}
    logging.getLogger("discord.gateway").debug("WebSocket Event: %s", payload)
    logging.getLogger("sdbot.test").info("as JSON: %s", json.dumps(payload))
    err = capsys.readouterr().err
    assert token not in err, err
    assert "/interactions/123/****/callback" in err
    assert "/webhooks/456/****/messages/@original" in err
    assert "'token': '****'" in err
    assert '"token": "****"' in err or '\\"token\\": \\"****\\"' in err
    if fmt == "json":
        json_lines(err)


def test_diffusers_and_transformers_log_through_the_handler(tmp_path: Path) -> None:
    """Once imported they log past the root logger, plain: the model process hands them to it
    (``generation.worker``), and ``configure`` does for libraries imported before it; in JSON
    every line of theirs is a JSON line."""
    script = """
import logging
import diffusers.utils.logging as diffusers_logging
diffusers_logging.get_logger("diffusers.pipelines").warning("imported before configure")
from common import logs
logs.configure(logging.INFO, "json")
diffusers_logging.get_logger("diffusers.pipelines").warning("from diffusers")
from generation.worker import _adopt_library_logs
_adopt_library_logs()
import transformers.utils.logging as transformers_logging
with logs.bound(job=5):
    transformers_logging.get_logger("transformers.modeling_utils").warning("from transformers")
"""
    # Not the verbosity a model loaded in this test process set (generation.loading): the
    # libraries' own default, warnings shown.
    quiet = ("DIFFUSERS_VERBOSITY", "TRANSFORMERS_VERBOSITY")
    environment = {k: v for k, v in os.environ.items() if k not in quiet}
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=environment,
    )
    assert result.returncode == 0, result.stderr
    lines = json_lines(result.stderr.split("imported before configure\n", 1)[1])
    assert [(line["logger"], line["msg"], line.get("job")) for line in lines] == [
        ("diffusers.pipelines", "from diffusers", None),
        ("transformers.modeling_utils", "from transformers", 5),
    ]


def _main_with(
    handler_error: BaseException, fmt: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> int:
    """``sdbot``'s ``main`` in this process, with a command whose handler raises ``error``."""
    import argparse

    import bot.cli

    async def handler(args: argparse.Namespace, settings: Settings) -> int:
        raise handler_error

    parser = argparse.ArgumentParser(prog="sdbot")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    parser.set_defaults(handler=handler)
    monkeypatch.setattr(bot.cli, "build_parser", lambda: parser)
    monkeypatch.chdir(tmp_path)  # no .env
    for name in [name for name in os.environ if name.startswith("SDBOT_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SDBOT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SDBOT_LOG_FORMAT", fmt)
    monkeypatch.setenv("SDBOT_DISCORD_TOKEN", TOKEN)
    return bot.cli.main([])


@pytest.mark.parametrize(
    ("error", "code", "text", "level"),
    [
        (CommandFailed(f"refused {TOKEN}"), 1, "sdbot: error: refused ****\n", "ERROR"),
        (asyncio.CancelledError(), 130, "sdbot: interrupted\n", "ERROR"),  # as by Ctrl-C
        (RuntimeError(f"a bug {TOKEN}"), 1, None, "CRITICAL"),
    ],
)
def test_the_cli_own_lines_are_json_lines_in_json(
    error: BaseException,
    code: int,
    text: str | None,
    level: str,
    configured: None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """An error, an interrupt and a bug's traceback: one JSON line each (masked) when logs are
    JSON; in text the lines as ever (scripts read ``sdbot: error: …``) and a bug's traceback
    raised."""
    assert _main_with(error, "json", monkeypatch, tmp_path) == code
    (line,) = json_lines(capsys.readouterr().err)
    assert (line["logger"], line["level"]) == ("sdbot", level)
    assert_no_secret(json.dumps(line))
    if text is None:
        assert "RuntimeError: a bug ****" in line["exc"]
        with pytest.raises(RuntimeError):
            _main_with(error, "text", monkeypatch, tmp_path)
    else:
        assert _main_with(error, "text", monkeypatch, tmp_path) == code
        assert capsys.readouterr().err == text
