"""The command line as a user runs it: real processes, a real SQLite file, the embedded model."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from bot.settings import Settings
from generation.models import EMBEDDED_MODEL_DIR
from storage.engine import create_engine, create_session_factory
from storage.models import TermKind
from storage.terms import TermList
from tests.test_models_discord import SHIPPED_LORA, make_lora


def sdbot(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return python(settings, "-m", "bot", *args, **env)


def python(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """This Python, in the environment sdbot gets from ``settings``."""
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("SDBOT_")
    } | {
        "SDBOT_MODEL": settings.model,
        "SDBOT_DATA_DIR": str(settings.data_dir),
        "SDBOT_DATABASE_URL": settings.effective_database_url(),
        "SDBOT_DEVICE": "cpu",
        "HF_HUB_OFFLINE": "1",
        **env,
    }
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=240,
        check=False,
    )


@pytest.fixture
def migrated(settings: Settings) -> Settings:
    result = sdbot(settings, "db", "upgrade")
    assert result.returncode == 0, result.stderr
    return settings


def imagine_json(settings: Settings, *args: str) -> dict[str, Any]:
    result = sdbot(settings, "imagine", *args, "--json")
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def test_imagine_trace_and_reproduce(migrated: Settings, tmp_path: Path) -> None:
    first = imagine_json(migrated, "a red circle", "--variants", "4", "--seed", "1")
    assert first["status"] == "succeeded"
    assert first["seeds"] == [1, 2, 3, 4]
    paths = [Path(image["path"]) for image in first["images"]]
    assert len(paths) == 4
    for image, path in zip(first["images"], paths, strict=True):
        with Image.open(path) as picture:
            assert min(picture.size) >= 256
        assert image["watermark"]["verified"] is True
        assert image["safety"]["verdict"] == "safe"
    grid = Path(first["grid"]["path"])
    with Image.open(grid) as picture:
        assert picture.size == (512, 512)

    for path in [*paths, grid]:
        traced = sdbot(migrated, "trace", str(path), "--json")
        assert traced.returncode == 0, traced.stderr
        record = json.loads(traced.stdout)
        assert record["job"]["id"] == first["job_id"]
        assert record["job"]["prompt"] == "a red circle"
    # The mark survives what happens to pictures once posted: JPEG q75, a resize to half and back.
    with Image.open(paths[1]) as picture:
        picture.convert("RGB").save(tmp_path / "shared.jpg", quality=75)
        half = picture.resize((picture.width // 2, picture.height // 2), Image.Resampling.BOX)
        half.resize(picture.size, Image.Resampling.BICUBIC).save(tmp_path / "resized.png")
    for copy in ("shared.jpg", "resized.png"):
        traced = sdbot(migrated, "trace", str(tmp_path / copy), "--json")
        assert traced.returncode == 0, (copy, traced.stderr)
        record = json.loads(traced.stdout)
        assert (record["job"]["id"], record["variant"]) == (first["job_id"], 2), copy
    human = sdbot(migrated, "trace", str(paths[2]))
    assert f"variant 3 of job {first['job_id']} (imagine, succeeded)" in human.stdout
    assert "seeds 1 2 3 4" in human.stdout
    assert "safety safe 0.0" in human.stdout
    assert "(threshold 0.5) · shown" in human.stdout

    again = imagine_json(
        migrated, "a red circle", "--variants", "4", "--seed", "1", "--out", str(tmp_path / "b")
    )
    assert again["job_id"] != first["job_id"]
    for before, after in zip(first["images"], again["images"], strict=True):
        pixels_before = np.asarray(Image.open(before["path"]))
        pixels_after = np.asarray(Image.open(after["path"]))
        # Same seed, same picture; only the watermark (another job id) differs, invisibly.
        assert np.abs(pixels_before.astype(int) - pixels_after.astype(int)).mean() < 1.0
    other = imagine_json(migrated, "a red circle", "--variants", "1", "--seed", "99")
    assert (
        np.abs(
            np.asarray(Image.open(other["images"][0]["path"])).astype(int)
            - np.asarray(Image.open(first["images"][0]["path"])).astype(int)
        ).mean()
        > 5.0
    )


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["imagine", ""], "prompt must be non-empty text, got ''"),
        (["imagine", "a cat", "--steps", "0"], "steps must be a whole number from 1 to 50, got 0"),
        # The embedded model draws well at 64 px only (128 drew scattered shapes; 1024 took
        # 76 s idle and stalled the worker under load): its one size.
        (["imagine", "a cat", "--width", "100"], "size must be one of 64x64 (1:1), got '100x64'"),
        (
            ["imagine", "a cat", "--height", "1024"],
            "size must be one of 64x64 (1:1), got '64x1024'",
        ),
        (["imagine", "a cat", "--aspect", "3:2"], "aspect must be one of 1:1, got '3:2'"),
        (["imagine", "a cat", "--model", "sd99"], "model must be one of embedded, got 'sd99'"),
        (
            ["imagine", "a cat", "SDBOT_MIN_SIDE=256"],
            "SDBOT_MIN_SIDE must be at most 128, the largest side this model serves "
            "(2 × its native 64 px), got 256",
        ),
        (
            ["imagine", "a cat", "--variants", "0"],
            "variants must be a whole number from 1 to 4, got 0",
        ),
        (["imagine", "a cat", "--scheduler", "nope"], "scheduler must be one of default, dpmpp"),
        (["imagine", "a cat", "--steps", "many"], "argument --steps: invalid int value: 'many'"),
        (["audit", "export", "--since", "yesterday"], "'yesterday' is not a date"),
    ],
)
def test_bad_input_exits_2_with_one_line(settings: Settings, args: list[str], reason: str) -> None:
    env = dict(arg.split("=", 1) for arg in args if arg.startswith("SDBOT_"))  # settings
    result = sdbot(settings, *(arg for arg in args if not arg.startswith("SDBOT_")), **env)
    assert result.returncode == 2
    assert reason in result.stderr
    assert len(result.stderr.strip().splitlines()[-1]) > 0
    if args[0] == "imagine" and "invalid" not in reason:
        assert result.stderr.strip().count("\n") == 0, result.stderr


@pytest.fixture(scope="session")
def lora_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the embedded model's shipped LoRA, else one made the same way."""
    folder = tmp_path_factory.mktemp("loras")
    if SHIPPED_LORA.is_file():
        shutil.copy(SHIPPED_LORA, folder)
    else:
        make_lora(folder)
    return folder


