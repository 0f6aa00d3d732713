"""No password reaches any output: the real ``sdbot`` process is fed secrets through every input
that takes a URL or a token, valid and invalid, and its stdout and stderr are searched for them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SECRET = "Hunter2-s3cret"


def sdbot(tmp_path: Path, args: list[str], env: dict[str, str]) -> tuple[int, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SDBOT_")} | {
        "SDBOT_DATA_DIR": str(tmp_path / "data"),
        "SDBOT_DEVICE": "cpu",
        "HF_HUB_OFFLINE": "1",
        **env,
    }
    result = subprocess.run(
        [sys.executable, "-m", "bot", *args],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    return result.returncode, result.stdout + result.stderr


S = SECRET
INPUTS = [
    # invalid: refused at start-up, the value named but masked
    ("SDBOT_DATABASE_URL", f"mysql+aiomysql://u:{S}@h/db", 2),
    ("SDBOT_DATABASE_URL", f"postgresql://u:{S}@h/db", 2),
    ("SDBOT_DATABASE_URL", f"postgresql+asyncpg://u:{S}@h/db?sslmode=require", 2),
    ("SDBOT_DATABASE_URL", f"postgresql+asyncpg://u:{S}@h:99999/db", 2),
    ("SDBOT_DATABASE_URL", f"postgresql+asyncpg://u:{S}@h/db?password={S}&sslmode=x", 2),
    ("SDBOT_DATABASE_URL", f"nosuch://u:{S}@h/db", 2),
    ("SDBOT_DATABASE_URL", f"postgresql+asyncpg://u:{S}@h:port/db", 2),
    ("SDBOT_REDIS_URL", f"redis://:{S}@[bad", 2),
    ("SDBOT_REDIS_URL", f"redis://u:{S}@h:port/0", 2),
    ("SDBOT_REDIS_URL", f"redis://u:{S}@h/zero", 2),
    ("SDBOT_REDIS_URL", f"http://u:{S}@h/0", 2),
    ("SDBOT_DISCORD_API_URL", f"ftp://u:{S}@proxy/api", 2),
    ("SDBOT_DISCORD_API_URL", f"proxy/api?token={S}", 2),
    ("SDBOT_DISCORD_GATEWAY_URL", f"https://u:{S}@proxy/?key={S}", 2),
    ("SDBOT_DISCORD_SHARD_COUNT", "many", 2),  # with the token set below: not echoed
    # valid: `sdbot config` shows them masked
    ("SDBOT_DATABASE_URL", f"postgresql+asyncpg://u:{S}@h/db?password={S}&token={S}", 0),
    ("SDBOT_REDIS_URL", f"redis://:{S}@h:6379/0?password={S}", 0),
    ("SDBOT_DISCORD_API_URL", f"https://u:{S}@proxy/api?token={S}&api_key={S}&v=10", 0),
    ("SDBOT_DISCORD_GATEWAY_URL", f"wss://u:{S}@proxy/?secret={S}&encoding=json", 0),
]


@pytest.mark.parametrize(("name", "value", "code"), INPUTS, ids=lambda v: str(v)[:40])
def test_no_secret_in_any_output(tmp_path: Path, name: str, value: str, code: int) -> None:
    env = {name: value, "SDBOT_DISCORD_TOKEN": f"token-{SECRET}"}
    for args in (["config"], ["config", "--json"]) if code == 0 else (["config"],):
        result, output = sdbot(tmp_path, args, env)  # a settings error is the same for all
        assert result == code, output
        assert SECRET not in output, (args, output)
        assert "***" in output or name == "SDBOT_DISCORD_SHARD_COUNT", output


def test_a_sqlite_url_with_secret_parameters_is_masked(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'x.db'}?password={SECRET}&key={SECRET}"
    for args in (["config"], ["db", "upgrade"], ["db", "current"], ["terms", "list"]):
        result, output = sdbot(tmp_path, args, {"SDBOT_DATABASE_URL": url})
        assert result == 0, output
        assert SECRET not in output, (args, output)
    _, output = sdbot(tmp_path, ["config"], {"SDBOT_DATABASE_URL": url})
    assert "?key=***&password=***" in output


def test_a_redis_that_refuses_the_connection_does_not_print_its_password(tmp_path: Path) -> None:
    env = {"SDBOT_REDIS_URL": f"redis://u:{SECRET}@127.0.0.1:1/0"}
    assert sdbot(tmp_path, ["db", "upgrade"], {})[0] == 0
    result, output = sdbot(tmp_path, ["imagine", "a cat", "--steps", "2", "--variants", "1"], env)
    assert result == 2
    assert SECRET not in output
    assert "127.0.0.1:1" in output
    assert len(output.splitlines()) == 1
