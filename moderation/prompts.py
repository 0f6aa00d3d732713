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

Decisions are pure and fast: no torch, no database, no I/O after the lists are loaded.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import regex

from moderation.normalise import Views, fragment_joins, leet_reading, views
from moderation.terms import (
    InvalidTerm,
    Term,
    TermIndex,
    TermShape,
    compile_pattern,
    parse_term,
)

__all__ = [
    "GuildRule",
    "InvalidTerm",
    "Layer",
    "PromptRules",
    "PromptVerdict",
    "RuleAction",
    "check_prompt",
    "validate_rule",
]

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
# Sexual words that ordinary short words join into: "a pen is", "friend's ex".
_FRAGMENT_EXCEPTIONS = frozenset({"penis", "sex"})
# The guild patterns of one check share this much time; past it they count as matching.
PATTERN_BUDGET_S = 0.05


class Layer(enum.StrEnum):
    """Which list a term came from, named as the reason shows it (earliest layer first)."""

    DEFAULT = "default list"
    PROFANITY = "profanity list"
    GUILD = "this server's list"


_LAYER_ORDER = tuple(Layer)


class RuleAction(enum.StrEnum):
    BLOCK = "block"
    ALLOW = "allow"
    FORCE_SAFE = "force_safe"


@dataclass(frozen=True)
class GuildRule:
    """A guild's list entry: a term (see ``moderation.terms``) or a regular expression."""

    action: RuleAction
    text: str
    is_regex: bool = False


@dataclass(frozen=True)
class _Listed:
    layer: Layer
    sexual: bool = False


@dataclass(frozen=True)
class _Pattern:
    written: str
    compiled: regex.Pattern[str]
    action: RuleAction


def _data_lines(name: str) -> list[str]:
    text = resources.files("moderation").joinpath("data", name).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]


def _read_terms(name: str) -> list[tuple[Term, str]]:
    """(term, section) pairs from a data file; ``[section]`` lines name what follows."""
    section, out = "", []
    for line in _data_lines(name):
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        out.append((parse_term(line), section))
    return out


def _profanity_terms() -> list[Term]:
    """better-profanity's word list without the entries we exclude (see the data file)."""
    package = resources.files("better_profanity")
    words = package.joinpath("profanity_wordlist.txt").read_text(encoding="utf-8").splitlines()
    excluded = {parse_term(line).text for line in _data_lines("profanity_exclude.txt")}
    terms: dict[str, Term] = {}
    for word in words:
        try:  # "p0rn" is listed too; folding leetspeak finds it as "porn"
            term = parse_term(leet_reading(word) + ("*" if word.endswith("*") else ""))
        except InvalidTerm:
            continue
        if term.text not in excluded:
            terms.setdefault(str(term), term)
    return list(terms.values())


def _with_glued_form(term: Term) -> list[Term]:
    """A phrase and the one word it makes when its words are glued ("naked-eye" -> "nakedeye")."""
    if term.shape is not TermShape.PHRASE:
        return [term]
    return [term, Term(term.text.replace(" ", ""), TermShape.WORD)]


@dataclass(frozen=True)
class PromptVerdict:
    allowed: bool
    reasons: tuple[str, ...] = ()
    force_safe: bool = False
    safe_reasons: tuple[str, ...] = ()

    def summary(self) -> str:
        if not self.allowed:
            return "blocked: " + "; ".join(self.reasons)
        if self.force_safe:
            return "allowed, force safe: " + "; ".join(self.safe_reasons)
        return "allowed"


