"""The review of issue 16's rules: the shipped classifier on plain people, a negative prompt typed
into the prompt, gore and the guild's allow list, fantasy violence, and prompts built to be slow."""

from __future__ import annotations

import dataclasses
import time

import pytest

from moderation.lists import GuildRule, PromptRules, RuleAction
from moderation.prompts import check_prompt
from moderation.reasons import MINORS_REASON, reason_labels

SHIPPED = PromptRules.default()
LISTS = dataclasses.replace(SHIPPED, classifier=None)  # the lists alone

# Short prompts about people and children that nothing in them makes sexual.
HARMLESS = [
    "a woman", "a man", "photo of a man", "photo of a woman", "1girl, solo", "1boy, solo",
    "2girls", "two women talking", "two men shaking hands", "a girl", "a boy",
    "portrait of a girl", "a woman smiling", "an old man reading", "a young woman",
    "selfie of a woman", "woman, portrait", "a man and a woman", "a couple walking", "her",
    "him and her", "a lady in a hat", "a 30 year old woman", "a 40 year old man at work",
    "a girl with red hair", "the man", "a 12 year old girl playing football",
    "a little girl at the park", "a 10 year old boy in a kitchen", "kids selfie", "a child",
    "children playing", "a boy and his dog", "a baby", "toddler", "a teenage girl", "two kids",
    "a schoolgirl", "school kids in a classroom", "a 7 year old girl", "an 8 year old boy",
    "kid, solo", "1girl, child", "a little boy", "little girl, portrait", "a girl, 9 years old",
    "a teen boy skateboarding", "children at the beach", "a boy smiling", "photo of a kid",
    "a young girl reading a book", "a mother and her daughter", "a father and son",
]  # fmt: skip


@pytest.mark.parametrize("prompt", HARMLESS)
def test_the_shipped_classifier_lets_plain_people_pass(prompt: str) -> None:
    verdict = check_prompt(prompt, SHIPPED)
    assert verdict.allowed, verdict.reasons


@pytest.mark.parametrize(
    "prompt",
    ["a woman, nude", "a naked man", "busty woman topless", "hot milf", "woman masturbating"],
)
def test_clear_sexual_prompts_stay_refused(prompt: str) -> None:
    assert not check_prompt(prompt, SHIPPED).allowed


def test_the_clothing_rule_still_reads_the_split() -> None:
    reasons = check_prompt("portrait of a woman, negative prompt: clothes, lowres", LISTS).reasons
    assert reasons == (
        "the negative prompt leaves out clothing (clothes) in a picture of a person",
    )


def test_a_guilds_allow_entry_takes_no_gore_out() -> None:
    allowing = LISTS.with_guild([GuildRule(RuleAction.ALLOW, "entrails")])
    assert check_prompt("a body, entrails on the floor", allowing).gore


@pytest.mark.parametrize(
    "prompt",
    [
        "soldiers beheading prisoners, orc army in the background",
        "executioner beheading a man, blood, zombie horde",
        "a knight slaying a dragon, beheading children",
    ],
)
def test_a_creature_elsewhere_does_not_clear_gore(prompt: str) -> None:
    assert check_prompt(prompt, SHIPPED).gore
    assert check_prompt(prompt, LISTS).gore


@pytest.mark.parametrize("prompt", ["a knight beheading a dragon", "slaying the red dragon"])
def test_killing_a_creature_is_still_fantasy(prompt: str) -> None:
    assert not check_prompt(prompt, SHIPPED).gore


@dataclasses.dataclass(frozen=True)
class Reading:
    scores: dict[str, float]
    cues: dict[str, tuple[str, ...]]

    def over(self, label: str) -> bool:
        return self.scores[label] >= 0.8


@dataclasses.dataclass
class StandIn:
    """A classifier that reads every prompt as sexual at 0.7, its cues given."""

    cues: tuple[str, ...]
    thresholds: dict[str, float] = dataclasses.field(
        default_factory=lambda: {"sexual": 0.8, "gore": 0.8, "minors": 0.5}
    )

    def read(self, prompt: str) -> Reading:
        return Reading({"sexual": 0.7, "gore": 0.0}, {"sexual": self.cues})


def test_the_classifiers_minors_reason_says_why() -> None:
    rules = dataclasses.replace(LISTS, classifier=StandIn(("the", "spicy", "girl", "teasing")))
    reasons = check_prompt("a teen girl, spicy", rules).reasons
    assert reasons == (f"{MINORS_REASON} (the classifier: 0.70: spicy, teasing)",)
    assert reason_labels(reasons[0]) == ("minors", "always")


