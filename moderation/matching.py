"""What the lists find in a prompt's readings: the helpers ``moderation.prompts`` decides with.

Each answers one question about the readings (``moderation.normalise.views``): which block terms,
whether a minor is named, whether anything sexual is, whether the negative prompt leaves out
clothing, which guild patterns match within the shared deadline.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from typing import Any

from moderation.ages import under_18
from moderation.lists import LAYER_ORDER, GuildPattern, Layer, Listed, PromptRules, RuleAction
from moderation.normalise import Views, fragment_joins
from moderation.terms import TermIndex

# "12 year old", "13yo", "9 y/o", "aged 12", "twelve years old", "5th grade": an age under 18
# counts as a word about minors. Other languages' ages are ``moderation.ages``'.
_AGES = (
    r"(?:[1-9]|1[0-7]|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen"
    r"|fourteen|fifteen|sixteen|seventeen)"
)
_MINOR_AGE = re.compile(
    rf"(?<![\d.]){_AGES} ?(?:yo|y o|yrs?|years?|year olds?)\b"
    rf"|\bage[ds]? {_AGES}\b"
    r"|\b(?:[1-9]|1[0-2])(?:st|nd|rd|th) grade|\bgrade (?:[1-9]|1[0-2])\b"
    # "make her look 10", "looks about twelve": an age asked for is an age
    rf"|\b(?:look|looks|looking|appear|appears|appearing) (?:like |about |around |barely )?(?:a )?"
    rf"{_AGES}\b(?! (?:feet|foot|meters|metres|times|days|hours|minutes|inches|cm|kg|lbs)\b)"
    r"|\byoung(?: |-)?looking\b|\blooks? (?:underage|under age|like a (?:kid|child|minor))\b"
    # "boy, 13", "girl 12": a word for a young person with a bare number
    rf"|\b(?:girl|girls|boy|boys|kid|kids|child|son|daughter|teen|student|model|cheerleader) "
    rf"(?:aged? )?{_AGES}\b(?! (?:years? )?(?:later|ago|feet|foot|meters|times|percent))"
)


def found(
    index: TermIndex[Listed], readings: Iterable[str], *, unless: TermIndex[Listed] | None = None
) -> dict[str, Listed]:
    """Terms found in any reading, keyed by the term's words, the earliest layer first.

    With ``unless``, a wildcard term does not count where the word it matched is itself an
    entry of ``unless``: "sex*" blocks "sexgirl" but leaves "sexy" to the force-safe list.
    """
    hits: dict[str, Listed] = {}
    seen: set[str] = set()  # one reason a word: "nude" and "*nude*" both match "nude"
    everything = [hit for reading in readings for hit in index.find(reading)]
    everything.sort(key=lambda hit: LAYER_ORDER.index(hit[1].layer))  # stable
    for term, listed, matched in everything:
        if matched in seen or term.text in seen:
            continue
        if unless is not None and term.shape.is_wildcard and unless.find(matched):
            continue
        seen.update((matched, term.text))
        hits.setdefault(term.text, listed)
    return hits


def first(index: TermIndex[Any], readings: Iterable[str]) -> str | None:
    for reading in readings:
        for term, _, _ in index.find(reading):
            return term.text
    return None


def clothing_in_negative(rules: PromptRules, negative: Views) -> tuple[str | None, str | None]:
    """(what counts on its own: one strong word or two weaker ones, any clothing word at all)."""
    strong: str | None = None
    weak: set[str] = set()
    for reading in negative.all:
        reading = rules.negative_allow.remove_from(reading)
        for term, section, _ in rules.negative.find(reading):
            if section == "clothing":
                strong = strong or term.text
            elif section == "clothing_weak":
                weak.add(term.text)
    counts = strong or (", ".join(sorted(weak)[:2]) if len(weak) >= 2 else None)
    return counts, strong or min(weak, default=None)


# People said to be absent are no person: "a bathroom, no towels, no people".
_NO_PEOPLE = re.compile(
    r"\b(?:no|without|zero|sans|minus|empty of) (?:people|persons?|humans?|figures?|crowds?|"
    r"tourists|visitors|guests|one)\b|\b(?:nobody|no one|noone|unpopulated|deserted)\b"
)


def names_a_person(rules: PromptRules, readings: Iterable[str], *, minors: bool = True) -> bool:
    readings = tuple(_NO_PEOPLE.sub(" ", reading) for reading in readings)
    if minors and first(rules.minors, readings):
        return True
    return any(
        section == "people"
        for reading in readings
        for _, section, _ in rules.negative.find(reading)
    )


def minor(rules: PromptRules, positive: Views, raw: str = "") -> bool:
    """A word about minors or an age under 18, in any covered language (``raw``: the prompt as
    written, for the ages folding makes ambiguous)."""
    if first(rules.minors, positive.all) or _MINOR_AGE.search(positive.plain):
        return True
    if rules.ages is not None and under_18(rules.ages, positive.plain, raw):
        return True
    return any(first(rules.minors, [join]) for join in fragment_joins(positive.plain))


def sexual(rules: PromptRules, positive: Views) -> bool:
    """Any sexual term at all in these readings (the minors rule hands them with only the
    shipped allow phrases out, never a guild's)."""
    hits = found(rules.block, positive.all, unless=rules.shipped_force_safe)
    if any(listed.sexual and listed.layer is not Layer.GUILD for listed in hits.values()):
        return True
    if found(rules.shipped_force_safe, positive.all):
        return True
    return any(
        join in rules.fragment_terms
        for reading in positive.all[:2]
        for join in fragment_joins(reading)
    )


def pattern_hits(
    patterns: Iterable[GuildPattern], readings: tuple[str, ...], action: RuleAction, deadline: float
) -> list[str]:
    """Patterns that match the plain or the leet reading, all within one deadline.

    A pattern that runs out of time counts as matching: a guild's rule fails closed.
    """
    hits = []
    for pattern in patterns:
        if pattern.action is not action:
            continue
        for reading in readings[:2]:
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise TimeoutError
                matched = pattern.compiled.search(reading, timeout=remaining) is not None
            except TimeoutError:
                matched = True
            if matched:
                hits.append(pattern.written)
                break
    return hits