@dataclass(frozen=True)
class PromptRules:
    """The lists in force for one request: the shipped layers plus one guild's own."""

    block: TermIndex[_Listed]
    force_safe: TermIndex[_Listed]
    shipped_force_safe: TermIndex[_Listed]  # a wildcard block term gives way to these only
    allow: TermIndex[bool]  # shipped phrases; True: not taken out when the prompt names a person
    minors: TermIndex[None]
    negative: TermIndex[str]  # section of negative_terms.txt: clothing, clothing_weak, people
    negative_allow: TermIndex[None]
    fragment_terms: frozenset[str]  # sexual words also looked for in joined fragments ("nu de")
    guild_allow: TermIndex[None] = field(default_factory=TermIndex)
    patterns: tuple[_Pattern, ...] = ()

    @classmethod
    @functools.cache
    def default(cls) -> PromptRules:
        """The shipped lists (read once per process)."""
        negative_terms = _read_terms("negative_terms.txt")
        block: TermIndex[_Listed] = TermIndex()
        for term, section in _read_terms("block_terms.txt"):
            block.add(term, _Listed(Layer.DEFAULT, sexual=section == "sexual"))
        for term in _profanity_terms():  # most of what is left of it is sexual
            block.add(term, _Listed(Layer.PROFANITY, sexual=True))
        force_safe = TermIndex(
            (term, _Listed(Layer.DEFAULT, sexual=True))
            for term, _ in _read_terms("force_safe_terms.txt")
        )
        return cls(
            block=block,
            force_safe=force_safe,
            shipped_force_safe=force_safe,
            allow=TermIndex(
                (form, section == "not_with_people")
                for term, section in _read_terms("allow_terms.txt")
                for form in _with_glued_form(term)
            ),
            minors=TermIndex((term, None) for term, _ in _read_terms("minor_terms.txt")),
            negative=TermIndex(
                (term, section) for term, section in negative_terms if section != "negative_allow"
            ),
            negative_allow=TermIndex(
                (term, None) for term, section in negative_terms if section == "negative_allow"
            ),
            fragment_terms=frozenset(
                term.text
                for term, section in _read_terms("block_terms.txt")
                if section == "sexual"
                and term.shape is not TermShape.PHRASE
                and term.text not in _FRAGMENT_EXCEPTIONS
            ),
        )

    def with_guild(
        self,
        rules: Iterable[GuildRule],
        *,
        probe: bool = True,
        skip_invalid: Callable[[GuildRule, InvalidTerm], None] | None = None,
    ) -> PromptRules:
        """These rules plus a guild's entries; raises InvalidTerm for an entry that is not valid,
        or, with ``skip_invalid``, leaves it out and tells that function why.

        ``probe`` runs new patterns on texts that make backtracking patterns run away; entries
        read back from the database were probed when they were stored.
        """
        block = TermIndex(self.block)
        force_safe = TermIndex(self.force_safe)
        guild_allow = TermIndex(self.guild_allow)
        patterns = list(self.patterns)
        for rule in rules:
            try:
                if rule.is_regex:
                    patterns.append(_guild_pattern(rule, probe=probe))
                    continue
                term = parse_term(rule.text)
            except InvalidTerm as error:
                if skip_invalid is None:
                    raise
                skip_invalid(rule, error)
                continue
            if rule.action is RuleAction.BLOCK:
                block.add(term, _Listed(Layer.GUILD))
            elif rule.action is RuleAction.FORCE_SAFE:
                force_safe.add(term, _Listed(Layer.GUILD))
            else:
                guild_allow.add(term, None)
        for index in (block, force_safe, guild_allow):
            index.prepare()
        return dataclasses.replace(
            self,
            block=block,
            force_safe=force_safe,
            guild_allow=guild_allow,
            patterns=tuple(patterns),
        )


def _guild_pattern(rule: GuildRule, *, probe: bool) -> _Pattern:
    if rule.action is RuleAction.ALLOW:
        raise InvalidTerm(
            "regular expressions work for block and force-safe entries; "
            "an allow entry is a term or phrase"
        )
    return _Pattern(rule.text, compile_pattern(rule.text, probe=probe), rule.action)


def validate_rule(rule: GuildRule) -> None:
    """Raises InvalidTerm, naming the entry and what is allowed, before a list stores it.

    A pattern is bounded before it is compiled, then probed for up to about a second: call
    this from a thread where an event loop is running.
    """
    if rule.is_regex:
        _guild_pattern(rule, probe=True)
    else:
        parse_term(rule.text)


def _found(
    index: TermIndex[_Listed], readings: Iterable[str], *, unless: TermIndex[_Listed] | None = None
) -> dict[str, _Listed]:
    """Terms found in any reading, keyed by the term's words, the earliest layer first.

    With ``unless``, a wildcard term does not count where the word it matched is itself an
    entry of ``unless``: "sex*" blocks "sexgirl" but leaves "sexy" to the force-safe list.
    """
    hits: dict[str, _Listed] = {}
    seen: set[str] = set()  # one reason a word: "nude" and "*nude*" both match "nude"
    found = [hit for reading in readings for hit in index.find(reading)]
    found.sort(key=lambda hit: _LAYER_ORDER.index(hit[1].layer))  # stable
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
    patterns: Iterable[_Pattern], readings: tuple[str, ...], action: RuleAction, deadline: float
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
