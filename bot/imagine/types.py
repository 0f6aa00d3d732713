"""What goes into the imagine path: who asks, what a control derives from a job, the limits in
force in a guild, and how the path is configured."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bot.guild_limits import EffectiveLimits
from generation.catalog import Catalog
from generation.limits import Limits
from generation.options import ModelDefaults, OptionLimits
from storage.models import JobKind


@dataclass(frozen=True)
class Requester:
    source: str
    guild_id: int | None = None
    channel_id: int | None = None
    user_id: int | None = None
    channel_nsfw: bool = False  # the channel is marked NSFW (Discord's age-restricted flag)
    parent_channel_id: int | None = None  # a thread's channel


GuildLimits = EffectiveLimits  # the name callers of the one-class service use


@dataclass(frozen=True)
class Derived:
    """What makes a job a reroll or an upscale of another."""

    kind: JobKind
    parent_job_id: int
    parent_variant: int | None = None
    upscale: int = 1


@dataclass(frozen=True)
class ImagineConfig:
    """The bot-wide settings of the imagine path (``bot.app`` builds it from ``Settings``);
    a guild may be stricter than these, never laxer."""

    limits: OptionLimits
    defaults: ModelDefaults
    nsfw_threshold: float
    nsfw_strict_threshold: float
    catalog: Catalog  # the models, LoRAs and embeddings offered (``Settings.catalog()``)
    rates: Limits = field(default_factory=Limits)
    output_dir: Path | None = None  # None: pictures are not written to files
    direct_messages: bool = False  # Discord DMs draw under the global rules only
    lease_s: float = 30.0  # how long an open job stays this process's without a renewal
