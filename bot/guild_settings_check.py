"""Checking a change to a guild's settings against what each setting allows (``SPECS``) and the
bot's own bounds and catalog: a guild can be stricter than the bot, never laxer."""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from typing import Any

from bot.guild_limits import BotLimits, Bound
from bot.guild_settings import (
    BY_NAME,
    MAX_RATE,
    NAMED,
    NAMES,
    InvalidSetting,
    Kind,
    Naming,
    SettingSpec,
)
from generation.catalog import Catalog
from storage.guild_settings import MAX_CHANNELS, MAX_NAMES  # the columns' bounds


def check_change(
    changes: Mapping[str, Any],
    bot: BotLimits | None = None,
    *,
    naming: Naming = Naming.STORED,
) -> dict[str, Any]:
    """The changes as storage takes them (choices as text, channels and names sorted once
    each), each checked against what the setting allows and, with ``bot``, against the bot's
    own bound and catalog (a guild can be stricter than the bot, never laxer). None puts a
    setting back to the bot's default. Raises :class:`InvalidSetting` naming the bad value
    and what is allowed."""
    unknown = set(changes) - set(NAMES)
    if unknown:
        raise InvalidSetting(f"unknown settings {sorted(unknown)}; known: {', '.join(NAMES)}")
    checked: dict[str, Any] = {}
    for name, value in changes.items():
        spec = BY_NAME[name]
        checked[name] = None if value is None else _checked(spec, value, spec.called(naming))
    if bot is not None:
        for name, value in checked.items():
            spec = BY_NAME[name]
            if value is not None and spec.bound is not None:
                _within_bound(spec, value, bot.bound(spec.bound), spec.called(naming))
            if value is not None and spec.kind in NAMED and bot.catalog is not None:
                _in_catalog(spec, value, bot.catalog, spec.called(naming))
    return checked


def _checked(spec: SettingSpec, value: Any, called: str) -> Any:
    if spec.kind is Kind.CHOICE:
        value = value.value if isinstance(value, enum.Enum) else value
        if value not in spec.choices:
            raise InvalidSetting(
                f"{called} must be one of {', '.join(spec.choices)}, got {value!r}"
            )
        return str(value)
    if spec.kind is Kind.THRESHOLD:
        if not _number(value) or not 0.0 < value <= 1.0:
            raise InvalidSetting(f"{called} must be in (0, {spec.maximum:g}], got {value}")
        return value
    if spec.kind is Kind.RATE:
        if not _number(value) or not 0 < value <= MAX_RATE:
            raise InvalidSetting(f"{called} must be above 0 and at most {MAX_RATE}, got {value}")
        return value
    if spec.kind in (Kind.STEPS, Kind.SIDE):  # a SIDE is a STEPS in multiples of its own
        within = _whole(value) and spec.minimum <= value <= spec.maximum
        if not within or value % spec.multiple_of:
            step = spec.multiple_of
            whole = "a whole number" if spec.kind is Kind.STEPS else f"a multiple of {step}"
            raise InvalidSetting(
                f"{called} must be {whole} from {spec.minimum:g} to {spec.maximum:g}, got {value}"
            )
        return value
    if spec.kind is Kind.CHANNEL:
        if not _whole(value) or value < 1:
            raise InvalidSetting(f"{called} must be a channel id, got {value!r}")
        return value
    if spec.kind in NAMED:
        return _names(spec, value, called)
    channels = sorted({int(channel) for channel in value})
    if not channels or len(channels) > MAX_CHANNELS:
        raise InvalidSetting(
            f"{called} must name 1 to {MAX_CHANNELS} channels (None: every channel), "
            f"got {len(channels)}"
        )
    return channels


def _names(spec: SettingSpec, value: Any, called: str) -> list[str] | None:
    """Names, or their text: comma-separated, ``all`` (None: every one) or ``none`` ([])."""
    if isinstance(value, str):
        if value.strip().lower() == "all":
            return None
        value = [] if value.strip().lower() == "none" else value.split(",")
    least = 1 if spec.kind is Kind.MODELS else 0
    unique = sorted({str(name).strip() for name in value} - {""})
    if not least <= len(unique) <= MAX_NAMES:
        every = "'all' for every one" + ("" if least else ", 'none' for none")
        raise InvalidSetting(
            f"{called} must name {least} to {MAX_NAMES} {spec.option} ({every}), got {len(unique)}"
        )
    return unique


def _in_catalog(spec: SettingSpec, names: list[str], catalog: Catalog, called: str) -> None:
    models = spec.kind is Kind.MODELS
    offered = [item.name for item in (catalog.models if models else catalog.loras)]
    unknown = [repr(name) for name in names if name not in offered]
    if unknown:
        what = "model" if models else "LoRA"
        raise InvalidSetting(
            f"{called}: sdbot has no {what} {', '.join(unknown)}; "
            f"its {what}s: {', '.join(offered) or 'none'}"
        )


def _within_bound(spec: SettingSpec, value: float, most: float, called: str) -> None:
    if value <= most:
        return
    if spec.bound is Bound.NSFW_THRESHOLD:
        raise InvalidSetting(
            f"{called} {_shown(value)} is laxer than the bot's {most:g}; "
            "a server can only be stricter (lower)"
        )
    raise InvalidSetting(f"{called} {_shown(value)} is above the bot's limit of {most:g}")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shown(value: float) -> str:
    """A bad number as it was given: ``0.99``, ``400``, never rounded by ``:g``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)