@pytest.mark.parametrize(
    "cues",
    [
        ("girl", "12", "the"),
        ("12", "year", "kitchen"),
        ("selfie",),
        ("φωτογραφια", "ρεαλιστικη"),
        ("heroic", "pose", "posing"),  # how one stands: "a firefighter … heroic pose" read 0.92
    ],
)
def test_cues_of_people_ages_and_style_count_for_nothing(cues: tuple[str, ...]) -> None:
    rules = dataclasses.replace(LISTS, classifier=StandIn(cues))
    assert check_prompt("a 12 year old girl in a kitchen, selfie", rules).allowed


@pytest.mark.parametrize(
    "prompt",
    [
        "no " * 333,
        "ไม่มีเสื้อผ้า" * 80,
        "no clothes " * 90,
        "beheading a " * 90 + "dragon",
        "a woman, " + "no " * 300 + "clothes",
    ],
)
def test_repeated_words_stay_fast(prompt: str) -> None:
    check_prompt("warm up", SHIPPED)
    started = time.perf_counter()
    check_prompt(prompt[:1000], SHIPPED)
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize("prompt", ["a sexy red circle", "sexy woman in a red dress"])
def test_a_force_safe_word_the_classifier_weighs_most_is_the_force_safe_lists_to_decide(
    prompt: str,
) -> None:
    """'sexy' is force safe (made, checked strictly, spoilered): the classifier, which reads it
    as sexual, does not turn that into a refusal."""
    verdict = check_prompt(prompt, SHIPPED)
    assert verdict.allowed, verdict.reasons
    assert verdict.force_safe, verdict.safe_reasons
    assert any("'sexy'" in reason for reason in verdict.safe_reasons), verdict.safe_reasons
    assert not check_prompt(prompt.replace("sexy", "sexy nude"), SHIPPED).allowed


@dataclasses.dataclass
class Recorder(StandIn):
    """A stand-in that keeps the text it was handed."""

    seen: list[str] = dataclasses.field(default_factory=list)

    def read(self, prompt: str) -> Reading:
        self.seen.append(prompt)
        return Reading({"sexual": 0.0, "gore": 0.0}, {})


@pytest.mark.parametrize(
    "prompt",
    [
        "a wyvern beheaded by a knight, storybook painting, gore-free",
        "zombie horde in a ruined mall, no gore, cartoon",
        "orc war, bloodless, without blood",
    ],
)
def test_gore_said_to_be_absent_is_not_read_by_the_classifier(prompt: str) -> None:
    """The classifier's features would read "gore" in "gore-free" as gore (it did: 0.98)."""
    recorder = Recorder(cues=())
    check_prompt(prompt, dataclasses.replace(SHIPPED, classifier=recorder))
    assert recorder.seen
    assert "gore" not in recorder.seen[0].lower()
    assert "blood" not in recorder.seen[0].lower()
    assert not check_prompt(prompt, SHIPPED).gore


@dataclasses.dataclass
class Sure(StandIn):
    """A stand-in that reads every prompt as sexual at 0.9, its cues given."""

    def read(self, prompt: str) -> Reading:
        return Reading({"sexual": 0.9, "gore": 0.0}, {"sexual": self.cues})


def test_one_word_the_lists_do_not_hold_needs_a_higher_score() -> None:
    """The classifier read "another" alone as sexual (0.88): one word is little to go on."""
    rules = dataclasses.replace(LISTS, classifier=Sure(("another",)))
    assert check_prompt("another", rules).allowed
    assert not check_prompt("another one, tonight", rules).allowed


@dataclasses.dataclass
class Gory(StandIn):
    """A stand-in that reads every prompt as gore at 0.9, its cues given."""

    def read(self, prompt: str) -> Reading:
        return Reading({"sexual": 0.0, "gore": 0.9}, {"gore": self.cues})


def test_two_words_the_lists_do_not_hold_need_a_higher_gore_score() -> None:
    """The classifier read "glow red" (and 248 reds after "glow") as gore at 0.79."""
    rules = dataclasses.replace(LISTS, classifier=Gory(("glow", "red")))
    assert not check_prompt("glow " + " ".join(["red"] * 248), rules).gore
    assert check_prompt("a red glow on the wet street, a body", rules).gore
