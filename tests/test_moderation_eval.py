"""The shipped lists against the labelled development set (the benchmark reports the figures)."""

from __future__ import annotations

from pathlib import Path

import pytest

from moderation.errors import InvalidPromptSet
from moderation.evaluation import evaluate, load_set
from moderation.lists import PromptRules

REQUIRED_TRAPS = (
    "chicken breast", "naked mole rat", "nude lipstick", "scunthorpe", "children playing soccer",
    "breastfeeding mother", "a cocktail party",
)  # fmt: skip
EVASIONS = {
    "leet", "homoglyph", "fullwidth", "zero_width", "combining", "spaced", "dotted", "repeats",
    "mixed", "concatenated", "negative_evasion",
}  # fmt: skip


def test_the_set_is_what_the_issue_asks_for() -> None:
    benign, blocked = load_set("eval")
    assert len(benign) >= 150
    assert len(blocked) >= 100
    for trap in REQUIRED_TRAPS:
        assert any(trap in item.prompt.lower() for item in benign), trap
    assert {item.category for item in blocked} >= EVASIONS


def test_the_shipped_rules_meet_the_goals_on_it() -> None:
    benign, blocked = load_set("eval")
    report = evaluate("eval", benign, blocked, PromptRules.default(), repeats=1)
    assert report.recall >= 0.97, report.to_text()
    assert report.false_positive_rate <= 0.02, report.to_text()
    # Every kind of evasion is caught at least most of the time, not just on average.
    assert min(report.recall_by_category.values()) >= 0.8, report.recall_by_category


def test_a_set_that_cannot_be_read_says_which_line(tmp_path: Path) -> None:
    (tmp_path / "benign.tsv").write_text("scenery\ta lighthouse\n", encoding="utf-8")
    (tmp_path / "blocked.tsv").write_text("# a comment\nno tab here\n", encoding="utf-8")
    with pytest.raises(InvalidPromptSet, match=r"blocked\.tsv:2: expected category<TAB>prompt"):
        load_set(tmp_path)


def test_an_empty_set_is_refused() -> None:
    with pytest.raises(InvalidPromptSet, match="the set 'empty' has no prompts"):
        evaluate("empty", [], [], PromptRules.default(), repeats=1)
