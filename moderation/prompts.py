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

import enum
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources

import regex

from moderation.normalise import Views, leet_reading, views
from moderation.terms import (
    PATTERN_TIMEOUT_S,
    InvalidTerm,
    Term,
    TermIndex,
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
]

# "12 year old", "13yo", "9 y/o": an age under 18 counts as a word about minors.
_MINOR_AGE = re.compile(r"(?<![\d.])(?:[1-9]|1[0-7]) ?(?:yo|y o|yrs? old|years? old|year olds?)\b")


class Layer(enum.StrEnum):
    MINORS = "minors"
    DEFAULT = "default list"
    PROFANITY = "profanity list"
    GUILD = "this server's list"
    NEGATIVE = "negative prompt"


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
    allow: TermIndex[Layer]
    minors: TermIndex[None]
    negative: TermIndex[str]  # section of negative_terms.txt: clothing, clothing_weak, people
    negative_allow: TermIndex[None]
    guild_allow: TermIndex[Layer] = field(default_factory=TermIndex)
    patterns: tuple[_Pattern, ...] = ()

    @classmethod
    @functools.cache
    def default(cls) -> PromptRules:
        """The shipped lists (read once per process)."""
        negative_terms = _read_terms("negative_terms.txt")
        block: TermIndex[_Listed] = TermIndex()
        for term, section in _read_terms("block_terms.txt"):
            block.add(term, _Listed(Layer.DEFAULT, sexual=section == "sexual"))
        for term in _profanity_terms():
            block.add(term, _Listed(Layer.PROFANITY))
        return cls(
            block=block,
            force_safe=TermIndex(
                (term, _Listed(Layer.DEFAULT, sexual=True))
                for term, _ in _read_terms("force_safe_terms.txt")
            ),
            allow=TermIndex((term, Layer.DEFAULT) for term, _ in _read_terms("allow_terms.txt")),
            minors=TermIndex((term, None) for term, _ in _read_terms("minor_terms.txt")),
            negative=TermIndex(
                (term, section) for term, section in negative_terms if section != "negative_allow"
            ),
            negative_allow=TermIndex(
                (term, None) for term, section in negative_terms if section == "negative_allow"
            ),
        )

    def with_guild(self, rules: Iterable[GuildRule]) -> PromptRules:
        """These rules plus a guild's entries; raises InvalidTerm for an entry that is not valid."""
        block = TermIndex(self.block)
        force_safe = TermIndex(self.force_safe)
        guild_allow = TermIndex(self.guild_allow)
        patterns = list(self.patterns)
        for rule in rules:
            if rule.is_regex:
                patterns.append(_Pattern(rule.text, compile_pattern(rule.text), rule.action))
                continue
            term = parse_term(rule.text)
            if rule.action is RuleAction.BLOCK:
                block.add(term, _Listed(Layer.GUILD))
            elif rule.action is RuleAction.FORCE_SAFE:
                force_safe.add(term, _Listed(Layer.GUILD))
            else:
                guild_allow.add(term, Layer.GUILD)
        return PromptRules(
            block=block,
            force_safe=force_safe,
            allow=self.allow,
            minors=self.minors,
            negative=self.negative,
            negative_allow=self.negative_allow,
            guild_allow=guild_allow,
            patterns=tuple(patterns),
        )


def _found(
    index: TermIndex[_Listed], readings: Iterable[str], *, unless: TermIndex[_Listed] | None = None
) -> dict[str, _Listed]:
    """Terms found in any reading, keyed by the term as listed.

    With ``unless``, a wildcard term does not count where the word it matched is itself an
    entry of ``unless``: "sex*" blocks "sexgirl" but leaves "sexy" to the force-safe list.
    """
    hits: dict[str, _Listed] = {}
    seen: set[str] = set()  # one reason a word: "nude" and "*nude*" both match "nude"
    found = [hit for reading in readings for hit in index.find(reading)]
    found.sort(key=lambda hit: _LAYER_ORDER.index(hit[1].layer))  # stable: the earliest layer
    for term, listed, matched in found:
        if matched in seen or term.text in seen:
            continue
        if unless is not None and term.shape.is_wildcard and unless.find(matched):
            continue
        seen.update((matched, term.text))
        hits.setdefault(term.text, listed)
    return hits


