"""One settings model: environment variables with the SDBOT_ prefix, or a .env file.

Every command reads it first, so it imports only pydantic and sdbot's light value modules; the
libraries that parse database and Redis URLs are imported by the checks that use them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.masking import mask_text, mask_url, mask_web_url
from generation.catalog import Catalog, load_catalog
from generation.fast_path import FastPathText
from generation.limits import MAX_RATE, MIN_RATE, Limits
from generation.models import EMBEDDED_MODEL_DIR, model_defaults, resolve_model
from generation.options import ModelDefaults, OptionLimits, limits_for_model

EMBEDDED_LORA_DIR = EMBEDDED_MODEL_DIR.parent / "loras"  # the LoRAs shipped with the embedded model
EMBEDDED_EMBEDDING_DIR = EMBEDDED_MODEL_DIR.parent / "embeddings"
_RATES = ("user_images_per_hour", "user_burst", "guild_images_per_hour", "guild_burst")


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "sdbot"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SDBOT_", env_file=".env", extra="ignore", allow_inf_nan=False
    )

    model: str = Field(
        default=str(EMBEDDED_MODEL_DIR),
        description="hub id, diffusers folder, or .safetensors checkpoint",
    )
    models_file: Path | None = Field(
        default=None,
        description="a TOML list of models ([[model]] tables); default: SDBOT_MODEL alone",
    )
    lora_dir: Path = Field(
        default=EMBEDDED_LORA_DIR, description="LoRA files (*.safetensors), named by their stem"
    )
    embedding_dir: Path = Field(
        default=EMBEDDED_EMBEDDING_DIR,
        description="textual-inversion embeddings, used by their file's stem as a token",
    )
    max_input_mb: float = Field(
        default=10.0, gt=0, le=100, description="the largest picture a member may give"
    )
    max_input_pixels: int = Field(
        default=4096 * 4096, ge=64 * 64, description="the most pixels (read before decoding)"
    )
    caption_model: Path | None = Field(
        default=None,
        description="a captioning model folder (BLIP) for /describe with real models, "
        "loaded with local_files_only; the embedded model needs none",
    )
    model_memory_gb: float = Field(
        default=0.0,
        ge=0,
        description="the worker's budget for loaded models in GB (0: 80 percent of the GPU's "
        "memory, or half the RAM on CPU)",
    )
    device: str = Field(default="auto", description="auto, cpu, cuda, cuda:N or mps")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    torch_threads: int | None = Field(default=None, ge=1, description="CPU threads for torch")
    fast_path: FastPathText = Field(default="", description="fast-path switches, see fast_path.py")
    data_dir: Path = Field(default_factory=_default_data_dir)
    database_url: str = Field(default="", description="default: SQLite in the data folder")
    output_dir: Path | None = Field(default=None, description="default: images/ in the data folder")
    redis_url: str | None = None
    discord_token: SecretStr | None = None
    discord_api_url: str = Field(
        default="https://discord.com/api/v10",
        description="Discord's REST API, or a REST proxy in front of it",
    )
    discord_gateway_url: str = Field(
        default="wss://gateway.discord.gg/", description="Discord's gateway websocket"
    )
    discord_allow_dms: bool = Field(
        default=False,
        description="/imagine in direct messages, under the global rules only (no guild's)",
    )
    discord_commands_guild: int | None = Field(
        default=None,
        ge=0,
        lt=2**63,
        description="sync the commands to this guild only (they show at once; for a test server)",
    )
    discord_shard_count: int | None = Field(
        default=None, ge=1, description="shards in all (default: as many as Discord recommends)"
    )
    discord_shard_ids: list[int] | None = Field(
        default=None, description="the shards this process runs, e.g. [0,1] (default: all)"
    )

    max_prompt_chars: int = Field(default=1000, ge=1)
    max_steps: int = Field(default=50, ge=1, le=500)
    max_guidance: float = Field(default=20.0, gt=0)
    min_side: int = Field(default=64, ge=8)
    max_side: int = Field(
        default=2048,
        ge=64,
        description="the largest side served; each model's own sizes (SDBOT_MODELS_FILE) and "
        "twice its native side limit it first (SDXL's 16:9 is 1344 px)",
    )
    max_variants: int = Field(default=4, ge=1, le=4)
    nsfw_threshold: float = Field(
        default=0.5, gt=0, le=1, description="open_nsfw score that flags an image"
    )
    nsfw_strict_threshold: float = Field(
        default=0.3, gt=0, le=1, description="the same for force-safe prompts"
    )
    min_output_side: int = Field(default=256, ge=256, description="the watermark needs 256")
    job_stall_timeout_s: float = Field(default=300.0, gt=0)
    shutdown_grace_s: float = Field(
        default=25.0, ge=0, description="on SIGTERM, how long running jobs may take to finish"
    )
    redis_prefix: str = Field(
        default="sdbot", pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Redis key prefix"
    )
    batch_max_jobs: int = Field(
        default=4, ge=1, le=64, description="queued jobs of one shape run in one pipeline call"
    )
    batch_max_images: int = Field(default=16, ge=1, le=256, description="images in one call")
    worker_reclaim_s: float = Field(
        default=60.0, gt=0, description="a Redis worker silent this long loses its job"
    )
    job_lease_s: float = Field(
        default=30.0,
        gt=0,
        le=86400,
        description="a process that stops renewing its jobs' leases this long loses them to "
        "`sdbot recover`",
    )
    redis_lost_s: float = Field(
        default=60.0,
        gt=0,
        le=86400,
        description="jobs followed on a Redis that cannot be reached this long fail",
    )
    user_images_per_hour: float = Field(
        default=60.0, gt=0, description="standard images (512², 20 steps) a user may make"
    )
    user_burst: float = Field(default=8.0, gt=0)
    guild_images_per_hour: float = Field(default=600.0, gt=0)
    guild_burst: float = Field(default=40.0, gt=0)
    max_jobs_per_user: int = Field(default=3, ge=1, description="queued + running")
    max_queue_depth: int = Field(default=1000, ge=1, description="queued + running, all guilds")

    metrics_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="serve /metrics, /livez and /readyz on this port (0: any free port; "
        "default: none)",
    )
    metrics_host: str = Field(
        default="127.0.0.1", description="the address the metrics port listens on (0.0.0.0: all)"
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="json: one JSON object a line, with job, guild and worker"
    )
    retention_days: float | None = Field(
        default=None,
        gt=0,
        le=36500,
        description="purge image files and the prompts of audit records this many days after "
        "their job ended (default: keep them)",
    )
    price_per_device_hour: float = Field(
        default=0.0, ge=0, description="what an hour of the device costs, for cost per image"
    )

    @field_validator("data_dir", "output_dir", "models_file", "lora_dir", "embedding_dir")
    @classmethod
    def _expand_home(cls, value: Path | None) -> Path | None:
        try:
            return None if value is None else value.expanduser()
        except RuntimeError:  # ~someone who has no account here
            raise ValueError(
                f"{str(value)!r} names a home folder this system does not know"
            ) from None

    _catalog: tuple[tuple[object, ...], Catalog] | None = PrivateAttr(default=None)

    @field_validator(*_RATES)
    @classmethod
    def _check_rate(cls, value: float) -> float:
        if not MIN_RATE <= value <= MAX_RATE:
            raise ValueError(
                f"must be from {MIN_RATE:g} to {MAX_RATE:.0f} standard images, got {value!r}"
            )
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if not value:
            return value
        import yarl
        from redis.connection import parse_url as parse_redis_url

        try:
            parse_redis_url(value)  # type: ignore[no-untyped-call]  # redis-py leaves it bare
        except ValueError as error:
            raise ValueError(f"{mask_text(value)!r} is not a Redis URL: {error}") from None
        path = yarl.URL(value).path if value.startswith(("redis:", "rediss:")) else ""
        if not re.fullmatch(r"/?(\d+)?", path):
            raise ValueError(
                f"{mask_text(value)!r} names database {path.lstrip('/')!r}; a Redis database "
                "is a number (redis://host:6379/0)"
            )
        return value

    @field_validator("discord_api_url", "discord_gateway_url")
    @classmethod
    def _check_discord_url(cls, value: str, info: ValidationInfo) -> str:
        schemes = ("http", "https") if info.field_name == "discord_api_url" else ("ws", "wss")
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if scheme not in schemes:
            raise ValueError(f"{mask_web_url(value)!r} must be a {' or '.join(schemes)} URL")
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        if not value:
            return value
        from storage.engine import check_database_url

        try:
            check_database_url(value)
        except ValueError as error:
            raise ValueError(
                f"{mask_url(value)!r} is not a database URL sdbot can use: {error}"
            ) from None
        return value

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        if value in {"auto", "cpu", "cuda", "mps"} or value.startswith("cuda:"):
            return value
        raise ValueError(f"device must be auto, cpu, cuda, cuda:N or mps, got {value!r}")

    @model_validator(mode="after")
    def _check_sides(self) -> Settings:
        if self.min_side > self.max_side:
            raise ValueError(
                f"SDBOT_MIN_SIDE ({self.min_side}) must not be above "
                f"SDBOT_MAX_SIDE ({self.max_side})"
            )
        shards, count = self.discord_shard_ids, self.discord_shard_count
        if shards is not None and (count is None or any(not 0 <= s < count for s in shards)):
            raise ValueError(
                f"SDBOT_DISCORD_SHARD_IDS {shards} need SDBOT_DISCORD_SHARD_COUNT and must each "
                f"be from 0 to the count less one (count: {count})"
            )
        return self

    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'sdbot.db'}"

    def effective_output_dir(self) -> Path:
        return self.output_dir or self.data_dir / "images"

    def limits(self, defaults: ModelDefaults | None = None) -> OptionLimits:
        """The option limits: these settings, with sizes narrowed to what the model serves in
        time (see ``limits_for_model``; its defaults are read from SDBOT_MODEL unless given).
        Raises ModelLoadError for a model that cannot be read, InvalidOption for a
        SDBOT_MIN_SIDE above the model's largest size."""
        limits = OptionLimits(
            max_prompt_chars=self.max_prompt_chars,
            max_steps=self.max_steps,
            max_guidance=self.max_guidance,
            min_side=self.min_side,
            max_side=self.max_side,
            max_variants=self.max_variants,
        )
        if defaults is None:
            defaults = model_defaults(resolve_model(self.model))
        return limits_for_model(limits, defaults)

    def catalog(self) -> Catalog:
        """The models, LoRAs and embeddings offered, read once (ModelLoadError names a bad file,
        entry or field)."""
        key = (self.model, self.models_file, self.lora_dir, self.embedding_dir)
        cached = self._catalog
        if cached is None or cached[0] != key:
            cached = (key, catalog_from(self))
            self._catalog = cached
        return cached[1]

    def catalog_limits(self) -> OptionLimits:
        """The option limits over the catalog: sides up to what its largest model serves (its
        native side's multiple, or the largest size any model declares), so that no model's
        sizes are cut by another's; SDBOT_MAX_SIDE still caps them."""
        catalog = self.catalog()
        largest = max(max(s.width, s.height) for m in catalog.models for s in m.sizes)
        native = max(m.defaults.native_side for m in catalog.models)
        return self.limits(ModelDefaults(width=largest, height=largest, native_side=native))

    def queue_limits(self) -> Limits:
        return Limits(
            user_units_per_hour=self.user_images_per_hour,
            user_burst=self.user_burst,
            guild_units_per_hour=self.guild_images_per_hour,
            guild_burst=self.guild_burst,
            max_jobs_per_user=self.max_jobs_per_user,
            max_queue_depth=self.max_queue_depth,
        )

    def masked(self) -> dict[str, str]:
        """Every effective setting as text, passwords and tokens replaced by ****."""
        values: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name == "database_url":
                value = self.effective_database_url()
            elif name == "output_dir":
                value = self.effective_output_dir()
            if isinstance(value, SecretStr):
                text = "****" if value.get_secret_value() else ""
            elif name in {"discord_api_url", "discord_gateway_url"}:
                text = mask_web_url(value)  # a proxy URL may carry credentials
            elif name in {"database_url", "redis_url"} and value:
                text = mask_url(str(value))
            else:
                text = "" if value is None else str(value)
            values[name] = text
        return values


def catalog_from(settings: Settings) -> Catalog:
    """The operator's catalog from the settings (``Settings.catalog`` keeps it)."""
    shipped = {EMBEDDED_LORA_DIR, EMBEDDED_EMBEDDING_DIR}  # optional: a checkout may lack them
    lora_dir, embedding_dir = (
        None if folder in shipped and not folder.is_dir() else folder
        for folder in (settings.lora_dir, settings.embedding_dir)
    )
    return load_catalog(
        settings.model,
        models_file=settings.models_file,
        lora_dir=lora_dir,
        embedding_dir=embedding_dir,
    )
