"""The guild-setting spec table: what each setting accepts, the bound it may not loosen, and
what is in force once a guild's settings meet the bot's."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import pytest

from bot.guild_limits import BotLimits, effective_limits, guild_rates
from bot.guild_settings import (
    BY_NAME,
    BY_OPTION,
    NAMES,
    SPECS,
    InvalidSetting,
    Naming,
    option_name,
    plain,
    render,
)
from bot.guild_settings_check import check_change
from common.errors import SdbotError
from generation.catalog import Catalog, LoraFile, ModelEntry, Size
from generation.families import Family
from generation.limits import Limits
from generation.models import EMBEDDED_MODEL_DIR, resolve_model
from generation.options import ModelDefaults, OptionLimits
from moderation.policy import NsfwPolicy
from storage.guild_settings import GuildSettingsRecord
from storage.models import Controls

BOT = BotLimits(
    options=OptionLimits(max_steps=50, min_side=64, max_side=1024),
    defaults=ModelDefaults(steps=25, width=512, height=512),
    rates=Limits(),
    nsfw_threshold=0.6,
)


def test_every_setting_of_storage_is_in_the_table_once() -> None:
    stored = set(GuildSettingsRecord.__dataclass_fields__) - {
        "guild_id",
        "paused_at",
        "pause_reason",
    }
    assert set(NAMES) == stored
    assert len(BY_OPTION) == len(SPECS) == len(BY_NAME)
    flags = [spec.flag for spec in SPECS if spec.flag is not None]
    assert len(set(flags)) == len(flags)
    assert all(flag.startswith("--") for flag in flags)
    assert BY_NAME["nsfw_policy"].choices == ("block", "spoiler")
    assert BY_NAME["gore_policy"].choices == ("age_restricted", "block")
    assert BY_NAME["controls"].choices == tuple(c.value for c in Controls)
    types = {spec.name: spec.value_type for spec in SPECS}
    assert types["max_jobs_per_user"] is int
    assert types["user_images_per_hour"] is float
    assert types["nsfw_policy"] is str


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_side": 100}, "max_side must be a multiple of 8 from 64 to 4096, got 100"),
        ({"nsfw_threshold": 2.0}, "nsfw_threshold must be in (0, 1], got 2.0"),
        ({"nsfw_threshold": math.nan}, "nsfw_threshold must be in (0, 1], got nan"),
        (
            {"max_jobs_per_user": 0},
            "max_jobs_per_user must be above 0 and at most 1000000, got 0",
        ),
        ({"max_steps": 501}, "max_steps must be a whole number from 1 to 500, got 501"),
        ({"max_steps": True}, "max_steps must be a whole number from 1 to 500, got True"),
        ({"nsfw_policy": "allow"}, "nsfw_policy must be one of block, spoiler, got 'allow'"),
        (
            {"gore_policy": "allow"},
            "gore_policy must be one of age_restricted, block, got 'allow'",
        ),
        ({"channels": []}, "channels must name 1 to 50 channels (None: every channel), got 0"),
        ({"channels": list(range(1, 52))}, "got 51"),
        ({"colour": "red"}, "unknown settings ['colour']; known: nsfw_policy, "),
    ],
)
def test_a_bad_value_is_named_with_what_is_allowed(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidSetting) as refused:
        check_change(changes)
    assert message in str(refused.value)
    assert isinstance(refused.value, SdbotError)


def test_a_guild_may_be_stricter_than_the_bot_never_laxer() -> None:
    with pytest.raises(InvalidSetting, match=r"^max_steps 400 is above the bot's limit of 50$"):
        check_change({"max_steps": 400}, BOT)
    with pytest.raises(InvalidSetting, match=r"^max_size 2048 is above the bot's limit of 1024$"):
        check_change({"max_side": 2048}, BOT, naming=Naming.OPTION)
    with pytest.raises(InvalidSetting, match=r"^nsfw_threshold 0\.99 is laxer than the bot's 0\.6"):
        check_change({"nsfw_threshold": 0.99}, BOT)
    # The range is checked first: a value wrong in both ways is told what the setting accepts.
    with pytest.raises(InvalidSetting, match="must be in"):
        check_change({"nsfw_threshold": 2.0}, BOT)
    # Without the bot's limits (storage's own check), only the range holds.
    assert check_change({"max_steps": 400}) == {"max_steps": 400}


def test_a_change_comes_out_as_storage_takes_it() -> None:
    checked = check_change(
        {
            "nsfw_policy": NsfwPolicy.SPOILER,
            "controls": "everyone",
            "channels": [5, 3, 5],
            "max_steps": None,
            "max_side": 512,
        },
        BOT,
    )
    assert checked == {
        "nsfw_policy": "spoiler",
        "controls": "everyone",
        "channels": [3, 5],
        "max_steps": None,
        "max_side": 512,
    }


def test_names_and_rendering_follow_the_table() -> None:
    assert option_name("max_side") == "max_size"
    assert option_name("audit_channel_id") == "log_channel"
    assert option_name("something_else") == "something_else"
    assert render("channels", None) == "every channel"
    assert render("audit_channel_id", None) == "none"
    assert render("max_steps", None) == "default"
    assert render("audit_channel_id", 7) == "<#7>"
    assert render("channels", [1, 2]) == "<#1>, <#2>"
    assert render("nsfw_threshold", 0.30000) == "0.3"
    assert render("controls", Controls.EVERYONE) == "everyone"
    assert plain((1, 2)) == [1, 2]
    assert plain(NsfwPolicy.BLOCK) == "block"
    assert BY_NAME["nsfw_policy"].reset_to == "block"
    assert BY_NAME["gore_policy"].reset_to == "age_restricted"  # a reset lets gore in NSFW again
    assert BY_NAME["max_steps"].reset_to is None


def test_effective_limits_tighten_the_bots_and_never_loosen_them() -> None:
    assert effective_limits(None, BOT).options == BOT.options
    assert effective_limits(None, BOT).settings is None
    record = GuildSettingsRecord(
        guild_id=1,
        max_steps=12,
        max_side=96,
        nsfw_threshold=0.3,
        user_images_per_hour=30.0,
        max_jobs_per_user=2,
    )
    here = effective_limits(record, BOT)
    assert (here.options.max_steps, here.defaults.steps) == (12, 12)
    assert (here.options.max_side, here.defaults.width, here.defaults.height) == (96, 96, 96)
    assert here.nsfw_threshold == 0.3
    assert here.rates.user_units_per_hour == 30.0
    assert here.rates.user_burst == 4.0  # 30 × 8 / 60, never below one grid
    assert here.rates.guild_units_per_hour == BOT.rates.guild_units_per_hour
    assert here.rates.max_jobs_per_user == 2
    assert here.own("max_steps")
    assert not here.own("guild_images_per_hour")

    laxer = GuildSettingsRecord(guild_id=1, max_steps=400, max_side=4096, nsfw_threshold=0.9)
    there = effective_limits(laxer, BOT)  # stored by older code: the bot's limits hold
    assert (there.options.max_steps, there.options.max_side) == (50, 1024)
    assert there.nsfw_threshold == 0.6
    small = effective_limits(GuildSettingsRecord(guild_id=1, max_side=64), BotLimits(
        options=OptionLimits(min_side=128, max_side=1024), defaults=ModelDefaults(),
        rates=Limits(), nsfw_threshold=0.6,
    ))  # fmt: skip
    assert small.options.max_side == 128  # never below the bot's smallest size


def test_guild_rates_scale_the_burst_with_the_rate() -> None:
    rates = guild_rates(Limits(), user_per_hour=None, guild_per_hour=1200.0, max_jobs_per_user=None)
    assert rates.guild_burst == 80.0
    assert rates.user_units_per_hour == Limits().user_units_per_hour


def test_mod_settings_offers_what_the_table_says() -> None:
    """/mod settings' options, their descriptions, ranges and choices are the table's."""
    from bot.discord.mod import settings
    from bot.discord.mod.group import ModGroup
    from bot.guild_admin import GuildAdmin
    from bot.guild_settings import Kind
    from storage.repositories import unopened_storage

    group = ModGroup(GuildAdmin(unopened_storage("sqlite+aiosqlite://")))
    settings.add_commands(group)
    command = group.get_command("settings")
    assert command is not None
    params = {param.name: param for param in command.parameters}  # type: ignore[union-attr]
    for spec in SPECS:
        if spec.kind is Kind.CHANNELS:  # answer_in, stop_answering_in, every_channel
            continue
        param = params[spec.option]
        assert param.description == spec.help
        if spec.option_range is not None:
            assert (param.min_value, param.max_value) == spec.option_range, spec.option
        if spec.choices:
            assert [choice.value for choice in param.choices] == list(spec.choices)
    assert [choice.value for choice in params["reset"].choices] == list(NAMES)
    assert [choice.name for choice in params["reset"].choices] == [s.label for s in SPECS]


def _catalog() -> Catalog:
    """Two models (one for NSFW channels only) and two LoRAs, as an operator lists them."""
    source = resolve_model(str(EMBEDDED_MODEL_DIR))
    sizes = (Size("1:1", 64, 64),)

    def model(name: str, nsfw_only: bool = False) -> ModelEntry:
        return ModelEntry(name, source, Family.SD1, ModelDefaults(), sizes, nsfw_only=nsfw_only)

    loras = tuple(LoraFile(name, Path(f"/loras/{name}.safetensors"), 32) for name in ("a", "b"))
    return Catalog(
        models=(model("embedded"), model("night", nsfw_only=True)),
        default_model="embedded",
        loras=loras,
    )


OFFERING = dataclasses.replace(BOT, catalog=_catalog())


def test_a_guild_names_the_models_and_loras_it_allows() -> None:
    assert (BY_NAME["allowed_models"].option, BY_NAME["allowed_models"].flag) == (
        "models",
        "--models",
    )
    assert (BY_NAME["allowed_loras"].option, BY_NAME["allowed_loras"].flag) == ("loras", "--loras")
    # The text /mod settings and sdbot guild set take: names separated by commas, or words.
    assert check_change(
        {"allowed_models": " night, embedded,night", "allowed_loras": "b"}, OFFERING
    ) == {"allowed_models": ["embedded", "night"], "allowed_loras": ["b"]}
    assert check_change({"allowed_models": "ALL", "allowed_loras": "all"}, OFFERING) == {
        "allowed_models": None,
        "allowed_loras": None,
    }
    assert check_change({"allowed_loras": "none"}, OFFERING) == {"allowed_loras": []}
    assert check_change({"allowed_models": ["night"]}, OFFERING) == {"allowed_models": ["night"]}
    with pytest.raises(InvalidSetting, match=r"^models must name 1 to 50 models \('all' for"):
        check_change({"allowed_models": "none"}, OFFERING, naming=Naming.OPTION)


def test_a_name_the_bot_does_not_offer_is_refused_with_what_it_offers() -> None:
    with pytest.raises(InvalidSetting) as refused:
        check_change({"allowed_models": "embedded,sdxl"}, OFFERING, naming=Naming.OPTION)
    assert str(refused.value) == "models: sdbot has no model 'sdxl'; its models: embedded, night"
    with pytest.raises(InvalidSetting) as refused:
        check_change({"allowed_loras": "a, outline, c"}, OFFERING)
    assert str(refused.value) == "allowed_loras: sdbot has no LoRA 'c', 'outline'; its LoRAs: a, b"
    # Without the bot's catalog (storage's own check) a name is kept as given.
    assert check_change({"allowed_loras": "outline"}) == {"allowed_loras": ["outline"]}


def test_the_models_and_loras_in_force_here() -> None:
    assert render("allowed_models", None) == "every model"
    assert render("allowed_loras", None) == "every LoRA"
    assert render("allowed_loras", ()) == "none"
    assert render("allowed_models", ("embedded", "night")) == "embedded, night"
    anywhere = effective_limits(None, OFFERING)
    assert [m.name for m in anywhere.models(channel_nsfw=False)] == ["embedded"]
    assert [m.name for m in anywhere.models(channel_nsfw=True)] == ["embedded", "night"]
    assert [lora.name for lora in anywhere.loras()] == ["a", "b"]
    assert anywhere.choice_refusal("night", ["a"], channel_nsfw=False) == (
        "the model 'night' is only for age-restricted (NSFW) channels"
    )
    assert anywhere.choice_refusal("night", ["a", "b"], channel_nsfw=True) is None

    record = GuildSettingsRecord(guild_id=1, allowed_models=("night",), allowed_loras=("b",))
    here = effective_limits(record, OFFERING)
    assert [m.name for m in here.models(channel_nsfw=True)] == ["night"]
    assert [lora.name for lora in here.loras()] == ["b"]
    assert here.choice_refusal("embedded", [], channel_nsfw=True) == (
        "this server allows the models night, not 'embedded'"
    )
    assert here.choice_refusal("night", ["b", "a"], channel_nsfw=True) == (
        "this server allows the LoRAs b, not 'a'"
    )
    assert (here.default_model(channel_nsfw=True), anywhere.default_model(False)) == (
        "night",
        "embedded",
    )
    assert here.default_model(channel_nsfw=False) == "embedded"  # none here: refused by name
    no_loras = effective_limits(dataclasses.replace(record, allowed_loras=()), OFFERING)
    assert no_loras.loras() == ()
    assert no_loras.choice_refusal("night", ["b"], channel_nsfw=True) == (
        "this server allows no LoRAs, not 'b'"
    )


def test_mod_settings_shows_the_models_and_loras_in_force() -> None:
    from bot.discord.mod.settings import settings_text
    from bot.guild_admin import GuildAdmin
    from storage.repositories import unopened_storage

    admin = GuildAdmin(unopened_storage("sqlite+aiosqlite://"), OFFERING)
    shown = settings_text(admin, GuildSettingsRecord(guild_id=1, allowed_models=("night",)))
    assert "\n- models: night\n" in shown
    assert "\n- loras: every LoRA (a, b)\n" in shown
    shown = settings_text(admin, GuildSettingsRecord(guild_id=1, allowed_loras=()))
    assert "\n- models: every model (embedded, night)\n" in shown
    assert "\n- loras: none\n" in shown