def _any(index: TermIndex[None], readings: Iterable[str]) -> str | None:
    for reading in readings:
        for term, _, _ in index.find(reading):
            return str(term)
    return None


def _negative_clothing(rules: PromptRules, negative: Views) -> str | None:
    """The clothing the negative prompt leaves out: one strong word, or two weaker ones."""
    strong: str | None = None
    weak: set[str] = set()
    for reading in negative.all:
        reading = rules.negative_allow.remove_from(reading)
        for term, section, _ in rules.negative.find(reading):
            if section == "clothing":
                strong = strong or str(term)
            elif section == "clothing_weak":
                weak.add(str(term))
    if strong is None and len(weak) >= 2:
        return ", ".join(sorted(weak)[:2])
    return strong


def _names_a_person(rules: PromptRules, readings: Iterable[str]) -> bool:
    return any(
        section == "people"
        for reading in readings
        for _, section, _ in rules.negative.find(reading)
    )


def _pattern_hits(
    patterns: Iterable[_Pattern], readings: tuple[str, ...], action: RuleAction
) -> list[str]:
    hits = []
    for pattern in patterns:
        if pattern.action is not action:
            continue
        for reading in readings:
            try:
                matched = pattern.compiled.search(reading, timeout=PATTERN_TIMEOUT_S) is not None
            except TimeoutError:
                matched = True  # fail closed: a pattern that runs away counts as matching
            if matched:
                hits.append(pattern.written)
                break
    return hits


def check_prompt(prompt: str, rules: PromptRules, negative_prompt: str = "") -> PromptVerdict:
    """The verdict on a request's text; every reason says which layer decided."""
    positive = views(prompt)
    negative = views(negative_prompt) if negative_prompt.strip() else Views("", ())
    readings = tuple(rules.allow.remove_from(reading) for reading in positive.all)
    clothing_left_out = _negative_clothing(rules, negative)
    reasons: list[str] = []

    # 1. Minors: checked before any guild term is taken out, so no guild can switch it off.
    if _any(rules.minors, readings) or _MINOR_AGE.search(positive.plain):
        sexual = any(
            listed.sexual
            for listed in _found(rules.block, readings, unless=rules.force_safe).values()
        )
        if sexual or _found(rules.force_safe, readings) or clothing_left_out:
            reasons.append("sexual content involving minors is never allowed")

    # 2. Block terms and patterns, after the guild's allowed phrases are taken out.
    readings = tuple(rules.guild_allow.remove_from(reading) for reading in readings)
    for term, listed in _found(rules.block, readings, unless=rules.force_safe).items():
        reasons.append(f"{term!r} is not allowed ({listed.layer})")
    for written in _pattern_hits(rules.patterns, readings, RuleAction.BLOCK):
        reasons.append(f"matches the pattern {written!r} ({Layer.GUILD})")

    # 5. The negative prompt leaving out clothing in a picture of a person.
    person = _names_a_person(rules, readings)
    if clothing_left_out and person:
        reasons.append(
            f"the negative prompt leaves out clothing ({clothing_left_out}) "
            "in a picture of a person"
        )
    if reasons:
        return PromptVerdict(allowed=False, reasons=tuple(reasons))

    # 3. Force safe: made, checked strictly, never shown unspoilered.
    safe_reasons = [
        f"{term!r} is on the force-safe list ({listed.layer})"
        for term, listed in _found(rules.force_safe, readings).items()
    ]
    safe_reasons += [
        f"matches the force-safe pattern {written!r} ({Layer.GUILD})"
        for written in _pattern_hits(rules.patterns, readings, RuleAction.FORCE_SAFE)
    ]
    if clothing_left_out:
        safe_reasons.append(f"the negative prompt leaves out clothing ({clothing_left_out})")
    return PromptVerdict(
        allowed=True, force_safe=bool(safe_reasons), safe_reasons=tuple(safe_reasons)
    )