@pytest.mark.parametrize(
    ("loras", "reason"),
    [
        (["nope"], "lora must be one of outline, got 'nope'"),
        (["outline:3"], "lora weight must be a number from -2 to 2 (outline), got 3.0"),
        (["outline:x"], "lora must be NAME or NAME:WEIGHT, WEIGHT a number from -2 to 2, got"),
        (["outline:0.5,nope"], "lora must be one of outline, got 'nope'"),
        (["outline", "outline:0.5"], "lora must be each LoRA at most once, got 'outline'"),
    ],
)
def test_a_bad_lora_exits_2_with_one_line(
    settings: Settings, lora_dir: Path, loras: list[str], reason: str
) -> None:
    flags = [arg for lora in loras for arg in ("--lora", lora)]
    result = sdbot(settings, "imagine", "a cat", *flags, SDBOT_LORA_DIR=str(lora_dir))
    assert result.returncode == 2
    assert result.stderr.startswith(f"sdbot: error: {reason}"), result.stderr
    assert result.stderr.count("\n") == 1


def test_imagine_with_a_model_a_lora_and_an_aspect_names_them(
    migrated: Settings, lora_dir: Path
) -> None:
    args = ["a red circle", "--model", "embedded", "--lora", "outline:0.8", "--aspect", "1:1"]
    env = {"SDBOT_LORA_DIR": str(lora_dir)}
    result = sdbot(migrated, "imagine", *args, "--variants", "1", "--seed", "1", "--json", **env)
    assert result.returncode == 0, result.stderr
    drawn = json.loads(result.stdout)
    assert (drawn["model"], drawn["loras"]) == ("embedded", [{"name": "outline", "weight": 0.8}])
    assert (drawn["images"][0]["width"], drawn["embeddings"], drawn["notes"]) == (256, [], [])
    # A prompt past the text encoder's windows (8 of 30 tokens for the embedded model) is cut,
    # and the output says so.
    long = " ".join(["red"] * 249)  # 249 tokens in 995 characters
    said = sdbot(migrated, "imagine", long, "--lora", "outline", "--variants", "1", **env)
    assert said.returncode == 0, said.stderr
    assert "  model embedded · LoRA outline:1\n" in said.stdout
    assert "  note: prompt cut after 8 windows: 9 tokens dropped\n" in said.stdout


