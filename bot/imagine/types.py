"""What goes into the imagine path: who asks, what a control derives from a job, the limits in
force in a guild, and how the path is configured."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bot.guild_limits import EffectiveLimits
from generation.catalog import Catalog
from generation.inputs import MAX_INPUT_BYTES, MAX_INPUT_PIXELS
from generation.limits import Limits
from generation.options import ModelDefaults, OptionLimits
from generation.starts import Source
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
    """What makes a job a reroll, upscale, vary or zoom of another: its kind and parent, and
    what admission sets on its options (``source``: the parent's picture drawn again as the
    start; ``start`` and ``strength``: how it is redrawn)."""

    kind: JobKind
    parent_job_id: int
    parent_variant: int | None = None
    upscale: int = 1
    source: Source | None = None
    start: str = "text"
    strength: float = 1.0


@dataclass(frozen=True)
class Attachment:
    """A file a member gave (a Discord attachment, a file on the CLI): its bytes as they came,
    its name and the content type it claimed (not trusted: the bytes are read for what they
    are)."""

    data: bytes
    filename: str = ""
    content_type: str | None = None


@dataclass(frozen=True)
class PicturesIn:
    """The pictures a request brings: ``image`` (img2img's start, /edit's picture), ``mask``
    (/edit: white is redrawn), ``control`` (a ControlNet's picture; its kind is
    ``RequestedOptions.control``)."""

    image: Attachment | None = None
    mask: Attachment | None = None
    control: Attachment | None = None


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
    max_input_bytes: int = MAX_INPUT_BYTES  # a picture given in (SDBOT_MAX_INPUT_MB)
    max_input_pixels: int = MAX_INPUT_PIXELS  # … read from its header before it is decoded
    caption_model: Path | None = None  # /describe for real models (SDBOT_CAPTION_MODEL)
    retention_days: float | None = None  # SDBOT_RETENTION_DAYS (None: kept), for /privacy
