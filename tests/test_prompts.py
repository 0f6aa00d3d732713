"""Prompt rules: whole-word matches after normalisation, allow phrases, the minors rule."""

from __future__ import annotations

import pytest

from moderation.prompts import PromptRules, check_prompt, normalise

RULES = PromptRules.default()


@pytest.mark.parametrize(
    "prompt",
    [
        "a lighthouse at dusk",
        "a naked mole rat in a burrow",
        "nude lipstick on a marble table",
        "chicken breast with rosemary",
        "Scunthorpe high street in the rain",
        "children playing soccer",
        "a cocktail party",
        "an essex village",  # "sex" inside a word is not the word
    ],
)
def test_benign_prompts_pass(prompt: str) -> None:
    verdict = check_prompt(prompt, RULES)
    assert verdict.allowed, verdict.reasons


@pytest.mark.parametrize(
    ("prompt", "term"),
    [
        ("a nude woman", "nude"),
        ("NUDE woman", "nude"),
        ("n\u200bude portrait", "nude"),  # zero-width space
        ("ｎｕｄｅ portrait", "nude"),  # full-width letters fold under NFKC
        ("porn.", "porn"),
        ("two naked men", "naked"),
    ],
)
def test_blocked_terms_are_named(prompt: str, term: str) -> None:
    verdict = check_prompt(prompt, RULES)
    assert not verdict.allowed
    assert f"contains the blocked term {term!r}" in verdict.reasons


def test_minors_with_sexual_terms_are_always_refused() -> None:
    permissive = PromptRules(block_terms=(), allow_terms=())
    verdict = check_prompt("a sexy teen in lingerie", permissive)
    assert not verdict.allowed
    assert verdict.reasons == ("sexual content involving minors is never allowed",)
    assert check_prompt("a teen reading a book", permissive).allowed
    allowing = PromptRules(block_terms=(), allow_terms=("nude", "sexy"))
    assert not check_prompt("a nude child", allowing).allowed  # a guild cannot allow it


def test_guild_terms_add_to_the_shipped_ones() -> None:
    rules = RULES.with_terms(block=["Clowns"], allow=["sexy beast"])
    assert check_prompt("a clowns parade", rules).reasons == ("contains the blocked term 'clowns'",)
    assert check_prompt("a sexy beast of a car", rules).allowed
    assert not check_prompt("a sexy car", rules).allowed


def test_normalise() -> None:
    assert normalise("  A\u00adB—c!!  D_e ") == "ab c d e"
