"""A guild's settings, each described once: its name and value type, what it accepts, the
bot-wide bound it may not loosen, how `/mod settings` and `sdbot guild set` offer it, how it
reads, what a reset writes.

Validation (``bot.guild_settings_check``), Discord's descriptions, choices and reset list, the
CLI's flags, the moderation log's rendering (:func:`render`) and what is in force in a guild
(``bot.guild_limits``) all read :data:`SPECS`. A new setting is an entry here, its column
(``storage.guild_settings`` and a migration), and its parameter in `/mod settings`
(``bot/discord/mod/settings.py``; a test fails until the two agree). Pure: no Discord, no DB.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.guild_limits import Bound
from common.errors import ErrorKind, SdbotError
from moderation.policy import GorePolicy, NsfwPolicy
from storage.guild_settings import VARY_CHOICES
from storage.models import Controls

MAX_RATE = 1_000_000  # standard images an hour, and jobs a member may hold


class Kind(enum.StrEnum):
    """What a setting holds, which decides how it is checked and shown."""

    CHOICE = "choice"  # one of ``choices``
    THRESHOLD = "threshold"  # a fraction in (0, 1]; lower is stricter
    RATE = "rate"  # above 0, at most MAX_RATE (standard images an hour, or jobs)
    STEPS = "steps"  # a whole number in [minimum, maximum]
    SIDE = "side"  # pixels: a multiple of ``multiple_of`` in [minimum, maximum]
    CHANNEL = "channel"  # one channel id
    CHANNELS = "channels"  # 1 to MAX_CHANNELS channel ids, or None for every channel
    MODELS = "models"  # 1 to MAX_NAMES of the catalog's models, or None for every model
    LORAS = "loras"  # up to MAX_NAMES of the catalog's LoRAs ([]: none), or None for every one


class Naming(enum.StrEnum):
    """Which name a message gives a setting: as stored (the CLI, the log) or as `/mod` calls it."""

    STORED = "stored"
    OPTION = "option"


@dataclass(frozen=True)
class SettingSpec:
    name: str  # the column, the moderation log's key, GuildAdmin's change key
    kind: Kind
    value_type: type[str] | type[int] | type[float]  # a value's (a channel list's items') type
    option: str  # its name in /mod settings
    label: str  # /mod settings reset's choice
    help: str  # /mod settings option's description
    flag: str | None = None  # sdbot guild set's flag; None: not offered there
    cli_help: str = ""
    choices: tuple[str, ...] = ()
    minimum: float = 0  # what storage accepts (steps and sizes)
    maximum: float = 0
    multiple_of: int = 1
    option_range: tuple[float, float] | None = None  # the narrower range /mod settings offers
    bound: Bound | None = None
    reset_to: str | None = None  # what a reset writes; None: the bot's default
    unset: str = "default"  # how None reads

    def render(self, value: Any) -> str:
        """The value as moderators read it (the log, /mod settings' answers)."""
        return render(self.name, value)

    def called(self, naming: Naming) -> str:
        return self.option if naming is Naming.OPTION else self.name


SPECS: tuple[SettingSpec, ...] = (
    SettingSpec(
        "nsfw_policy",
        Kind.CHOICE,
        str,
        option="nsfw_policy",
        label="NSFW policy",
        help="flagged images: block everywhere, or spoiler them in age-restricted channels",
        flag="--nsfw-policy",
        cli_help="flagged images in NSFW channels: block, or spoiler",
        choices=tuple(policy.value for policy in NsfwPolicy),
        reset_to=NsfwPolicy.BLOCK.value,
    ),
    SettingSpec(
        "gore_policy",
        Kind.CHOICE,
        str,
        option="gore_policy",
        label="gore policy",
        help="gore prompts: drawn spoilered in age-restricted channels only, or refused everywhere",
        flag="--gore-policy",
        cli_help="gore prompts: age_restricted (drawn spoilered there only), or block everywhere",
        choices=tuple(policy.value for policy in GorePolicy),
        reset_to=GorePolicy.AGE_RESTRICTED.value,
    ),
    SettingSpec(
        "nsfw_threshold",
        Kind.THRESHOLD,
        float,
        option="nsfw_threshold",
        label="NSFW threshold",
        help="a stricter safety threshold for this server (lower flags more)",
        flag="--nsfw-threshold",
        cli_help="a stricter open_nsfw threshold for this guild",
        minimum=0.0,
        maximum=1.0,
        option_range=(0.01, 1.0),
        bound=Bound.NSFW_THRESHOLD,
    ),
    SettingSpec(
        "user_images_per_hour",
        Kind.RATE,
        float,
        option="member_images_per_hour",
        label="member images an hour",
        help="each member's rate, in standard images (512², 20 steps)",
        flag="--user-images-per-hour",
        cli_help="each member's rate, in standard images",
        option_range=(0.1, 100000.0),
    ),
    SettingSpec(
        "guild_images_per_hour",
        Kind.RATE,
        float,
        option="server_images_per_hour",
        label="server images an hour",
        help="the whole server's rate, in standard images",
        flag="--guild-images-per-hour",
        cli_help="the whole guild's rate",
        option_range=(0.1, 1000000.0),
    ),
    SettingSpec(
        "max_jobs_per_user",
        Kind.RATE,
        int,
        option="jobs_per_member",
        label="jobs per member",
        help="jobs a member may have queued and running at once",
        flag="--max-jobs-per-user",
        cli_help="a member's jobs queued + running",
        option_range=(1, 100),
    ),
    SettingSpec(
        "max_steps",
        Kind.STEPS,
        int,
        option="max_steps",
        label="maximum steps",
        help="the most denoising steps a member may ask for",
        flag="--max-steps",
        cli_help="fewer denoising steps than the bot allows",
        minimum=1,
        maximum=500,
        option_range=(1, 500),
        bound=Bound.MAX_STEPS,
    ),
    SettingSpec(
        "max_side",
        Kind.SIDE,
        int,
        option="max_size",
        label="maximum size",
        help="the largest width or height a member may ask for, in pixels",
        flag="--max-side",
        cli_help="a smaller largest side, in pixels",
        minimum=64,
        maximum=4096,
        multiple_of=8,
        option_range=(64, 4096),
        bound=Bound.MAX_SIDE,
    ),
    SettingSpec(
        "controls",
        Kind.CHOICE,
        str,
        option="controls",
        label="who may use the controls",
        help="who may upscale and reroll a grid",
        flag="--controls",
        cli_help="who may upscale and reroll a grid: its requester and moderators, or everyone",
        choices=tuple(controls.value for controls in Controls),
        reset_to=Controls.REQUESTER.value,
    ),
    SettingSpec(
        "vary",
        Kind.CHOICE,
        str,
        option="vary",
        label="vary strength (subtle)",
        help="how much a vary redraws of its variant's picture: subtle (the default) or strong",
        flag="--vary",
        choices=VARY_CHOICES,
        unset="subtle",
    ),
    SettingSpec(
        "channels",
        Kind.CHANNELS,
        int,
        option="channels",
        label="channels (every channel)",
        help="the channels sdbot answers in",
        flag="--channels",
        cli_help="the channel ids the bot answers in, comma-separated; 'all' for every channel",
        unset="every channel",
    ),
    SettingSpec(
        "allowed_models",
        Kind.MODELS,
        str,
        option="models",
        label="models (every model)",
        help="the models members may use, comma-separated; 'all' for every model",
        flag="--models",
        unset="every model",
    ),
    SettingSpec(
        "allowed_loras",
        Kind.LORAS,
        str,
        option="loras",
        label="LoRAs (every LoRA)",
        help="the LoRAs members may use, comma-separated; 'all' for every one, 'none' for none",
        flag="--loras",
        unset="every LoRA",
    ),
    SettingSpec(
        "audit_channel_id",
        Kind.CHANNEL,
        int,
        option="log_channel",
        label="log channel (none)",
        help="a channel where every moderator's action here is posted as it happens",
        unset="none",
    ),
)

NAMED = (Kind.MODELS, Kind.LORAS)  # lists of the catalog's names
BY_NAME: Mapping[str, SettingSpec] = {spec.name: spec for spec in SPECS}
BY_OPTION: Mapping[str, SettingSpec] = {spec.option: spec for spec in SPECS}
NAMES: tuple[str, ...] = tuple(spec.name for spec in SPECS)


class InvalidSetting(SdbotError):
    """A guild setting refused: the message names the value and what is allowed."""

    kind = ErrorKind.BAD_INPUT


# --- reading a setting ---------------------------------------------------------------------------


def render(name: str, value: Any) -> str:
    """A setting's value as moderators read it: ``<#1>`` for channels, ``0.5``, ``default``."""
    spec = BY_NAME.get(name)
    if value is None:
        return "default" if spec is None else spec.unset
    if spec is not None and spec.kind is Kind.CHANNEL:
        return f"<#{value}>"
    if spec is not None and spec.kind in NAMED:
        return ", ".join(value) or "none"
    if isinstance(value, list | tuple):
        return ", ".join(f"<#{channel}>" for channel in value)
    if isinstance(value, enum.Enum):
        return str(value.value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def option_name(name: str) -> str:
    """A stored setting's name as `/mod settings` calls it (itself when it is none of ours)."""
    spec = BY_NAME.get(name)
    return name if spec is None else spec.option


def plain(value: Any) -> Any:
    """A setting as the moderation log stores it (JSON): lists, enums by value."""
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, enum.Enum):
        return value.value
    return value
