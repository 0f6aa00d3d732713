"""What the bot writes, without Discord: texts within Discord's limits, cut cleanly; the
wording of counts; progress in the steps a member asked for; options named as typed; errors
in the member's words; and the rules of who may see a job or use a control (bot.access)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import discord
import pytest

from bot import access
from bot.access import Control, Use
from bot.discord.mod.text import history_line, jobs_text, recent
from bot.discord.render import OPTION_NAMES, chosen, explain, progress_text, refusal
from bot.discord.text import capped, plural, quoted
from bot.imagine.errors import ShuttingDown
from bot.imagine.outcomes import ImagineOutcome, Refusal
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
from moderation.prompts import PromptVerdict
from storage.models import JobKind, JobStatus
from storage.records import JobRecord


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
    assert jobs_text((4,)) == "1 queued or running job: 4"
    assert jobs_text((4, 5)) == "2 queued or running jobs: 4, 5"
    assert recent("blocked prompts", 0, 5) == "**blocked prompts**: none"
    assert recent("blocked prompts", 1, 5) == "**blocked prompts**: the only one"
    assert recent("blocked prompts", 5, 5) == "**blocked prompts**: the 5 most recent"


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


def test_errors_read_in_the_members_words_and_bugs_are_not_explained() -> None:
    bad = InvalidOption("scheduler", "fast", "one of default, euler")
    assert explain(bad) == "⚠️ sampler must be one of default, euler, got 'fast'"
    assert explain(ShuttingDown("sdbot is restarting")) == "🔁 sdbot is restarting"
    assert explain(access.Gated(Refusal.BANNED, "you are banned")) == "⛔ you are banned"
    assert explain(access.NoOpenJob()) == "⚠️ you have no queued or running job here"
    assert explain(KeyError("bug")) is None


def _job(**fields: object) -> JobRecord:
    base = JobRecord(
        id=7,
        kind=JobKind.IMAGINE.value,
        source="discord",
        status=JobStatus.SUCCEEDED,
        prompt="a cat",
        negative_prompt="",
        steps=4,
        guidance_scale=7.5,
        width=64,
        height=64,
        variants=4,
        scheduler="default",
        model="tiny",
        seeds=(1, 2, 3, 4),
        verdict="allowed",
        verdict_reasons=(),
        guild_id=10,
        channel_id=20,
        user_id=30,
        parent_job_id=None,
        parent_variant=None,
        error=None,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        started_at=None,
        finished_at=None,
        queue_ms=None,
        generation_ms=None,
        total_ms=None,
    )
    return dataclasses.replace(base, **fields)  # type: ignore[arg-type]


def test_a_job_is_seen_in_its_own_server_and_in_dms_by_its_requester_only() -> None:
    job = _job()
    assert access.job_refusal(job, 7, guild_id=10, user_id=99) is None
    elsewhere = access.job_refusal(job, 7, guild_id=11, user_id=30)
    assert str(elsewhere) == "there is no job 7 in this server"
    assert access.job_refusal(None, 8, guild_id=10, user_id=30) is not None
    assert access.job_refusal(_job(source="cli"), 7, guild_id=10, user_id=30) is not None
    dm_job = _job(guild_id=None)
    assert access.job_refusal(dm_job, 7, guild_id=None, user_id=30) is None
    assert str(access.job_refusal(dm_job, 7, guild_id=None, user_id=31)) == "there is no job 7 here"


def test_a_blocked_job_is_its_requesters_and_the_moderators() -> None:
    blocked = _job(status=JobStatus.BLOCKED)
    assert access.hidden_refusal(blocked, user_id=30, moderator=False) is None
    assert access.hidden_refusal(blocked, user_id=31, moderator=True) is None
    hidden = access.hidden_refusal(blocked, user_id=31, moderator=False)
    assert str(hidden) == "job 7 was blocked; only its requester and moderators can see it"
    assert access.hidden_refusal(_job(), user_id=31, moderator=False) is None


def test_who_may_use_a_control() -> None:
    grid, upscale = _job(), _job(kind=JobKind.UPSCALE.value)

    def use(
        control: Control, job: JobRecord, user: int, *, mod: bool = False, open_: bool = False
    ) -> Use:
        return access.control_use(control, job, user_id=user, moderator=mod, open_to_everyone=open_)

    assert use(Control.DELETE, grid, 30) is Use.ALLOW
    assert use(Control.DELETE, grid, 31) is Use.REFUSE
    assert use(Control.DELETE, grid, 31, open_=True) is Use.REFUSE  # open controls: not ❌
    assert use(Control.DELETE, grid, 31, mod=True) is Use.ALLOW
    assert use(Control.REROLL, grid, 31) is Use.REFUSE
    assert use(Control.REROLL, grid, 31, open_=True) is Use.ALLOW
    assert use(Control.UPSCALE, grid, 31, mod=True) is Use.ALLOW
    assert use(Control.UPSCALE, upscale, 30) is Use.IGNORE  # an upscale has 🔍 and ❌
    assert access.controls_for(JobKind.UPSCALE.value, has_picture=True) == (
        Control.ZOOM,
        Control.DELETE,
    )
    assert access.controls_for(JobKind.IMAGINE.value, has_picture=False) == (Control.DELETE,)
    assert len(access.controls_for(JobKind.REROLL.value, has_picture=True)) == 4


def test_a_purged_job_reads_as_purged_in_the_moderators_record() -> None:
    """/mod history and review show when and why a prompt went, never an empty quote, and a
    forgotten member is not taken for the operator (whose jobs have no member either)."""
    moment = datetime(2026, 2, 1, tzinfo=UTC)
    kept = history_line(_job())
    assert "<@30>" in kept
    assert "“a cat”" in kept
    forgotten = history_line(_job(prompt="", user_id=None, purged_at=moment, purge_reason="forget"))
    assert "a member whose data was deleted" in forgotten
    assert "prompt purged at the member's request" in forgotten
    assert "“" not in forgotten
    assert "the operator" not in forgotten
    expired = history_line(_job(prompt="", purged_at=moment, purge_reason="retention"))
    assert "<@30>" in expired
    assert "prompt purged by retention" in expired


def test_a_refusal_with_more_reasons_than_fit_says_how_many_more() -> None:
    reasons = tuple(f"'word{n}' is not allowed (default list)" for n in range(120))
    outcome = ImagineOutcome(1, JobStatus.BLOCKED, PromptVerdict(False, reasons), "x")
    text = refusal(outcome)
    assert len(text) <= 2000
    shown = text.count("is not allowed")
    assert 0 < shown < 120
    assert text.endswith(f"; and {120 - shown} more")
    few = ImagineOutcome(1, JobStatus.BLOCKED, PromptVerdict(False, reasons[:2]), "x")
    assert refusal(few).endswith("'word1' is not allowed (default list)")
