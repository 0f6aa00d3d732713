"""Settings: defaults, validation that names the bad value, and secrets that never print."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.masking import mask_url
from bot.settings import Settings
from generation.errors import InvalidOption, ModelLoadError
from generation.models import EMBEDDED_MODEL_DIR
from generation.options import RequestedOptions


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


def test_the_limits_follow_the_catalogs_largest_model(tmp_path: Path) -> None:
    """A model's declared sizes are not cut by the default model's (64 px) limit."""
    models = tmp_path / "models.toml"
    models.write_text(
        f'[[model]]\nname = "embedded"\nsource = "{EMBEDDED_MODEL_DIR}"\n\n'
        f'[[model]]\nname = "big"\nsource = "{EMBEDDED_MODEL_DIR}"\n'
        'sizes = ["1:1=512x512", "3:2=768x512"]\n'
    )
    settings = make(models_file=models)
    catalog, limits = settings.catalog(), settings.catalog_limits()
    big = catalog.validate(RequestedOptions("a cat", model="big", aspect="3:2"), limits)
    assert (big.model, big.width, big.height) == ("big", 768, 512)
    small = catalog.validate(RequestedOptions("a cat"), limits)
    assert (small.model, small.width, small.height) == ("embedded", 64, 64)
    with pytest.raises(InvalidOption, match="1:1"):  # the embedded model's one size stays one
        catalog.validate(RequestedOptions("a cat", width=512, height=512), limits)
    capped = make(models_file=models, max_side=640).catalog_limits()
    with pytest.raises(InvalidOption, match="3:2"):  # SDBOT_MAX_SIDE still caps them
        catalog.validate(RequestedOptions("a cat", model="big", aspect="3:2"), capped)
