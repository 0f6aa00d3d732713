"""The lists a prompt is checked against: the shipped layers and one guild's own entries.

The shipped layers are read once per process from ``moderation/data`` (the default block list,
better-profanity's list less the ordinary words it over-blocks, normalised ahead by
``moderation.profanity``, force-safe, allow, minors and negative-prompt terms); a guild's entries
(terms and time-bounded patterns) are laid over a copy of them. What the lists decide is
``moderation.prompts.check_prompt``'s concern.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING

import regex

from moderation import vocab
from moderation.ages import age_pattern
from moderation.errors import InvalidTerm
from moderation.learned import shipped_classifier
from moderation.negation import clothing_index, marker_pattern
from moderation.normalise import leet_reading, normalise
from moderation.terms import Term, TermIndex, TermShape, compile_pattern, parse_term

if TYPE_CHECKING:
    from moderation.learned import Classifier

PROFANITY_FILE = "profanity_terms.txt"  # made by `python -m moderation.profanity`
# Sexual words that ordinary short words join into: "a pen is", "friend's ex".
_FRAGMENT_EXCEPTIONS = frozenset({"penis", "sex"})


class Layer(enum.StrEnum):
    """Which list a term came from, named as the reason shows it (earliest layer first)."""

    DEFAULT = "default list"
    PROFANITY = "profanity list"
    GUILD = "this server's list"


LAYER_ORDER = tuple(Layer)


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
class Listed:
    """Why a term is on a block or force-safe list: its layer, and whether it is sexual (which
    the minors rule asks)."""

    layer: Layer
    sexual: bool = False


@dataclass(frozen=True)
class GuildPattern:
    """A guild's regular expression entry, compiled and checked (``compile_pattern``)."""

    written: str
    compiled: regex.Pattern[str]
    action: RuleAction


def data_lines(name: str) -> list[str]:
    """The lines of a shipped data file, without blank lines and ``#`` comments."""
    text = resources.files("moderation").joinpath("data", name).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]


def _read_terms(name: str) -> list[tuple[Term, str]]:
    """(term, section) pairs from a data file; ``[section]`` lines name what follows."""
    section, out = "", []
    for line in data_lines(name):
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        out.append((parse_term(line), section))
    return out


def _stored_term(line: str) -> Term:
    """A term as ``str(Term)`` wrote it into a generated file: already normalised, so only its
    stars and spaces are read."""
    text = line.strip("*")
    star_before, star_after = line.startswith("*"), line.endswith("*")
    if " " in text:
        shape = TermShape.PHRASE
    elif star_before and star_after:
        shape = TermShape.ANYWHERE
    elif star_before:
        shape = TermShape.SUFFIX
    elif star_after:
        shape = TermShape.PREFIX
    else:
        shape = TermShape.WORD
    return Term(text, shape)


def _profanity_terms() -> list[Term]:
    """better-profanity's word list without the entries we exclude, as ``moderation.profanity``
    normalised it ahead (normalising it here would cost every process tens of milliseconds)."""
    return [_stored_term(line) for line in data_lines(PROFANITY_FILE)]


def _with_glued_form(term: Term) -> list[Term]:
    """A phrase and the forms it takes when some of its words are glued: "naked mole-rat" reads
    as "naked molerat" where the hyphen is dropped, "nakedmolerat" where all are."""
    if term.shape is not TermShape.PHRASE:
        return [term]
    words = term.text.split()
    if len(words) > 4:  # one glued form only; the others would multiply
        return [term, Term("".join(words), TermShape.WORD)]
    forms = []
    for mask in range(1 << (len(words) - 1)):
        text = words[0]
        for i, word in enumerate(words[1:]):
            text += ("" if mask >> i & 1 else " ") + word
        forms.append(Term(text, TermShape.PHRASE if " " in text else TermShape.WORD))
    return forms


def _holds_a_listed_word(block: TermIndex[Listed], name: Term) -> bool:
    """Whether one of the name's words is, whole, a listed word ("intercourse" in "Intercourse,
    Pennsylvania"), not a word that holds one ("Sussex", "Scunthorpe")."""
    return any(
        term.shape is TermShape.WORD and matched == word
        for word in name.text.split()
        for term, _, matched in block.find(word)
    )


