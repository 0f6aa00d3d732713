"""What is in force in a guild: the bot's own limits (:class:`BotLimits`), the bounds a guild's
setting may only tighten (:class:`Bound`), and the one place a guild's settings meet the bot's
(:func:`effective_limits`). The settings themselves, and how a change is checked, are
``bot.guild_settings``'s table.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from generation.catalog import Catalog, LoraFile, ModelEntry
from generation.limits import Limits
from generation.options import ModelDefaults, OptionLimits

if TYPE_CHECKING:
    from storage.guild_settings import GuildSettingsRecord

BURST_FLOOR = 4.0  # a guild's own rate never saves up less than one full grid of standard images


class Bound(enum.StrEnum):
    """The bot-wide value a guild's setting may only tighten."""

    NSFW_THRESHOLD = "nsfw_threshold"  # at most the bot's (lower flags more)
    MAX_STEPS = "max_steps"  # at most the bot's
    MAX_SIDE = "max_side"  # at most the bot's


@dataclass(frozen=True)
class BotLimits:
    """What the bot allows everywhere; a guild's settings may only tighten it."""

    options: OptionLimits
    defaults: ModelDefaults
    rates: Limits
    nsfw_threshold: float
    catalog: Catalog | None = None  # the models and LoRAs offered; None: names go unchecked

    def bound(self, bound: Bound) -> float:
        if bound is Bound.NSFW_THRESHOLD:
            return self.nsfw_threshold
        return self.options.max_steps if bound is Bound.MAX_STEPS else self.options.max_side


@dataclass(frozen=True)
class EffectiveLimits:
    """What a guild's members may ask for, and how much of it: the bot's limits tightened by
    the guild's own settings. ``settings`` is None outside a guild."""

    options: OptionLimits
    defaults: ModelDefaults
    rates: Limits
    settings: GuildSettingsRecord | None
    nsfw_threshold: float
    catalog: Catalog | None = None

    def own(self, name: str) -> bool:
        """Whether the guild set this one itself (False: the bot's default holds)."""
        return self.settings is not None and getattr(self.settings, name) is not None

    def models(self, channel_nsfw: bool) -> tuple[ModelEntry, ...]:
        """The catalog's models a member may use here (what /imagine's model option offers)."""
        offered = () if self.catalog is None else self.catalog.models
        return tuple(m for m in offered if self.model_refusal(m.name, channel_nsfw) is None)

    def default_model(self, channel_nsfw: bool) -> str | None:
        """The model a request that names none gets here: the bot's default when it may be
        used here, else the first that may (None: the bot's default, to be refused)."""
        if self.catalog is None:
            return None
        allowed = [m.name for m in self.models(channel_nsfw)]
        default = self.catalog.default_model
        return default if default in allowed or not allowed else allowed[0]

    def loras(self, model: ModelEntry | None = None) -> tuple[LoraFile, ...]:
        """The catalog's LoRAs a member may use here (with ``model``: those that fit it)."""
        if self.catalog is None:
            return ()
        offered = self.catalog.loras if model is None else self.catalog.loras_for(model)
        return tuple(lora for lora in offered if self.lora_refusal(lora.name) is None)

    def model_refusal(self, name: str, channel_nsfw: bool) -> str | None:
        """Why a model may not be used here (None: it may): the guild's list, or a model its
        operator marked for age-restricted channels only."""
        if self.settings is not None and not self.settings.allows_model(name):
            allowed = ", ".join(self.settings.allowed_models or ())
            return f"this server allows the models {allowed}, not '{name}'"
        entries = () if self.catalog is None else self.catalog.models
        entry = next((entry for entry in entries if entry.name == name), None)
        if entry is not None and entry.nsfw_only and not channel_nsfw:
            return f"the model '{name}' is only for age-restricted (NSFW) channels"
        return None

    def choice_refusal(self, model: str, loras: Iterable[str], channel_nsfw: bool) -> str | None:
        """Why a request's model or one of its LoRAs may not be used here (None: they may)."""
        refused = self.model_refusal(model, channel_nsfw)
        for name in loras:
            refused = refused or self.lora_refusal(name)
        return refused

    def lora_refusal(self, name: str) -> str | None:
        """Why a LoRA may not be used here (None: it may): the guild's list."""
        if self.settings is None or self.settings.allows_lora(name):
            return None
        if not self.settings.allowed_loras:
            return f"this server allows no LoRAs, not '{name}'"
        return (
            f"this server allows the LoRAs {', '.join(self.settings.allowed_loras)}, not '{name}'"
        )


def guild_rates(
    defaults: Limits,
    *,
    user_per_hour: float | None,
    guild_per_hour: float | None,
    max_jobs_per_user: int | None,
) -> Limits:
    """A guild's own rates over the defaults; bursts scale with the rate, never below one
    full grid of standard images (4) so that the smallest rate can still make one."""

    def burst(rate: float | None, default_rate: float, default_burst: float) -> float:
        if rate is None:
            return default_burst
        return max(BURST_FLOOR, rate * default_burst / default_rate)

    return dataclasses.replace(
        defaults,
        user_units_per_hour=user_per_hour or defaults.user_units_per_hour,
        user_burst=burst(user_per_hour, defaults.user_units_per_hour, defaults.user_burst),
        guild_units_per_hour=guild_per_hour or defaults.guild_units_per_hour,
        guild_burst=burst(guild_per_hour, defaults.guild_units_per_hour, defaults.guild_burst),
        max_jobs_per_user=max_jobs_per_user or defaults.max_jobs_per_user,
    )


def effective_limits(record: GuildSettingsRecord | None, bot: BotLimits) -> EffectiveLimits:
    """The one place a guild's settings meet the bot's: steps and sizes only ever smaller (a
    size never below the bot's smallest), the threshold only lower, rates the guild's own."""
    if record is None:
        return EffectiveLimits(
            bot.options, bot.defaults, bot.rates, None, bot.nsfw_threshold, bot.catalog
        )
    options, defaults = bot.options, bot.defaults
    if record.max_steps is not None and record.max_steps < options.max_steps:
        options = dataclasses.replace(options, max_steps=record.max_steps)
        defaults = dataclasses.replace(defaults, steps=min(defaults.steps, record.max_steps))
    if record.max_side is not None and record.max_side < options.max_side:
        side = max(record.max_side, options.min_side)
        options = dataclasses.replace(options, max_side=side)
        defaults = dataclasses.replace(
            defaults, width=min(defaults.width, side), height=min(defaults.height, side)
        )
    rates = guild_rates(
        bot.rates,
        user_per_hour=record.user_images_per_hour,
        guild_per_hour=record.guild_images_per_hour,
        max_jobs_per_user=record.max_jobs_per_user,
    )
    threshold = bot.nsfw_threshold
    if record.nsfw_threshold is not None:
        threshold = min(threshold, record.nsfw_threshold)
    return EffectiveLimits(options, defaults, rates, record, threshold, bot.catalog)