def test_a_second_model_is_loaded_and_the_output_says_how_long_it_took(
    migrated: Settings, tmp_path: Path
) -> None:
    models = tmp_path / "models.toml"
    models.write_text(
        f'[[model]]\nname = "embedded"\nsource = "{EMBEDDED_MODEL_DIR}"\n'
        f'[[model]]\nname = "night"\nsource = "{EMBEDDED_MODEL_DIR}"\nnsfw_only = true\n'
    )
    env = {"SDBOT_MODELS_FILE": str(models)}
    refused = sdbot(migrated, "imagine", "a red circle", "--model", "night", **env)
    assert "error: the model 'night' is only for age-restricted (NSFW) channels" in refused.stdout
    args = ["a red circle", "--model", "night", "--nsfw-channel", "--variants", "1"]
    drawn = sdbot(migrated, "imagine", *args, **env)
    assert drawn.returncode == 0, drawn.stderr
    assert "  model night\n" in drawn.stdout
    assert re.search(r" s in all: loading the model \d+ ms, diffusion \d+ ms", drawn.stdout)


def test_a_broken_lora_file_is_a_settings_error_wherever_the_catalog_is_read(
    migrated: Settings, lora_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "half.safetensors").write_bytes(
        (lora_dir / "outline.safetensors").read_bytes()[:99]
    )
    for command in (["guild", "show", "5"], ["imagine", "a red circle"]):
        refused = sdbot(migrated, *command, SDBOT_LORA_DIR=str(tmp_path))
        assert refused.returncode == 2, (command, refused.stderr)
        assert refused.stderr.startswith("sdbot: error: SDBOT_LORA_DIR: "), refused.stderr
        assert "half.safetensors is not a safetensors file" in refused.stderr


def test_models_lists_the_models_loras_and_embeddings(settings: Settings, lora_dir: Path) -> None:
    env = {"SDBOT_LORA_DIR": str(lora_dir)}
    listed = json.loads(sdbot(settings, "models", "--json", **env).stdout)
    [model] = listed["models"]
    assert (model["name"], model["default"], model["family"]) == ("embedded", True, "sd1")
    assert (model["sizes"], model["nsfw_only"], model["loras"]) == (
        {"1:1": "64x64"}, False, ["outline"]
    )  # fmt: skip
    assert [(lora["name"], lora["fits"]) for lora in listed["loras"]] == [("outline", ["embedded"])]
    said = sdbot(settings, "models", **env)
    assert said.returncode == 0, said.stderr
    assert "  embedded (default): sd1 · 1:1 64x64\n" in said.stdout
    assert "  outline: fits embedded\n" in said.stdout
    broken = sdbot(settings, "models", SDBOT_MODELS_FILE=str(lora_dir / "none.toml"))
    assert broken.returncode == 2
    assert broken.stderr.startswith("sdbot: error: SDBOT_MODELS_FILE: "), broken.stderr
    # A LoRA file cut short is the operator's setting to fix, in every command that reads it.
    cut = lora_dir.parent / "cut-loras"
    cut.mkdir(exist_ok=True)
    (cut / "half.safetensors").write_bytes((lora_dir / "outline.safetensors").read_bytes()[:100])
    refused = sdbot(settings, "models", SDBOT_LORA_DIR=str(cut))
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.startswith("sdbot: error: SDBOT_LORA_DIR: "), refused.stderr
    assert "half.safetensors is not a safetensors file" in refused.stderr


def test_a_database_that_is_behind_is_refused(settings: Settings) -> None:
    result = sdbot(settings, "imagine", "a red circle")
    assert result.returncode == 2
    assert "has no sdbot schema yet" in result.stderr
    assert "run `sdbot db upgrade`" in result.stderr


