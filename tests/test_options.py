"""Option validation: bad values are named with their allowed range, never clamped."""

from __future__ import annotations

import pytest

from generation.errors import InvalidOption
from generation.options import (
    MAX_SEED,
    ModelDefaults,
    OptionLimits,
    RequestedOptions,
    Size,
    limits_for_model,
    validate,
    variant_seeds,
)

LIMITS = OptionLimits()
DEFAULTS = ModelDefaults(steps=20, guidance_scale=5.0, width=64, height=64, scheduler="dpmpp")


def check(**changes: object) -> None:
    validate(RequestedOptions(**{"prompt": "a red circle", **changes}), LIMITS, DEFAULTS)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"prompt": ""}, "prompt must be non-empty text, got ''"),
        ({"prompt": "   "}, "prompt must be non-empty text"),
        ({"prompt": "x" * 1001}, "prompt must be at most 1000 characters"),
        ({"steps": 0}, "steps must be a whole number from 1 to 50, got 0"),
        ({"steps": 51}, "steps must be a whole number from 1 to 50, got 51"),
        ({"width": 100}, "width must be a multiple of 8 from 64 to 1024, got 100"),
        ({"height": 2048}, "height must be a multiple of 8 from 64 to 1024, got 2048"),
        ({"variants": 0}, "variants must be a whole number from 1 to 4, got 0"),
        ({"variants": 5}, "variants must be a whole number from 1 to 4, got 5"),
        ({"guidance_scale": -1.0}, "cfg must be a number from 0 to 20, got -1.0"),
        ({"guidance_scale": float("nan")}, "cfg must be a number from 0 to 20, got nan"),
        ({"scheduler": "magic"}, "scheduler must be one of default, dpmpp, "),
        ({"scheduler": ""}, "scheduler must be one of default, dpmpp, "),  # not the default
        ({"seed": -1}, f"seed must be a whole number from 0 to {MAX_SEED}, got -1"),
        ({"seed": MAX_SEED + 1}, f"got {MAX_SEED + 1}"),
    ],
)
def test_bad_values_are_named_with_the_allowed_range(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidOption) as caught:
        check(**changes)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_defaults_come_from_the_model_and_seeds_from_the_base_seed() -> None:
    options = validate(
        RequestedOptions(prompt="  a red circle ", seed=10, variants=3), LIMITS, DEFAULTS
    )
    assert options.prompt == "a red circle"
    assert options.seeds == (10, 11, 12)
    assert (options.steps, options.guidance_scale, options.width, options.scheduler) == (
        20, 5.0, 64, "dpmpp",
    )  # fmt: skip


def test_user_values_win_over_defaults() -> None:
    options = validate(
        RequestedOptions(
            prompt="p", steps=5, guidance_scale=0, width=128, height=96, scheduler="euler"
        ),
        LIMITS,
        DEFAULTS,
    )
    assert (options.steps, options.guidance_scale, options.width, options.height) == (
        5,
        0.0,
        128,
        96,
    )
    assert options.scheduler == "euler"


def test_without_a_seed_each_request_gets_a_fresh_one() -> None:
    seeds = {validate(RequestedOptions(prompt="p"), LIMITS, DEFAULTS).seeds[0] for _ in range(20)}
    assert len(seeds) > 15
    assert all(0 <= seed <= MAX_SEED for seed in seeds)


def test_variant_seeds_wrap_at_the_top() -> None:
    assert variant_seeds(MAX_SEED, 2) == (MAX_SEED, 0)


def test_limits_come_from_settings() -> None:
    with pytest.raises(InvalidOption, match="from 1 to 8, got 9"):
        validate(RequestedOptions(prompt="p", steps=9), OptionLimits(max_steps=8), DEFAULTS)


@pytest.mark.parametrize(
    ("native", "settings_max", "served"),
    [
        (64, 1024, 128),  # the embedded model: 1024² took 76 s idle and stalled under load
        (512, 1024, 1024),  # SD 1.5: the settings' default is already its limit
        (512, 4096, 1024),
        (1024, 1024, 1024),  # SDXL: the settings stop it first
        (1024, 4096, 2048),
    ],
)
def test_sizes_follow_the_model_and_the_settings(
    native: int, settings_max: int, served: int
) -> None:
    defaults = ModelDefaults(width=native, height=native, native_side=native)
    limits = limits_for_model(OptionLimits(max_side=settings_max), defaults)
    assert limits.max_side == served
    validate(RequestedOptions(prompt="p", width=served, height=served), limits, defaults)
    with pytest.raises(InvalidOption) as refused:
        validate(RequestedOptions(prompt="p", width=served + 8), limits, defaults)
    assert str(refused.value).startswith(f"width must be a multiple of 8 from 64 to {served}")
    if served == 2 * native:
        assert f"to {served} (2 × the model's native {native} px), got {served + 8}" in str(
            refused.value
        )


