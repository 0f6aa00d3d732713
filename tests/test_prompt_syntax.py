"""The prompt syntax (no torch): A1111 attention weights, BREAK, escapes, lora tags and lists,
the weight range, and the plain text the moderation rules read."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from generation.errors import InvalidOption
from generation.options import LoraChoice
from generation.prompt_syntax import (
    BREAK,
    Segment,
    check_weights,
    parse_lora_list,
    parse_weights,
    plain_text,
    take_lora_tags,
)

UP, DOWN = 1.1, 1 / 1.1


def read(prompt: str) -> list[tuple[str, float]]:
    return [(s.text, round(s.weight, 6)) for s in parse_weights(prompt)]


def expect(*pairs: tuple[str, float]) -> list[tuple[str, float]]:
    return [(text, round(weight, 6)) for text, weight in pairs]


@pytest.mark.parametrize(
    ("prompt", "segments"),
    [
        ("a red circle", expect(("a red circle", 1))),
        ("a (red) circle", expect(("a ", 1), ("red", UP), (" circle", 1))),
        ("((red))", expect(("red", UP * UP))),
        ("[red]", expect(("red", DOWN))),
        ("[[red]]", expect(("red", DOWN * DOWN))),
        ("(red:1.3)", expect(("red", 1.3))),
        ("( red : 1.3 )", expect((" red ", 1.3))),
        ("((red:1.3))", expect(("red", 1.3 * UP))),
        ("(a (red:2) b)", expect(("a ", UP), ("red", 2 * UP), (" b", UP))),
        ("(red:0)", expect(("red", 0))),
        ("(red:-1)", expect(("red", -1))),
        ("a (red:1) b", expect(("a red b", 1))),  # equal weights merge
        ("(red:+.5)", expect(("red", 0.5))),
    ],
)
def test_weights(prompt: str, segments: list[tuple[str, float]]) -> None:
    assert read(prompt) == segments


@pytest.mark.parametrize(
    ("prompt", "segments"),
    [
        (r"\(red\)", expect(("(red)", 1))),
        (r"\[red\]", expect(("[red]", 1))),
        (r"a \\ b", expect(("a \\ b", 1))),
        (r"(\(red\))", expect(("(red)", UP))),
        (r"r\ed", expect(("red", 1))),  # a backslash before anything else is dropped
    ],
)
def test_escapes(prompt: str, segments: list[tuple[str, float]]) -> None:
    assert read(prompt) == segments


@pytest.mark.parametrize(
    ("prompt", "segments"),
    [
        ("red) circle]", expect(("red) circle]", 1))),  # closers without openers: text
        ("a:1.2) b", expect(("a:1.2) b", 1))),  # a weight outside round brackets: text
        ("x:y", expect(("x:y", 1))),
        ("(red", expect(("red", UP))),  # left open: weighs everything after it
        ("[red", expect(("red", DOWN))),
        ("a (b [c", expect(("a ", 1), ("b ", UP), ("c", UP * DOWN))),
        ("(red:x)", expect(("red:x", UP))),  # not a number: text, and the bracket closes
        ("(red:1.2.3)", expect(("red:1.2.3", UP))),
        ("[red:1.5]", expect(("red:1.5", DOWN))),  # square brackets take no weight
        ("(red]", expect(("red]", UP))),
        ("", expect(("", 1))),
        ("()", expect(("", 1))),
    ],
)
def test_unbalanced_brackets_are_never_an_error(
    prompt: str, segments: list[tuple[str, float]]
) -> None:
    assert read(prompt) == segments


def test_break_starts_a_window() -> None:
    assert parse_weights("red BREAK blue") == [Segment("red"), BREAK, Segment("blue")]
    assert parse_weights("(red BREAK blue)") == [Segment("red", UP), BREAK, Segment("blue", UP)]
    assert parse_weights("red BREAK BREAK blue") == [Segment("red"), BREAK, Segment("blue")]
    assert BREAK.is_break
    assert not Segment("BREAK").is_break  # the word at weight 1 is just a word
    # only the upper-case word on its own
    assert parse_weights("a break b") == [Segment("a break b")]
    assert parse_weights("REDBREAK") == [Segment("REDBREAK")]


@pytest.mark.parametrize(
    ("prompt", "plain"),
    [
        ("(n)ude", "nude"),
        ("[nu]de", "nude"),
        ("(nu:0.1)de", "nude"),
        (r"nu\de", "nude"),
        ("nu<lora:outline:0.5>de", "nude"),
        ("<LORA:outline> a  (red:1.4)   circle", "a red circle"),
        ("a BREAK b", "a b"),
        (r"\(red\)", "(red)"),
        ("a) b]", "a) b]"),
    ],
)
def test_plain_text_keeps_the_words(prompt: str, plain: str) -> None:
    assert plain_text(prompt) == plain


_PIECES = st.sampled_from(
    ["(", ")", "[", "]", "\\", ":", ":1.2)", ": 0.5 )", "BREAK", " BREAK ", " ", "<lora:x:1>"]
)
_WORDS = st.text(alphabet="abcnudeé1., <>:", min_size=1, max_size=6)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_PIECES, _WORDS), max_size=20))
def test_no_syntax_hides_a_letter_from_the_rules(pieces: list[str]) -> None:
    """Whatever the brackets, escapes and weights, every letter of the prompt's words is in the
    plain text, in order (only lora tags and the BREAK keyword go)."""
    prompt = "".join(pieces)
    words = re.sub(r"\bBREAK\b", "", re.sub(r"<lora:[^<>]*>", "", prompt, flags=re.I))
    assert [c for c in plain_text(prompt) if c.isalpha()] == [c for c in words if c.isalpha()]
    assert all(math.isfinite(s.weight) for s in parse_weights(prompt))


def test_check_weights_refuses_weights_outside_0_to_3() -> None:
    for fine in ("a (red:3) circle", "(red:0)", "((red:2.4))", "[(red:3.3)]", "(red:9"):
        check_weights(fine)  # "(red:9" is left open: the text "red:9" at 1.1
    with pytest.raises(InvalidOption) as refused:
        check_weights("a (red:100) circle")
    assert (refused.value.option, refused.value.value) == ("prompt weight", 100.0)
    assert "from 0 to 3" in str(refused.value)
    with pytest.raises(InvalidOption, match=r"got -0\.5"):
        check_weights("(red:-0.5)")
    with pytest.raises(InvalidOption, match=r"got 3\.138"):
        check_weights("(" * 12 + "red" + ")" * 12)  # 1.1 ** 12


def test_lora_tags_are_taken_out_of_the_prompt() -> None:
    assert take_lora_tags("a red circle") == ("a red circle", ())
    prompt, loras = take_lora_tags("a <lora:outline:0.8> red circle <lora:stripes>")
    assert prompt == "a red circle"
    assert loras == (LoraChoice("outline", 0.8), LoraChoice("stripes", 1.0))
    assert take_lora_tags("<lora:outline:-1.5>")[1] == (LoraChoice("outline", -1.5),)


@pytest.mark.parametrize(
    "tag",
    ["<lora:>", "<lora::0.5>", "<lora:outline:strong>", "<lora:outline:1:2>", "<lora:outline:nan>"],
)
def test_a_malformed_lora_tag_is_named(tag: str) -> None:
    with pytest.raises(InvalidOption) as refused:
        take_lora_tags(f"a red circle {tag}")
    assert refused.value.option == "lora tag"
    assert refused.value.value == tag
    assert "<lora:NAME:WEIGHT>" in str(refused.value)


def test_an_unclosed_lora_tag_is_named() -> None:
    with pytest.raises(InvalidOption) as refused:
        take_lora_tags("a red <lora:outline circle")
    assert refused.value.value == "<lora:outline"


def test_lora_lists() -> None:
    assert parse_lora_list("") == ()
    assert parse_lora_list("outline:0.8, stripes") == (
        LoraChoice("outline", 0.8),
        LoraChoice("stripes", 1.0),
    )
    assert parse_lora_list(" outline : 0.5 ,") == (LoraChoice("outline", 0.5),)
    for bad in ("outline:x", ":1", "outline:1:2", "a, b:inf"):
        with pytest.raises(InvalidOption) as refused:
            parse_lora_list(bad)
        assert refused.value.option == "lora"
        assert refused.value.value == bad.split(", ")[-1]
