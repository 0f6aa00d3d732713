"""Settings: defaults, validation that names the bad value, and secrets that never print."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.settings import Settings, mask_url
from generation.errors import ModelLoadError


def make(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg, arg-type]


def test_defaults_live_in_the_data_folder(tmp_path: Path) -> None:
    settings = make(data_dir=tmp_path)
    assert settings.effective_database_url() == f"sqlite+aiosqlite:///{tmp_path / 'sdbot.db'}"
    assert settings.effective_output_dir() == tmp_path / "images"


def test_home_is_expanded() -> None:
    settings = make(data_dir="~/sdbot-data", output_dir="~/pictures")
    assert settings.data_dir == Path.home() / "sdbot-data"
    assert settings.output_dir == Path.home() / "pictures"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "'not a url' is not a database URL sdbot can use"),
        (
            "postgresql://u@h/db",
            "needs an async driver: sqlite+aiosqlite://… or postgresql+asyncpg",
        ),
    ],
)
def test_bad_database_urls_are_named(url: str, message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        make(database_url=url)


def test_secrets_are_masked_in_urls_and_tokens() -> None:
    assert mask_url("postgresql+asyncpg://u:pw@h/db?password=s3cret&sslmode=require") == (
        "postgresql+asyncpg://u:***@h/db?password=***&sslmode=require"
    )
    shown = make(
        discord_token="tok-123",
        redis_url="redis://:hunter2@127.0.0.1:6379/0",
        database_url="postgresql+asyncpg://u@h/db?token=abc",
    ).masked()
    assert shown["discord_token"] == "****"
    assert "hunter2" not in shown["redis_url"]
    assert "abc" not in shown["database_url"]


def test_side_limits_must_make_sense() -> None:
    with pytest.raises(ValidationError, match=r"SDBOT_MIN_SIDE \(512\) must not be above"):
        make(min_side=512, max_side=256)


def test_the_catalog_is_read_once_from_the_model_and_folders(tmp_path: Path) -> None:
    settings = make(lora_dir=tmp_path, embedding_dir="~/embeddings-that-are-not-there")
    assert settings.embedding_dir == Path.home() / "embeddings-that-are-not-there"
    with pytest.raises(ModelLoadError, match="SDBOT_EMBEDDING_DIR"):
        settings.catalog()  # a folder the operator named must be there
    settings = make(lora_dir=tmp_path)  # the embedded model's folders: used when shipped
    catalog = settings.catalog()
    assert (catalog.default_model, catalog.loras) == ("embedded", ())
    assert settings.catalog() is catalog
    assert settings.model_copy(update={"model_memory_gb": 8}).catalog() is catalog
    with pytest.raises(ValidationError, match="model_memory_gb"):
        make(model_memory_gb=-1)