def test_blocked_prompts_exit_3_and_are_audited(migrated: Settings, tmp_path: Path) -> None:
    moderated = sdbot(migrated, "moderate", "a nude portrait")
    assert moderated.returncode == 3
    assert moderated.stdout == "blocked: 'nude' is not allowed (default list)\n"
    assert sdbot(migrated, "moderate", "a naked mole rat").returncode == 0

    blocked = sdbot(migrated, "imagine", "a nude portrait", "--json")
    assert blocked.returncode == 3
    outcome = json.loads(blocked.stdout)
    assert outcome["status"] == "blocked"
    assert outcome["images"] == []

    export = tmp_path / "audit.csv"
    result = sdbot(migrated, "audit", "export", "--format", "csv", "--out", str(export))
    assert result.returncode == 0, result.stderr
    text = export.read_text()
    assert "a nude portrait" in text
    assert "'nude' is not allowed (default list)" in text
    lines = sdbot(migrated, "audit", "export", "--since", "2000-01-01").stdout.splitlines()
    assert [json.loads(line)["status"] for line in lines] == ["blocked"]
    assert sdbot(migrated, "audit", "export", "--guild", "5").stdout == ""


def test_guild_lists_and_policy_from_the_command_line(migrated: Settings) -> None:
    def ok(*args: str) -> str:
        result = sdbot(migrated, *args)
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert "added to the block list of guild 5" in ok("terms", "add", "clown*", "--guild", "5")
    ok("terms", "add", r"\bred\s+nose", "--regex", "--guild", "5", "--expires", "2h")
    ok("terms", "add", "swimsuit", "--kind", "force-safe", "--guild", "5")
    ok("terms", "add", "nude", "--kind", "allow", "--guild", "6")  # an art server

    blocked = sdbot(migrated, "moderate", "clowns with a red  nose", "--guild", "5", "--json")
    assert blocked.returncode == 3
    assert json.loads(blocked.stdout)["reasons"] == [
        "'clown' is not allowed (this server's list)",
        r"matches the pattern '\bred\s+nose' (this server's list)",
    ]
    assert sdbot(migrated, "moderate", "clowns with a red nose").returncode == 0  # other guilds
    safe = json.loads(ok("moderate", "a woman in a swimsuit", "--guild", "5", "--json"))
    assert (safe["allowed"], safe["force_safe"]) == (True, True)
    assert sdbot(migrated, "moderate", "a nude statue", "--guild", "6").returncode == 0
    assert sdbot(migrated, "moderate", "a nude child", "--guild", "6").returncode == 3
    negative = sdbot(migrated, "moderate", "portrait of a man", "--negative", "clothes")
    assert negative.returncode == 3

    listed = json.loads(ok("terms", "list", "--guild", "5", "--json"))
    assert [(row["kind"], row["term"], row["regex"]) for row in listed] == [
        ("block", "clown*", False),
        ("block", r"\bred\s+nose", True),
        ("force_safe", "swimsuit", False),
    ]
    assert listed[1]["expires_at"] is not None
    assert "removed" in ok("terms", "remove", "clown*", "--guild", "5")
    missing = sdbot(migrated, "terms", "remove", "clown*", "--guild", "5")
    assert (missing.returncode, missing.stderr) == (
        4,
        "sdbot: error: 'clown*' is not on the block list of guild 5\n",
    )

    shown = ok("guild", "set", "5", "--nsfw-policy", "spoiler", "--nsfw-threshold", "0.3")
    assert "nsfw policy     spoiler" in shown
    assert "nsfw threshold  0.3" in shown

    limited = ok("guild", "set", "5", "--user-images-per-hour", "30", "--max-jobs-per-user", "2")
    assert "member limit    30 standard images an hour, 4 saved up (own)" in limited
    assert "guild limit     600 standard images an hour, 40 saved up (default)" in limited
    assert "jobs per member 2 queued + running (own)" in limited
    zero = sdbot(migrated, "guild", "set", "5", "--max-jobs-per-user", "0")
    assert (zero.returncode, zero.stderr) == (
        2,
        "sdbot: error: max_jobs_per_user must be above 0 and at most 1000000, got 0\n",
    )
    # The same checks as /mod settings: a guild may be stricter than the bot, never laxer (the
    # embedded model's largest side is 128 px, twice its native 64).
    laxer = sdbot(migrated, "guild", "set", "5", "--max-side", "256")
    assert (laxer.returncode, laxer.stderr) == (
        2,
        "sdbot: error: max_side 256 is above the bot's limit of 128\n",
    )
    looser = sdbot(migrated, "guild", "set", "5", "--nsfw-threshold", "0.9")
    assert looser.stderr == (
        "sdbot: error: nsfw_threshold 0.9 is laxer than the bot's 0.5; "
        "a server can only be stricter (lower)\n"
    )
    assert "max side        128 px (default)" in ok("guild", "show", "5")
    narrowed = ok("guild", "set", "5", "--max-side", "96", "--channels", "11,12")
    assert "max side        96 px (own)" in narrowed
    assert "channels        11, 12" in narrowed
    assert "generation      running" in narrowed
    assert "channels        all" in ok("guild", "set", "5", "--channels", "all")
    bad = sdbot(migrated, "guild", "set", "5", "--channels", "#general")
    assert bad.stderr == (
        "sdbot: error: --channels must be channel ids separated by commas, or 'all'; "
        "got '#general'\n"
    )


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["terms", "add", "(a+)+$", "--regex"], "can take too long on some prompts"),
        (["terms", "add", "([", "--regex"], "is not a valid regular expression"),
        (["terms", "add", "a*b"], "'*' may only stand at the start or the end"),
        (["terms", "add", "x", "--expires", "soon"], "--expires 'soon' is not a duration like 30m"),
        (
            ["terms", "add", "x", "--expires", "2001-01-01"],
            "--expires '2001-01-01' is not in the future",
        ),
        (["terms", "add", "x", "--expires", "99999999w"], "--expires '99999999w' is too far away"),
        (["terms", "add", "x+", "--regex", "--kind", "allow"], "an allow entry is a term"),
        (["guild", "set", "5", "--nsfw-threshold", "2"], "nsfw_threshold must be in (0, 1], got 2"),
        (["guild", "set", "5"], "nothing to change"),
    ],
)
def test_bad_list_entries_are_refused(migrated: Settings, args: list[str], reason: str) -> None:
    result = sdbot(migrated, *args)
    assert result.returncode == 2
    assert reason in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_a_pattern_that_would_stall_is_refused_and_an_old_one_skipped(migrated: Settings) -> None:
    started = time.monotonic()
    refused = sdbot(migrated, "terms", "add", "a{1000000000}", "--regex", "--guild", "5")
    elapsed = time.monotonic() - started
    assert (refused.returncode, refused.stderr) == (
        2,
        "sdbot: error: the pattern 'a{1000000000}' repeats 1000000000 times; a count may be at "
        "most 1000 (no prompt is longer)\n",
    )
    assert elapsed < 60  # process start included; compiling it never finished (126 s)

    async def store_as_older_code_did() -> None:  # TermList stores what it is given
        engine = create_engine(migrated.effective_database_url())
        try:
            terms = TermList(create_session_factory(engine))
            await terms.add(5, TermKind.BLOCK, "a{5000000}", is_regex=True)
            await terms.add(5, TermKind.BLOCK, "clown")
        finally:
            await engine.dispose()

    asyncio.run(store_as_older_code_did())
    started = time.monotonic()
    checked = sdbot(migrated, "moderate", "a sad clown", "--guild", "5")
    elapsed = time.monotonic() - started
    assert checked.returncode == 3
    assert checked.stdout == "blocked: 'clown' is not allowed (this server's list)\n"
    assert "skipped list entry ◆ guild 5 ◆ block ◆ the pattern 'a{5000000}' repeats" in (
        checked.stderr
    )
    assert elapsed < 60  # it took 15 s and 1.5 GB to compile, at every change of the list


