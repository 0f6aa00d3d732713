"""A negative prompt typed into the prompt ("…, negative prompt: nsfw, lowres", "--no text") is
the negative prompt: admission hands it to the generator as one, and the rules read the prompt
without it, as it is drawn. Avoiding sexual words is no reason to refuse; leaving clothing out
of a person still is; beside a minor the pictures are checked strictly."""

from __future__ import annotations

import dataclasses

import pytest

from bot.imagine.admission import check_request
from bot.imagine.rules import negative_moved
from bot.imagine.service import ImagineService
from bot.imagine.types import Requester
from generation.errors import InvalidOption
from generation.options import GenerationOptions, OptionLimits, RequestedOptions
from moderation.lists import PromptRules
from moderation.negation import split_typed_negative
from moderation.prompts import NEGATIVE_BESIDE_MINOR, check_prompt, typed_negative_apart
from moderation.reasons import MINORS_REASON
from storage.models import JobStatus

RULES = PromptRules.default()
LISTS = dataclasses.replace(RULES, classifier=None)
MEMBER = Requester(source="test", guild_id=7, channel_id=70, user_id=700)


@pytest.mark.parametrize(
    ("prompt", "apart"),
    [
        ("a portrait, negative prompt: nsfw, lowres", ("a portrait", "nsfw, lowres")),
        ("a cat --no text --ar 16:9", ("a cat --ar 16:9", "text")),
        ("negative prompt: shirt | man on a sofa", ("man on a sofa", "shirt")),
        (
            "Negative prompt: nsfw, text. Prompt: a farmer holding a pumpkin",
            ("a farmer holding a pumpkin", "nsfw, text"),
        ),
        ("a lighthouse at dusk", ("a lighthouse at dusk", "blurry")),  # none typed: unchanged
    ],
)
def test_the_typed_negative_prompt_is_moved_to_the_negative_prompt(
    prompt: str, apart: tuple[str, str]
) -> None:
    given = "" if "negative" in prompt.casefold() or "--no" in prompt else "blurry"
    assert typed_negative_apart(prompt, given, RULES) == apart


@pytest.mark.parametrize(
    "prompt",
    [
        "a woman on the beach, negative prompt: nude, porn, sex",
        "a portrait, negative prompt: nsfw, nude, lowres",
        "Negative prompt: nsfw, text, signature. Prompt: a farmer in overalls",
    ],
)
def test_sexual_words_avoided_are_no_reason_to_refuse(prompt: str) -> None:
    for rules in (RULES, LISTS):
        verdict = check_prompt(prompt, rules)
        assert verdict.allowed, verdict.reasons
        assert not verdict.force_safe


def test_clothing_left_out_of_a_person_is_still_refused() -> None:
    reasons = check_prompt("portrait of a woman, negative prompt: clothes, lowres", LISTS).reasons
    assert reasons == (
        "the negative prompt leaves out clothing (clothes) in a picture of a person",
    )


@pytest.mark.parametrize(
    "prompt", ["10 year old girl --no nsfw naked sex", "child at the park, uc: nsfw, nude"]
)
def test_beside_a_minor_the_pictures_are_checked_strictly(prompt: str) -> None:
    verdict = check_prompt(prompt, LISTS)
    assert verdict.allowed
    assert verdict.safe_reasons == (NEGATIVE_BESIDE_MINOR,)


def test_what_is_drawn_is_still_read_whole() -> None:
    assert (
        "'nude' is not allowed (default list)"
        in check_prompt("negative prompt: text | nude woman", LISTS).reasons
    )
    assert MINORS_REASON in check_prompt("naked child, negative prompt: lowres", LISTS).reasons


async def test_admission_draws_the_prompt_and_avoids_the_typed_negative(
    service: ImagineService,
) -> None:
    outcome = await service.imagine(
        RequestedOptions(
            prompt="a red circle, negative prompt: nsfw, nude, text",
            negative_prompt="blurry",
            steps=2,
            variants=1,
        ),
        MEMBER,
    )
    assert outcome.status is JobStatus.SUCCEEDED, outcome.error
    record = await service.storage.audit.get_job(outcome.job_id)
    assert record is not None
    assert (record.prompt, record.negative_prompt) == ("a red circle", "blurry, nsfw, nude, text")
    assert not record.verdict_reasons


async def test_nothing_left_to_draw_is_refused_before_any_record(
    service: ImagineService,
) -> None:
    with pytest.raises(InvalidOption, match="words to draw beside the negative prompt"):
        await service.imagine(RequestedOptions(prompt="negative prompt: nsfw, text"), MEMBER)
    assert await service.storage.audit.list_jobs() == []


@pytest.mark.parametrize(
    "prompt",
    [
        # Joining what surrounds one typed negative makes another: split until none is left.
        "a woman on a beach, negative prompt --no blurry | : topless, spread legs",
        "a 10 year old girl, negative prompt --no blurry | : naked",
        "a man neg --no x Prompt: prompt: nude",
    ],
)
def test_what_the_generator_gets_holds_no_typed_negative(prompt: str) -> None:
    options = negative_moved(
        GenerationOptions(prompt, "", (1,), 4, 7.0, 64, 64, "default"), RULES, OptionLimits()
    )
    assert split_typed_negative(options.prompt, RULES.negative_markers)[1] == ""
    # The rules read exactly what is drawn, and it holds none of the words moved out.
    assert check_request(options, LISTS) == check_prompt(
        options.prompt, LISTS, options.negative_prompt, split=False
    )
    for word in ("topless", "naked", "nude"):
        assert word not in options.prompt


def test_a_marker_made_by_weights_is_read_whole() -> None:
    """``ne(g): (top:1.1)(less:1.1)`` is drawn as "neg: topless": the plain reading holds what
    looks like a typed negative, and the rules read it whole, as drawn."""
    options = GenerationOptions(
        "a woman on a beach, ne(g): (top:1.1)(less:1.1)", "", (1,), 4, 7.0, 64, 64, "default"
    )
    verdict = check_request(negative_moved(options, RULES, OptionLimits()), LISTS)
    assert not verdict.allowed
    assert "'topless' is not allowed (default list)" in verdict.reasons


@pytest.mark.parametrize(
    "prompt", ["a cat (fur:40 --no x | )", "portrait of a woman (dressed:-2 neg: x | )"]
)
def test_a_weight_the_split_makes_is_checked_too(prompt: str) -> None:
    """Taking the marker out turns "(fur:40 --no x | )" into the weight "(fur:40 )"."""
    options = GenerationOptions(prompt, "", (1,), 4, 7.0, 64, 64, "default")
    with pytest.raises(InvalidOption, match="prompt weight"):
        negative_moved(options, RULES, OptionLimits())
