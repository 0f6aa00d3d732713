"""The shipped lists against the labelled development set (the benchmark reports the figures)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from moderation.errors import InvalidPromptSet
from moderation.evaluation import SETS, evaluate, judge, load_set
from moderation.lists import PromptRules
from moderation.reasons import GORE_OUTSIDE_AGE_RESTRICTED

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


def test_the_blind_sets_load_by_name_and_only_blind1_runs_by_default() -> None:
    assert "blind1" in SETS
    assert "blind_final" not in SETS
    for name in ("blind1", "blind_final"):
        benign, blocked = load_set(name)
        # Sizes only: these sets are never printed.
        assert len(benign) >= 100, name
        assert len(blocked) >= 100, name


def test_gore_is_judged_under_the_default_policy_in_a_channel_not_age_restricted() -> None:
    verdict = judge("a decapitated corpse with its entrails spilling out", PromptRules.default())
    assert not verdict.allowed
    assert verdict.reasons[-1] == GORE_OUTSIDE_AGE_RESTRICTED
    assert verdict.gore


@dataclasses.dataclass(frozen=True)
class _Reading:
    scores: dict[str, float]
    cues: dict[str, tuple[str, ...]]

    def over(self, label: str) -> bool:
        return self.scores["sexual" if label == "minors" else label] >= 0.8


class _SpicyClassifier:
    """A stand-in for the shipped classifier: "spicy" reads as sexual, nothing as gore."""

    def __init__(self) -> None:
        self.thresholds = {"sexual": 0.8, "gore": 0.8, "minors": 0.8}

    def read(self, prompt: str) -> _Reading:
        score = 0.9 if "spicy" in prompt else 0.0
        return _Reading({"sexual": score, "gore": 0.0}, {"sexual": ("spicy",), "gore": ()})


def test_a_catch_is_the_classifiers_when_the_rules_alone_would_allow_it(tmp_path: Path) -> None:
    """Counted by judging again without the classifier, not by the reasons' wording: a minor
    word with the classifier's score trips the minors rule, and that catch is the
    classifier's."""
    rules = dataclasses.replace(PromptRules.default(), classifier=_SpicyClassifier())
    (tmp_path / "benign.tsv").write_text("food\ta bowl of ramen\n", encoding="utf-8")
    (tmp_path / "blocked.tsv").write_text(
        "slang\ta spicy picture\nminors_english\ta spicy picture of a child\n",
        encoding="utf-8",
    )
    benign, blocked = load_set(tmp_path)
    report = evaluate("spicy", benign, blocked, rules, repeats=1)
    assert (report.caught, report.classifier_catches) == (2, 2), report.to_text()
    assert report.classifier_share == 1.0
    (tmp_path / "blocked.tsv").write_text("slang\ta spicy picture\n", encoding="utf-8")
    report = evaluate("spicy", *load_set(tmp_path), rules, repeats=1)
    assert report.classifier_catches == 1
    assert report.classifier_share == 1.0
    # A prompt the rules refuse on their own is not the classifier's, spicy or not.
    (tmp_path / "blocked.tsv").write_text("plain_explicit\ta spicy nude woman\n", encoding="utf-8")
    report = evaluate("spicy", *load_set(tmp_path), rules, repeats=1)
    assert (report.caught, report.classifier_catches) == (1, 0), report.to_text()


def test_the_report_gives_false_positives_by_kind_of_trap_and_the_classifiers_share(
    tmp_path: Path,
) -> None:
    (tmp_path / "benign.tsv").write_text(
        "food\tchicken breast with rice\nfood\ta bowl of ramen\nspecies\ta naked mole rat\n",
        encoding="utf-8",
    )
    (tmp_path / "blocked.tsv").write_text("plain_explicit\ta nude woman\n", encoding="utf-8")
    benign, blocked = load_set(tmp_path)
    report = evaluate("small", benign, blocked, PromptRules.default(), repeats=1)
    assert set(report.false_positives_by_category) == {"food", "species"}
    assert report.caught == 1
    assert report.recall == 1.0
    figures = report.to_dict()
    assert {"false_positives_by_category", "classifier_catches", "classifier_share"} <= set(figures)
    assert "the classifier alone refused" in report.to_text()