def test_a_model_that_cannot_load_fails_the_job_in_one_line(
    migrated: Settings, tmp_path: Path
) -> None:
    """A corrupt checkpoint is the operator's to mend: its reason, never the worker's
    traceback."""
    corrupt = tmp_path / "corrupt-model"
    shutil.copytree(migrated.model, corrupt)
    next((corrupt / "unet").glob("*.safetensors")).write_bytes(b"not a checkpoint")
    result = sdbot(migrated, "imagine", "a red circle", SDBOT_MODEL=str(corrupt))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert "could not start the worker: could not load model" in result.stdout
    assert "Unable to load weights from checkpoint file" in result.stdout


def test_trace_without_a_mark_exits_4(migrated: Settings, tmp_path: Path) -> None:
    plain = tmp_path / "plain.png"
    Image.new("RGB", (300, 300), (10, 120, 200)).save(plain)
    result = sdbot(migrated, "trace", str(plain))
    assert result.returncode == 4
    assert f"no sdbot watermark found in {plain}" in result.stderr


# What a command that runs no model may not import: they cost seconds of start-up between them.
NOT_FOR_LIGHT_COMMANDS = ("discord", "aiohttp", "redis", "PIL", "numpy", "torch", "cv2", "bench")


@pytest.mark.parametrize(
    ("args", "also_not"),
    [
        (["--help"], ("sqlalchemy", "pydantic", "alembic")),
        (["config"], ("alembic",)),
        (["moderate", "a cat", "--guild", "5"], ("alembic",)),
        (["guild", "show", "5"], ("alembic",)),
        (["terms", "list"], ("alembic",)),
        (["models"], ("alembic",)),
    ],
)
def test_commands_without_a_model_import_no_heavy_library(
    migrated: Settings, args: list[str], also_not: tuple[str, ...]
) -> None:
    """Commands register without their handlers' libraries; a handler imports what it uses."""
    script = (
        "import sys\n"
        "from bot.cli import main\n"
        "try:\n"
        f"    main({args!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(' '.join(sorted({name.split('.')[0] for name in sys.modules})), file=sys.stderr)\n"
    )
    result = python(migrated, "-c", script)
    loaded = set(result.stderr.split())
    assert "bot" in loaded, result.stderr
    assert loaded.isdisjoint({*NOT_FOR_LIGHT_COMMANDS, *also_not}), sorted(
        loaded & {*NOT_FOR_LIGHT_COMMANDS, *also_not}
    )


