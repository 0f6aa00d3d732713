"""Prompt rules in layers, each with its own reason, decided on the prompt and negative prompt.

1. A hard rule no guild can turn off: words about minors together with sexual words (in the
   prompt, or clothing left out through the negative prompt) are refused.
2. Block terms: the shipped default list, better-profanity's list (less the ordinary words it
   over-blocks), then the guild's own terms and patterns.
3. Force-safe terms: the image is made, checked with the strict threshold and never shown
   unspoilered.
4. Allow terms take benign phrases out before the block terms are matched ("naked mole rat");
   the shipped ones apply everywhere, a guild's only to the guild's own rules and the defaults,
   never to rule 1.
5. The negative prompt is not held to the block lists ("nsfw, nude" there keeps images clean), but
   asking it to leave out clothing in a picture of a person is refused.

Decisions are pure and fast: no torch, no database, no I/O after the lists are loaded. The lists
themselves (what is shipped, how a guild's entries are laid over it) are ``moderation.lists``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from moderation.lists import LAYER_ORDER, GuildPattern, Layer, Listed, PromptRules, RuleAction
from moderation.normalise import Views, fragment_joins, views
from moderation.terms import TermIndex

# "12 year old", "13yo", "9 y/o", "aged 12", "twelve years old", "5th grade": an age under 18
# counts as a word about minors.
_AGES = (
    r"(?:[1-9]|1[0-7]|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen"
    r"|fourteen|fifteen|sixteen|seventeen)"
)
_MINOR_AGE = re.compile(
    rf"(?<![\d.]){_AGES} ?(?:yo|y o|yrs?|years?|year olds?)\b"
    rf"|\bage[ds]? {_AGES}\b"
    r"|\b(?:[1-9]|1[0-2])(?:st|nd|rd|th) grade|\bgrade (?:[1-9]|1[0-2])\b"
)
# The guild patterns of one check share this much time; past it they count as matching.
PATTERN_BUDGET_S = 0.05


@dataclass(frozen=True)
class PromptVerdict:
    allowed: bool
    reasons: tuple[str, ...] = ()
    force_safe: bool = False
    safe_reasons: tuple[str, ...] = ()
    # Why the prompt reads as gore. check_prompt does not refuse it: the guild's gore policy and
    # the channel do (``moderation.policy.apply_gore_policy``).
    gore: tuple[str, ...] = ()
    # The learned classifier's scores by label ("sexual", "gore"), for the audit log.
    classifier_scores: tuple[tuple[str, float], ...] = ()

    def summary(self) -> str:
        if not self.allowed:
            return "blocked: " + "; ".join(self.reasons)
        if self.force_safe:
            return "allowed, force safe: " + "; ".join(self.safe_reasons)
        return "allowed"


def _found(
    index: TermIndex[Listed], readings: Iterable[str], *, unless: TermIndex[Listed] | None = None
) -> dict[str, Listed]:
    """Terms found in any reading, keyed by the term's words, the earliest layer first.

    With ``unless``, a wildcard term does not count where the word it matched is itself an
    entry of ``unless``: "sex*" blocks "sexgirl" but leaves "sexy" to the force-safe list.
    """
    hits: dict[str, Listed] = {}
    seen: set[str] = set()  # one reason a word: "nude" and "*nude*" both match "nude"
    found = [hit for reading in readings for hit in index.find(reading)]
    found.sort(key=lambda hit: LAYER_ORDER.index(hit[1].layer))  # stable
    for term, listed, matched in found:
        if matched in seen or term.text in seen:
            continue
        if unless is not None and term.shape.is_wildcard and unless.find(matched):
            continue
        seen.update((matched, term.text))
        hits.setdefault(term.text, listed)
    return hits


def _any(index: TermIndex[Any], readings: Iterable[str]) -> str | None:
    for reading in readings:
        for term, _, _ in index.find(reading):
            return term.text
    return None


def _clothing_left_out(rules: PromptRules, negative: Views) -> tuple[str | None, str | None]:
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


def _names_a_person(rules: PromptRules, readings: Iterable[str]) -> bool:
    if _any(rules.minors, readings):
        return True
    return any(
        section == "people"
        for reading in readings
        for _, section, _ in rules.negative.find(reading)
    )


def _minor(rules: PromptRules, positive: Views) -> bool:
    if _any(rules.minors, positive.all) or _MINOR_AGE.search(positive.plain):
        return True
    return any(_any(rules.minors, [join]) for join in fragment_joins(positive.plain))


def _sexual(rules: PromptRules, positive: Views) -> bool:
    """Any sexual term at all, before any allow phrase is taken out (for the minors rule)."""
    hits = _found(rules.block, positive.all, unless=rules.shipped_force_safe)
    if any(listed.sexual and listed.layer is not Layer.GUILD for listed in hits.values()):
        return True
    if _found(rules.shipped_force_safe, positive.all):
        return True
    return any(
        join in rules.fragment_terms
        for reading in positive.all[:2]
        for join in fragment_joins(reading)
    )


def _pattern_hits(
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


def check_prompt(prompt: str, rules: PromptRules, negative_prompt: str = "") -> PromptVerdict:
    """The verdict on a request's text; every reason says which layer decided."""
    positive = views(prompt)
    negative = views(negative_prompt) if negative_prompt.strip() else Views("", ())
    clothing, any_clothing = _clothing_left_out(rules, negative)
    deadline = time.monotonic() + PATTERN_BUDGET_S
    reasons: list[str] = []

    # 1. Minors: on the prompt as written, before any allow phrase is taken out, so that no
    # list (a guild's or ours) can switch it off.
    if _minor(rules, positive) and (any_clothing or _sexual(rules, positive)):
        reasons.append("sexual content involving minors is never allowed")

    # 4. Allowed phrases out: the shipped ones (some not when the prompt names a person), then
    # the guild's own.
    person = _names_a_person(rules, positive.all)
    readings = tuple(
        rules.guild_allow.remove_from(
            rules.allow.remove_from(reading, unless=lambda with_people: person and with_people)
        )
        for reading in positive.all
    )

    # 2. Block terms and patterns.
    for term, listed in _found(rules.block, readings, unless=rules.shipped_force_safe).items():
        reasons.append(f"'{term}' is not allowed ({listed.layer})")
    joined = {join for reading in readings[:2] for join in fragment_joins(reading)}
    for term in sorted(joined & rules.fragment_terms):
        if not any(f"'{term}'" in reason for reason in reasons):
            reasons.append(f"'{term}' is not allowed ({Layer.DEFAULT})")
    for written in _pattern_hits(rules.patterns, readings, RuleAction.BLOCK, deadline):
        reasons.append(f"matches the pattern '{written}' ({Layer.GUILD})")

    # 6. The negative prompt leaving out clothing in a picture of a person.
    if clothing and person:
        reasons.append(
            f"the negative prompt leaves out clothing ({clothing}) in a picture of a person"
        )
    if reasons:
        return PromptVerdict(allowed=False, reasons=tuple(reasons))

    # 5. Force safe: made, checked strictly, never shown unspoilered.
    safe_reasons = [
        f"'{term}' is on the force-safe list ({listed.layer})"
        for term, listed in _found(rules.force_safe, readings).items()
    ]
    safe_reasons += [
        f"matches the force-safe pattern '{written}' ({Layer.GUILD})"
        for written in _pattern_hits(rules.patterns, readings, RuleAction.FORCE_SAFE, deadline)
    ]
    if clothing:
        safe_reasons.append(f"the negative prompt leaves out clothing ({clothing})")
    return PromptVerdict(
        allowed=True, force_safe=bool(safe_reasons), safe_reasons=tuple(safe_reasons)
    )
