"""What the bot writes, without Discord: texts within Discord's limits, cut cleanly; the
wording of counts; progress in the steps a member asked for; options named as typed."""

from __future__ import annotations

import discord
import pytest

from bot.discord.render import OPTION_NAMES, chosen, progress_text
from bot.discord.text import capped, plural, quoted
from bot.discord_mod import _jobs, _recent
from generation.errors import InvalidOption
from generation.options import (
    GenerationOptions,
    ModelDefaults,
    OptionLimits,
    RequestedOptions,
    renamed,
    validate,
)
from generation.protocol import Progress


def test_capped_leaves_what_fits_and_cuts_the_rest_with_an_ellipsis() -> None:
    assert capped("short") == "short"
    cut = capped("x" * 3900)
    assert len(cut) == 2000
    assert cut.endswith("…")


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("**" + "a" * 30 + "** done", 20, "**" + "a" * 15 + "…**"),  # bold closed again
        ("x" * 8 + "\\*" + "y" * 20, 10, "x" * 8 + "…"),  # never between \ and what it escapes
        ("hi <@1234567890> there", 12, "hi …"),  # never inside a mention
        ("`code span here` and", 10, "`code sp…`"),  # a code span closed again
        ("||secret text here||", 10, "||secre…||"),
    ],
)
def test_capped_never_breaks_markdown(text: str, limit: int, expected: str) -> None:
    assert capped(text, limit) == expected
    assert len(capped(text, limit)) <= limit


def test_quoted_member_text_is_escaped_then_cut_on_a_whole_escape() -> None:
    shown = quoted("*" * 100 + " @everyone", 21)
    assert shown == "\\*" * 10 + "…"
    assert discord.utils.escape_markdown("@everyone") != quoted("@everyone")  # no ping


def test_counts_read_right() -> None:
    assert plural(1, "job") == "1 job"
    assert plural(2, "entry", "entries") == "2 entries"
    assert _jobs((4,)) == "1 queued or running job: 4"
    assert _jobs((4, 5)) == "2 queued or running jobs: 4, 5"
    assert _recent("blocked prompts", 0, 5) == "**blocked prompts**: none"
    assert _recent("blocked prompts", 1, 5) == "**blocked prompts**: the only one"
    assert _recent("blocked prompts", 5, 5) == "**blocked prompts**: the 5 most recent"


def _options(steps: int, upscale: int = 1, scheduler: str = "default") -> GenerationOptions:
    return GenerationOptions("p", "", (1,), steps, 7.0, 256, 256, scheduler, upscale)


def test_an_upscale_shows_its_steps_and_then_its_redraw() -> None:
    upscale = _options(20, upscale=2)  # the worker counts 20 + 7 steps
    assert progress_text(Progress(1, 1, 27), upscale) == "drawing: step 1/20"
    assert progress_text(Progress(1, 20, 27), upscale) == "drawing: step 20/20"
    assert progress_text(Progress(1, 21, 27), upscale) == "upscaling: step 1/7"
    assert progress_text(Progress(1, 27, 27), upscale) == "upscaling: step 7/7"
    heun = _options(10)  # a sampler that takes more steps than asked
    assert progress_text(Progress(1, 19, 19), heun) == "drawing: step 10/10"


def test_a_post_echoes_the_options_and_the_sampler_when_chosen() -> None:
    assert chosen(_options(20)) == "256×256 · 20 steps · guidance 7"
    assert chosen(_options(20, upscale=2, scheduler="euler")) == (
        "512×512 · 20 steps · guidance 7 · sampler euler"
    )


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        (RequestedOptions("p", width=100, height=100), "size must be a multiple of 8"),
        (RequestedOptions("p", guidance_scale=30.0), "guidance must be a number from 0 to 20"),
        (RequestedOptions("p", scheduler="fast"), "sampler must be one of default"),
    ],
)
def test_refusals_name_the_option_as_discord_members_type_it(
    requested: RequestedOptions, expected: str
) -> None:
    with pytest.raises(InvalidOption) as caught:
        validate(requested, OptionLimits(), ModelDefaults())
    assert str(renamed(caught.value, OPTION_NAMES)).startswith(expected)