def test_config_masks_secrets(settings: Settings) -> None:
    result = sdbot(
        settings,
        "config",
        SDBOT_DISCORD_TOKEN="super-secret-token",
        SDBOT_REDIS_URL="redis://:hunter2@127.0.0.1:6379/0",
    )
    assert result.returncode == 0, result.stderr
    assert "super-secret-token" not in result.stdout
    assert "hunter2" not in result.stdout
    assert "SDBOT_DISCORD_TOKEN" in result.stdout
    assert "****" in result.stdout
    assert "SDBOT_MODEL" in result.stdout


def test_invalid_settings_are_named(settings: Settings) -> None:
    result = sdbot(settings, "config", SDBOT_DEVICE="tpu")
    assert result.returncode == 2
    assert "device must be auto, cpu, cuda, cuda:N or mps, got 'tpu'" in result.stderr


def test_terminating_a_running_imagine_records_it_cancelled(migrated: Settings) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SDBOT_")} | {
        "SDBOT_MODEL": migrated.model,
        "SDBOT_DATABASE_URL": migrated.effective_database_url(),
        "SDBOT_DATA_DIR": str(migrated.data_dir),
        "SDBOT_DEVICE": "cpu",
    }
    with subprocess.Popen(
        [sys.executable, "-m", "bot", "-v", "imagine", "a red circle", "--steps", "50"],
        env=environment,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stderr is not None
        for line in process.stderr:  # wait until the worker holds the job
            if "worker ready" in line:
                break
        process.send_signal(signal.SIGTERM)
        process.stderr.read()
        assert process.wait(timeout=60) == 130
    lines = sdbot(migrated, "audit", "export").stdout.splitlines()
    [record] = [json.loads(line) for line in lines]
    assert (record["status"], record["error"]) == ("cancelled", "cancelled")


@pytest.mark.parametrize(
    ("args", "env", "reason"),
    [
        (
            ["db", "current"],
            {"SDBOT_DATABASE_URL": "postgresql+asyncpg://u@127.0.0.1:1/x"},
            "Connect call failed",
        ),
        (["audit", "export", "--out", "/nonexistent/dir/x.csv"], {}, "No such file or directory"),
        (["config"], {"SDBOT_DATABASE_URL": "postgresql://u@h/db"}, "needs an async driver"),
    ],
)
def test_environment_problems_exit_2_with_one_line(
    migrated: Settings, args: list[str], env: dict[str, str], reason: str
) -> None:
    result = sdbot(migrated, *args, **env)
    assert result.returncode == 2, result.stderr
    assert reason in result.stderr
    assert "Traceback" not in result.stderr


def test_bench_queue_reports_its_figures(settings: Settings) -> None:
    result = sdbot(settings, "bench", "queue", "--jobs", "200", "--queued", "100", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["jobs"] == 200
    assert report["queued"] == 100
    assert report["overhead_us_per_job"] > 0
    # The fair queue keeps the light guild's wait far below what first-come-first-served gives.
    assert (
        report["light_p95_wait_in_service_times"] < report["fifo_light_p95_wait_in_service_times"]
    )


def test_bench_queue_measures_redis_when_given_it(settings: Settings) -> None:
    from tests.conftest import require_service

    url = os.environ.get("SDBOT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    require_service("Redis", url, 6379)
    result = sdbot(
        settings,
        "bench", "queue", "--jobs", "100", "--queued", "200", "--redis-jobs", "50",
        "--redis-url", url, "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    redis = json.loads(result.stdout)["redis"]
    assert (redis["jobs"], redis["queued"]) == (50, 200)
    assert 0 < redis["mean_ms_per_job"] <= redis["p95_ms_per_job"]
    assert redis["bytes_per_queued_job"] > 0


def test_bench_batching_runs_the_same_jobs_both_ways(settings: Settings) -> None:
    result = sdbot(
        settings,
        "bench", "batching", "--jobs", "2", "--variants", "1", "--steps", "2", "--rounds", "1",
        "--json",
        SDBOT_TORCH_THREADS="2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["jobs"], report["variants"], report["steps"]) == (2, 1, 2)
    assert report["gain"] == pytest.approx(report["one_by_one_s"] / report["batched_s"])
    assert report["first_job_alone_s"] <= report["one_by_one_s"]


def test_bench_discord_reports_acknowledgement_and_end_to_end_times(settings: Settings) -> None:
    result = sdbot(
        settings,
        "bench", "discord", "--guilds", "2", "--members", "2", "--steps", "2", "--json",
        SDBOT_TORCH_THREADS="2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["jobs"], report["unanswered"], report["failed"]) == (4, 0, 0)
    assert 0 < report["ack_p50_ms"] <= report["ack_p99_ms"] <= report["ack_max_ms"]
    assert 0 < report["e2e_p50_s"] <= report["e2e_p99_s"] <= report["e2e_max_s"]


def test_bench_mod_fills_a_scratch_database_and_times_the_reads(settings: Settings) -> None:
    result = sdbot(settings, "bench", "mod", "--jobs", "300", "--guilds", "3", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["jobs"], report["guilds"], report["guild_jobs"]) == (300, 3, 100)
    assert 0 < report["gate_p50_us"] <= report["gate_p99_us"]
    assert report["export_mib"] > 0
    assert report["prompts_per_upload"] > 1000
    too_few = sdbot(settings, "bench", "mod", "--jobs", "5")
    assert too_few.returncode == 2
    assert "--jobs must be at least 100" in too_few.stderr


def test_bench_models_reports_switches_lora_and_conditioning_costs(settings: Settings) -> None:
    result = sdbot(
        settings, "bench", "models", "--runs", "1", "--variants", "1", "--steps", "2", "--json"
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["runs"], report["variants"], report["steps"]) == (1, 1, 2)
    kinds = {"base", "lora", "weighted", "three_windows"}
    assert set(report["diffusion_ms_per_image"]) == set(report["diffusion_ratio_to_base"]) == kinds
    assert set(report["encode_ms_per_prompt"]) == {"plain", "weighted", "three_windows"}
    figures = [
        report[key]
        for key in (
            "worker_start_ms", "cold_load_ms", "one_model_switch_ms", "lora_first_load_ms",
            "lora_enable_ms", "lora_disable_ms", "model_mb",
        )
    ]  # fmt: skip
    figures += [
        *report["diffusion_ms_per_image"].values(),
        *report["encode_ms_per_prompt"].values(),
    ]
    assert all(figure > 0 for figure in figures), report
    # A model still loaded costs its batch no load at all.
    assert 0 <= report["warm_switch_ms"] < report["cold_load_ms"]


def test_recover_runs_the_jobs_a_stopped_process_left_open(migrated: Settings) -> None:
    import asyncio

    from bot.app import open_storage
    from storage.models import Verdict
    from storage.records import NewJob

    async def leave_one_open() -> int:
        async with open_storage(migrated) as storage:
            return await storage.audit.create_job(
                NewJob(
                    source="cli", prompt="a red circle", negative_prompt="", steps=4,
                    guidance_scale=3.0, width=64, height=64, variants=2, scheduler="dpmpp",
                    model=migrated.model, seeds=(3, 4), verdict=Verdict.ALLOWED,
                )
            )  # fmt: skip

    job_id = asyncio.run(leave_one_open())
    result = sdbot(migrated, "recover", "--json")
    assert result.returncode == 0, result.stderr
    [outcome] = [json.loads(line) for line in result.stdout.splitlines()]
    assert (outcome["job_id"], outcome["status"], outcome["seeds"]) == (job_id, "succeeded", [3, 4])
    assert all(Path(image["path"]).is_file() for image in outcome["images"])
    again = sdbot(migrated, "recover")
    assert (again.returncode, again.stdout) == (0, "no open jobs\n")


def test_every_family_gets_the_exit_code_of_its_kind() -> None:
    """One translator: main words any SdbotError and exits with its kind's code."""
    from bot.cli import EXIT_CODES, CommandFailed, NothingThere
    from bot.cli.failures import kind_of
    from bot.guild_admin import InvalidDuration, InvalidSetting
    from common.errors import SdbotError
    from generation.errors import InvalidOption, ModelLoadError, RateLimited
    from moderation.errors import InvalidTerm
    from storage.errors import DatabaseBehind, JobNotFound

    expected: list[tuple[SdbotError, int]] = [
        (InvalidOption("steps", 0, "a whole number from 1 to 50"), 2),
        (RateLimited("the queue is full", 60.0), 2),
        (DatabaseBehind(None, "0006"), 2),
        (InvalidTerm("'a*b': '*' may only stand at the start or the end"), 2),
        (InvalidSetting("max_side 256 is above the bot's limit of 128"), 2),
        (InvalidDuration("--expires 'soon' is not a duration"), 2),
        (JobNotFound(7), 4),
        (NothingThere("no sdbot watermark found"), 4),
        (ModelLoadError("model checkpoint x does not exist"), 1),
        (CommandFailed("Discord answered 500"), 1),
    ]
    assert [(type(e).__name__, EXIT_CODES[kind_of(e)]) for e, _ in expected] == [
        (type(e).__name__, code) for e, code in expected
    ]


def test_list_and_settings_changes_are_recorded_as_mod_records_them(migrated: Settings) -> None:
    """sdbot goes through GuildAdmin, as /mod does: the operator (actor 0) in the same records."""
    from storage.moderation_log import ModerationLog

    assert sdbot(migrated, "terms", "add", "clown", "--guild", "5").returncode == 0
    assert sdbot(migrated, "terms", "remove", "clown", "--guild", "5").returncode == 0
    assert sdbot(migrated, "guild", "set", "5", "--max-steps", "20").returncode == 0

    async def recorded() -> list[tuple[int, str, dict[str, Any]]]:
        engine = create_engine(migrated.effective_database_url())
        try:
            actions = await ModerationLog(create_session_factory(engine)).list(5)
        finally:
            await engine.dispose()
        return [(action.actor_id, action.action, action.details) for action in reversed(actions)]

    assert asyncio.run(recorded()) == [
        (
            0,
            "block_term_add",
            {"term": "clown", "regex": False, "expires_at": None, "existed": False},
        ),
        (0, "block_term_remove", {"term": "clown"}),
        (0, "settings", {"max_steps": {"from": None, "to": 20}}),
    ]