def test_the_models_own_default_size_is_always_served() -> None:
    defaults = ModelDefaults(width=768, height=640, native_side=256)
    assert limits_for_model(OptionLimits(), defaults).max_side == 768


def test_a_minimum_side_above_what_the_model_serves_is_refused() -> None:
    defaults = ModelDefaults(width=64, height=64, native_side=64)
    with pytest.raises(InvalidOption) as refused:
        limits_for_model(OptionLimits(min_side=256), defaults)
    assert str(refused.value) == (
        "SDBOT_MIN_SIDE must be at most 128, the largest side this model serves "
        "(2 × its native 64 px), got 256"
    )


SIZES = (Size("1:1", 64, 64), Size("3:2", 96, 64), Size("2:3", 64, 96), Size("16:9", 512, 288))


def sized(limits: OptionLimits = LIMITS, **changes: object) -> tuple[int, int]:
    requested = RequestedOptions(**{"prompt": "p", **changes})  # type: ignore[arg-type]
    options = validate(requested, limits, DEFAULTS, SIZES)
    return options.width, options.height


def test_with_sizes_a_request_gets_one_of_them() -> None:
    assert sized() == (64, 64)  # the defaults' width x height, being one of them
    assert sized(aspect="2:3") == (64, 96)
    assert sized(width=96, height=64) == (96, 64)
    assert sized(width=96) == (96, 64)  # the other side from the default size
    assert sized(height=288, width=512) == (512, 288)
    # Defaults that are none of the sizes: the first size.
    requested = RequestedOptions(prompt="p")
    other = ModelDefaults(width=768, height=768)
    assert validate(requested, LIMITS, other, SIZES[1:]).width == 96


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"width": 128, "height": 128}, "size must be one of 64x64 (1:1), 96x64 (3:2), "
         "64x96 (2:3), 512x288 (16:9), got '128x128'"),
        ({"width": 72}, "got '72x64'"),
        ({"width": True}, "size must be one of"),
        ({"aspect": "4:3"}, "aspect must be one of 1:1, 3:2, 2:3, 16:9, got '4:3'"),
        ({"aspect": "3:2", "height": 64}, "aspect must be given alone: an aspect or a width "
         "and height, not both, got '3:2'"),
        ({"aspect": "16:9", "limits": OptionLimits(max_side=256)}, "aspect must be one of "
         "1:1, 3:2, 2:3, got '16:9'"),  # a guild's max_side: the big size is not offered
        ({"limits": OptionLimits(min_side=128, max_side=256)}, "size must be from 128 to 256 "
         "px a side (the limits here), and this model draws no size within them, got "
         "'64x64 (1:1)'"),
    ],
)  # fmt: skip
def test_with_sizes_anything_else_is_named(changes: dict[str, object], message: str) -> None:
    limits = changes.pop("limits", LIMITS)
    assert isinstance(limits, OptionLimits)
    with pytest.raises(InvalidOption) as refused:
        sized(limits, **changes)
    assert message in str(refused.value)


def test_without_sizes_an_aspect_is_refused() -> None:
    with pytest.raises(InvalidOption, match="aspect must be width and height"):
        check(aspect="1:1")


@pytest.mark.parametrize(
    ("spec", "size"),
    [("3:2=768x512", Size("3:2", 768, 512)), (" 1:1 = 64 x 64 ", Size("1:1", 64, 64))],
)
def test_size_specs(spec: str, size: Size) -> None:
    assert Size.parse(spec) == size
    assert Size.parse(size.spec) == size
    assert str(size) == f"{size.width}x{size.height} ({size.aspect})"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("768x512", "ASPECT=WIDTHxHEIGHT"),
        ("wide=768x512", "ASPECT=WIDTHxHEIGHT"),
        ("3:2=770x512", "multiples of 8 from 8 to 8192 px, got 770x512"),
        ("1:1=0x0", "got 0x0"),
        ("1:1=16384x8", "got 16384x8"),
    ],
)
def test_bad_size_specs(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Size.parse(spec)