@dataclass(frozen=True)
class Allowed:
    """When a shipped allow phrase or name is taken out of a prompt's reading."""

    # [not_with_people]: kept when the prompt names a person ("a woman with great tits").
    not_with_people: bool = False
    # allow_names.tsv's context words: taken out only with one of them in the prompt ("Pussy"
    # beside "Savoie"); empty: always.
    context: tuple[str, ...] = ()

    def kept(self, reading: str, *, person: bool) -> bool:
        """The phrase stays in ``reading`` (a normalised view) for the lists to see."""
        if self.not_with_people and person:
            return True
        padded = f" {reading} "
        return bool(self.context) and not any(f" {word} " in padded for word in self.context)


@dataclass(frozen=True)
class PromptRules:
    """The lists in force for one request: the shipped layers plus one guild's own."""

    block: TermIndex[Listed]
    force_safe: TermIndex[Listed]
    shipped_force_safe: TermIndex[Listed]  # a wildcard block term gives way to these only
    allow: TermIndex[Allowed]  # shipped phrases and names, and when they are not taken out
    # The shipped phrases the minors rule takes out too: [beside_minors].
    minors_allow: TermIndex[None]
    minors: TermIndex[None]
    negative: TermIndex[str]  # section of negative_terms.txt: clothing, clothing_weak, people
    negative_allow: TermIndex[None]
    fragment_terms: frozenset[str]  # sexual words also looked for in joined fragments ("nu de")
    guild_allow: TermIndex[None] = field(default_factory=TermIndex)
    patterns: tuple[GuildPattern, ...] = ()
    # From the language files (``moderation.vocab``): words that read as gore, clothing and
    # what negates or removes it inside the prompt, ages in other languages ("12 años"), emoji,
    # how a negative prompt typed into the prompt starts.
    gore: TermIndex[None] = field(default_factory=TermIndex)
    gore_english: frozenset[str] = frozenset()  # one-word English gore terms ("gory")
    clothing: TermIndex[None] = field(default_factory=TermIndex)
    negation: TermIndex[str] = field(default_factory=TermIndex)  # negators, removal
    ages: re.Pattern[str] | None = None
    emoji: tuple[vocab.Emoji, ...] = ()
    negative_markers: re.Pattern[str] | None = None
    # The learned layer (``moderation.classifier``), when one is shipped.
    classifier: Classifier | None = None

    @classmethod
    @functools.cache
    def default(cls) -> PromptRules:
        """The shipped lists (read once per process)."""
        negative_terms = _read_terms("negative_terms.txt")
        block_terms = _read_terms("block_terms.txt")
        block: TermIndex[Listed] = TermIndex()
        for term, section in block_terms:
            block.add(term, Listed(Layer.DEFAULT, sexual=section == "sexual"))
        for term in _profanity_terms():  # most of what is left of it is sexual
            block.add(term, Listed(Layer.PROFANITY, sexual=True))
        words = vocab.shipped()
        force_safe = TermIndex(
            (term, Listed(Layer.DEFAULT, sexual=True))
            for term in (
                *(term for term, _ in _read_terms("force_safe_terms.txt")),
                *words.section("suggestive"),
            )
        )
        listed = {term.text for term, _ in block}
        for section in ("sexual", "nudity", "euphemism"):
            for term in words.section(section):
                letters = term.text.replace(" ", "").isalpha()
                folded = term.text if letters else leet_reading(term.text)
                if folded != term.text and folded in listed:
                    continue  # "p0rn": the leet reading finds it as "porn" already
                block.add(term, Listed(Layer.DEFAULT, sexual=True))
                listed.add(term.text)
        allow: TermIndex[Allowed] = TermIndex(
            (form, Allowed(not_with_people=section == "not_with_people"))
            for term, section in _read_terms("allow_terms.txt")
            for form in _with_glued_form(term)
        )
        # A place whose name holds a listed word whole ("Intercourse, Pennsylvania") is no
        # place beside a person: "a teen having intercourse, Pennsylvania"; nor for the minors
        # rule, nor one whose name needs its context ("Pussy" beside "Savoie").
        rude_names = {term.text for term in words.place_names if _holds_a_listed_word(block, term)}
        for term in words.allow_names:
            why = Allowed(
                not_with_people=term.text in rude_names or term.text in words.name_context,
                context=words.name_context.get(term.text, ()),
            )
            for form in _with_glued_form(term):
                allow.add(form, why)
        # What the minors rule takes out: the [beside_minors] phrases, innocent whoever is named
        # ("naked mole rat"), and the gazetteer's places (a school trip to Essex); not its
        # species ("great tits", "horny toad" beside a teen), nor "nude heels" beside a child.
        minors_allow: TermIndex[None] = TermIndex(
            (form, None)
            for term, section in _read_terms("allow_terms.txt")
            if section == "beside_minors"
            for form in _with_glued_form(term)
        )
        for term in words.place_names:
            if term.text in rude_names or term.text in words.name_context:
                continue
            for form in _with_glued_form(term):
                minors_allow.add(form, None)
        negative: TermIndex[str] = TermIndex(
            (term, section) for term, section in negative_terms if section != "negative_allow"
        )
        for term in words.section("people"):
            negative.add(term, "people")
        for term in words.section("clothing"):
            negative.add(term, "clothing_weak")  # one of them alone is no request
        minor_terms = [term for term, _ in _read_terms("minor_terms.txt")]
        minors: TermIndex[None] = TermIndex(
            (term, None) for term in (*minor_terms, *words.section("minors"))
        )
        garments = [term for term, section in negative_terms if section.startswith("clothing")]
        rules = cls(
            block=block,
            force_safe=force_safe,
            shipped_force_safe=force_safe,
            allow=allow,
            minors_allow=minors_allow,
            minors=minors,
            negative=negative,
            gore=TermIndex((term, None) for term in words.section("gore")),
            gore_english=frozenset(
                term.text
                for term, lang in words.terms.get("gore", ())
                if lang == "en" and " " not in term.text
            ),
            clothing=clothing_index([*garments, *words.section("clothing")]),
            negation=TermIndex(
                (term, section) for section, terms in words.negation.items() for term in terms
            ),
            ages=age_pattern(words.ages_by_language),
            emoji=tuple(
                dataclasses.replace(emoji, minor=bool(minors.find(normalise(emoji.reading))))
                for emoji in words.emoji
            ),
            negative_markers=marker_pattern(words.negative_markers),
            classifier=shipped_classifier(),
            negative_allow=TermIndex(
                (term, None) for term, section in negative_terms if section == "negative_allow"
            ),
            fragment_terms=frozenset(
                term.text
                for term, section in block_terms
                if section == "sexual"
                and term.shape is not TermShape.PHRASE
                and term.text not in _FRAGMENT_EXCEPTIONS
            ),
        )
        # Longer words that hold a term of a script without spaces in an innocent sense
        # ("路口交通", a crossroads' traffic, holds "口交"): the term does not match inside them.
        innocent = [term.text for term in words.section("innocent")]
        for index in (rules.block, rules.force_safe, rules.allow, rules.minors_allow, rules.minors,
                      rules.negative, rules.gore, rules.clothing, rules.negation):  # fmt: skip
            if index is not rules.allow and index is not rules.minors_allow:
                index.add_innocent(innocent)
            index.prepare()
        return rules

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
        block = TermIndex(self.block, innocent=self.block.innocent)
        force_safe = TermIndex(self.force_safe, innocent=self.force_safe.innocent)
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
                block.add(term, Listed(Layer.GUILD))
            elif rule.action is RuleAction.FORCE_SAFE:
                force_safe.add(term, Listed(Layer.GUILD))
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


def _guild_pattern(rule: GuildRule, *, probe: bool) -> GuildPattern:
    if rule.action is RuleAction.ALLOW:
        raise InvalidTerm(
            "regular expressions work for block and force-safe entries; "
            "an allow entry is a term or phrase"
        )
    return GuildPattern(rule.text, compile_pattern(rule.text, probe=probe), rule.action)


def validate_rule(rule: GuildRule) -> None:
    """Raises InvalidTerm, naming the entry and what is allowed, before a list stores it.

    A pattern is bounded before it is compiled, then probed for up to about a second: call
    this from a thread where an event loop is running.
    """
    if rule.is_regex:
        _guild_pattern(rule, probe=True)
    else:
        parse_term(rule.text)
