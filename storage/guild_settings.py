"""What a guild's admins set for it: NSFW and gore policies, limits, controls, channels, vary,
pause."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage.engine import SessionFactory
from storage.errors import InvalidValue, UnknownSettings
from storage.models import Controls, GorePolicy, GuildSettings, NsfwPolicy

log = logging.getLogger(__name__)

SETTING_FIELDS = (
    "nsfw_policy",
    "nsfw_threshold",
    "user_images_per_hour",
    "guild_images_per_hour",
    "max_jobs_per_user",
    "max_steps",
    "audit_channel_id",
    "controls",
    "max_side",
    "channels",
    "allowed_models",
    "allowed_loras",
    "vary",
    "gore_policy",
    "paused_at",
    "pause_reason",
)
MAX_CHANNELS = 50  # channels a guild may limit the bot to
MAX_NAMES = 50  # models (or LoRAs) a guild may limit its members to
MAX_NAME_CHARS = 64
VARY_CHOICES = ("subtle", "strong")  # generation.starts.VARY_STRENGTHS' names; None: subtle


@dataclass(frozen=True)
class GuildSettingsRecord:
    guild_id: int
    nsfw_policy: NsfwPolicy = NsfwPolicy.BLOCK
    nsfw_threshold: float | None = None
    user_images_per_hour: float | None = None  # standard images (512², 20 steps) an hour
    guild_images_per_hour: float | None = None
    max_jobs_per_user: int | None = None  # queued + running
    max_steps: int | None = None
    audit_channel_id: int | None = None
    controls: Controls = Controls.REQUESTER
    max_side: int | None = None  # pixels, a multiple of 8
    channels: tuple[int, ...] | None = None  # None: the bot answers in every channel
    allowed_models: tuple[str, ...] | None = None  # catalog names; None: every model
    allowed_loras: tuple[str, ...] | None = None  # LoRA names; None: every LoRA, (): none
    vary: str | None = None  # how strongly a vary redraws: subtle or strong; None: subtle
    gore_policy: GorePolicy = GorePolicy.AGE_RESTRICTED  # where gore prompts may be drawn
    paused_at: datetime | None = None  # None: generating
    pause_reason: str | None = None

    @property
    def paused(self) -> bool:
        return self.paused_at is not None

    def answers_in(self, channel_id: int | None) -> bool:
        return self.channels is None or channel_id in self.channels

    def allows_model(self, name: str) -> bool:
        return self.allowed_models is None or name in self.allowed_models

    def allows_lora(self, name: str) -> bool:
        return self.allowed_loras is None or name in self.allowed_loras


def _record(guild_id: int, row: GuildSettings) -> GuildSettingsRecord:
    values = {name: getattr(row, name) for name in SETTING_FIELDS}
    try:
        values["nsfw_policy"] = NsfwPolicy(values["nsfw_policy"])
    except ValueError:  # written by hand or by older code: the safe policy stands
        log.warning("guild %d has nsfw_policy %r; using block", guild_id, row.nsfw_policy)
        values["nsfw_policy"] = NsfwPolicy.BLOCK
    try:
        values["controls"] = Controls(values["controls"] or Controls.REQUESTER)
    except ValueError:
        log.warning("guild %d has controls %r; using requester", guild_id, row.controls)
        values["controls"] = Controls.REQUESTER
    if values["gore_policy"] is None:  # never set: the default
        values["gore_policy"] = GorePolicy.AGE_RESTRICTED
    else:
        try:
            values["gore_policy"] = GorePolicy(values["gore_policy"])
        except ValueError:  # by hand, even an empty string: the stricter policy stands
            log.warning("guild %d has gore_policy %r; using block", guild_id, row.gore_policy)
            values["gore_policy"] = GorePolicy.BLOCK
    if values["vary"] is not None and values["vary"] not in VARY_CHOICES:
        log.warning("guild %d has vary %r; using subtle", guild_id, row.vary)
        values["vary"] = None
    if values["channels"] is not None:
        values["channels"] = tuple(int(channel) for channel in values["channels"])
    for name in ("allowed_models", "allowed_loras"):
        if values[name] is not None:
            values[name] = tuple(str(item) for item in values[name])
    return GuildSettingsRecord(guild_id=guild_id, **values)


def _checked(changes: dict[str, Any]) -> dict[str, Any]:
    """``changes`` as they are stored; raises InvalidValue naming the first bad one and what is
    allowed (UnknownSettings for a name that is no setting)."""
    unknown = set(changes) - set(SETTING_FIELDS)
    if unknown:
        raise UnknownSettings(unknown, SETTING_FIELDS)
    stored = dict(changes)
    choices_of = (("nsfw_policy", NsfwPolicy), ("controls", Controls), ("gore_policy", GorePolicy))
    for name, choices in choices_of:
        if name in stored:
            allowed = [choice.value for choice in choices]
            if stored[name] not in allowed:
                raise InvalidValue(name, stored[name], f"be one of {', '.join(allowed)}")
            stored[name] = str(stored[name])
    vary = stored.get("vary")
    if vary is not None and vary not in VARY_CHOICES:
        raise InvalidValue("vary", vary, f"be one of {', '.join(VARY_CHOICES)}")
    threshold = stored.get("nsfw_threshold")
    if threshold is not None and not 0.0 < threshold <= 1.0:
        raise InvalidValue("nsfw_threshold", threshold, "be in (0, 1]")
    for name in ("user_images_per_hour", "guild_images_per_hour", "max_jobs_per_user"):
        value = stored.get(name)
        if value is not None and not 0 < value <= 1_000_000:
            raise InvalidValue(name, value, "be above 0 and at most 1000000")
    steps = stored.get("max_steps")
    if steps is not None and (isinstance(steps, bool) or not 1 <= steps <= 500):
        raise InvalidValue("max_steps", steps, "be a whole number from 1 to 500")
    side = stored.get("max_side")
    if side is not None and (isinstance(side, bool) or not 64 <= side <= 4096 or side % 8):
        raise InvalidValue("max_side", side, "be a multiple of 8 from 64 to 4096")
    if stored.get("channels") is not None:
        channels = sorted({int(channel) for channel in stored["channels"]})
        if not channels or len(channels) > MAX_CHANNELS:
            raise InvalidValue(
                "channels",
                len(channels),
                f"name 1 to {MAX_CHANNELS} channels (None: every channel)",
            )
        stored["channels"] = channels
    for name, least in (("allowed_models", 1), ("allowed_loras", 0)):
        if stored.get(name) is not None:
            stored[name] = _names(name, stored[name], least)
    return stored


def _names(setting: str, given: Any, least: int) -> list[str]:
    """A list of models' or LoRAs' names as stored: each once, sorted. Whether a name is in
    the catalog is the bot's check (storage does not know the catalog)."""
    if isinstance(given, str) or not all(isinstance(name, str) for name in given):
        raise InvalidValue(setting, given, "be a list of names")
    names = sorted({name.strip() for name in given})
    if len(names) < least or len(names) > MAX_NAMES:
        raise InvalidValue(
            setting, len(names), f"name {least} to {MAX_NAMES} (None: every one of the bot's)"
        )
    for name in names:
        if not name or len(name) > MAX_NAME_CHARS:
            raise InvalidValue(setting, name, f"be names of 1 to {MAX_NAME_CHARS} characters")
    return names


class GuildSettingsRepository:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    async def get(self, guild_id: int) -> GuildSettingsRecord:
        """The guild's settings; a guild never configured gets the defaults."""
        async with self._sessions() as session:
            row = await session.get(GuildSettings, guild_id)
            return GuildSettingsRecord(guild_id=guild_id) if row is None else _record(guild_id, row)

    async def update(self, guild_id: int, **changes: Any) -> GuildSettingsRecord:
        """Stores ``changes`` (None puts a setting back to its default) and returns the result;
        raises InvalidValue, storing nothing, when one is not allowed."""
        stored = _checked(changes)
        async with self._sessions.begin() as session:
            row = await session.get(GuildSettings, guild_id)
            if row is None:
                row = GuildSettings(guild_id=guild_id)
                session.add(row)
            for name, value in stored.items():
                setattr(row, name, value)
        return await self.get(guild_id)
