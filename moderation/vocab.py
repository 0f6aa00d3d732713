"""The vocabulary in other languages, emoji and clothing negation, as the rules read it.

The data is written by hand in ``moderation/data`` (its formats: ``data/lang/README.md``):

- ``lang/<code>.txt``: one file a language, terms under ``[section]`` lines (sexual, nudity,
  minors, gore, clothing, age_units, age_numbers, people, euphemism), in the term syntax of
  ``moderation.terms``;
- ``emoji.tsv``: emoji, the words they read as, and whether they are sexual on their own;
- ``negation.txt``: words that negate or remove clothing ([negators], [negators_after],
  [removal]) and the ways
  people type a negative prompt into the prompt ([negative_markers]);
- ``allow_names.tsv``: names and terms of art that collide with the lists, each with a source
  and, for a name that is also a plain rude word ("Pussy", a village in Savoie), the words
  that must stand near it for it to be read as the name.

This module only reads it (once a process); ``moderation.lists`` builds the indexes.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable

from moderation.errors import InvalidTerm
from moderation.normalise import normalise
from moderation.terms import Term, parse_term

SECTIONS = (
    "sexual", "nudity", "minors", "gore", "clothing", "age_units", "age_numbers", "people",
    "euphemism", "innocent", "suggestive",
)  # fmt: skip
# [suggestive]: no refusal for an adult, but the images are checked strictly (the force-safe list:
# "sexy", "lingerie" in each language), and beside a minor a sexual cue.
# [innocent]: longer words of a script without spaces (Chinese, Japanese, Thai, Korean) that
# hold a listed term in an innocent sense ("露点温度", dew point); the term does not match there.
# [negators_after]: negators that follow the clothing word ("kıyafet yok"); the ones in Japanese,
# Korean, Chinese and Thai may follow it wherever they are listed.
NEGATION_SECTIONS = ("negators", "negators_after", "removal", "negative_markers")


@dataclass(frozen=True)
class Emoji:
    """One emoji (or a sequence of them) and what it reads as."""

    text: str
    reading: str
    strong: bool  # sexual on its own; a weak one needs a person or another sexual cue
    minor: bool = False  # reads as a word about minors (👧 "girl child"): no sexual cue itself
    innocent: bool = False  # a sequence that means something else (😅💦 sweat): no cue at all
    # Words that give it its ordinary sense ("peach", "market"): beside one, no cue.
    context: tuple[str, ...] = ()


@dataclass(frozen=True)
class Vocabulary:
    terms: dict[str, tuple[tuple[Term, str], ...]]  # section -> (term, language code)
    negation: dict[str, tuple[Term, ...]]  # negators, removal
    negative_markers: tuple[str, ...]  # as written: "negative prompt:", "--no"
    emoji: tuple[Emoji, ...]
    allow_names: tuple[Term, ...]
    place_names: tuple[Term, ...] = ()  # the allow names of kind "place" (Essex, Penistone)
    # A name's context words (normalised), where it has them: the name is taken out only with
    # one of them in the prompt ("Pussy" beside "Savoie"), and never for the minors rule.
    name_context: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # language -> (its age units, its number words), as written: a number word pairs only with
    # its own language's units.
    ages_by_language: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = field(
        default_factory=dict
    )

    def section(self, name: str) -> list[Term]:
        return [term for term, _ in self.terms.get(name, ())]


def _data() -> Traversable:
    return resources.files("moderation").joinpath("data")


def _lines(file: Traversable) -> list[str]:
    if not file.is_file():
        return []
    text = file.read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and line.strip()[0] != "#"]


def _sections(file: Traversable) -> dict[str, list[str]]:
    """A sectioned file's lines by section (lines before any section are left out)."""
    out: dict[str, list[str]] = defaultdict(list)
    section = ""
    for line in _lines(file):
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip().lower()
        elif section:
            out[section].append(line)
    return out


def _term(line: str, where: str) -> Term:
    try:
        return parse_term(line)
    except InvalidTerm as error:
        raise InvalidTerm(f"{where}: {error}") from None


def read_languages(folder: Traversable) -> dict[str, tuple[tuple[Term, str], ...]]:
    """Every language file's terms by section, with the language they came from."""
    found: dict[str, list[tuple[Term, str]]] = defaultdict(list)
    if not folder.is_dir():
        return {}
    for file in sorted(folder.iterdir(), key=lambda file: file.name):
        if not file.name.endswith(".txt"):
            continue
        language = file.name.removesuffix(".txt")
        for section, lines in _sections(file).items():
            if section in ("age_units", "age_numbers"):
                continue  # read as written: "歳" follows a number with no space
            found[section] += [(_term(line, f"lang/{file.name}"), language) for line in lines]
    return {section: tuple(terms) for section, terms in found.items()}


def read_ages(folder: Traversable) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """Each language file's ([age_units], [age_numbers]), as written."""
    if not folder.is_dir():
        return {}
    out = {}
    for file in sorted(folder.iterdir(), key=lambda file: file.name):
        if file.name.endswith(".txt"):
            sections = _sections(file)
            units = tuple(sections.get("age_units", ()))
            numbers = tuple(sections.get("age_numbers", ()))
            if units or numbers:
                out[file.name.removesuffix(".txt")] = (units, numbers)
    return out


def read_emoji(file: Traversable) -> tuple[Emoji, ...]:
    """emoji.tsv: emoji, reading, strength (``strong``, ``weak`` or ``innocent``) and, optional,
    the words of its innocent context; the longest first, so that a listed combination ("🍆💦")
    is read before its parts."""
    out = []
    for line in _lines(file):
        fields = [field.strip() for field in line.split("\t")]
        if not 3 <= len(fields) <= 4 or not fields[0]:
            raise InvalidTerm(
                f"emoji.tsv: {line!r} is not emoji<TAB>reading<TAB>strength[<TAB>context]"
            )
        if fields[2] not in ("strong", "weak", "innocent"):
            raise InvalidTerm(f"emoji.tsv: strength {fields[2]!r} is not strong, weak or innocent")
        text = fields[0].replace("\ufe0f", "")
        context = tuple(word.strip().lower() for word in fields[3].split(",")) if fields[3:] else ()
        if any(not word or not word.replace(" ", "").isalpha() for word in context):
            raise InvalidTerm(f"emoji.tsv: {text}'s context {fields[3]!r} is not words and commas")
        strength = fields[2]
        out.append(
            Emoji(text, fields[1], strength == "strong", False, strength == "innocent", context)
        )
    return tuple(sorted(out, key=lambda emoji: len(emoji.text), reverse=True))


def read_allow_names(file: Traversable, kind: str | None = None) -> tuple[Term, ...]:
    """allow_names.tsv: name, kind, source[, context words]; the name is taken out before the
    block terms. With ``kind``, only the names of that kind ("place")."""
    return tuple(
        _term(fields[0], "allow_names.tsv")
        for fields in (line.split("\t") for line in _lines(file))
        if kind is None or (len(fields) > 1 and fields[1].strip() == kind)
    )


def read_name_context(file: Traversable) -> dict[str, tuple[str, ...]]:
    """allow_names.tsv's fourth column: a name's context words, normalised, by the name's
    normalised text ("pussy": ("savoie", "la lechere", …))."""
    out: dict[str, tuple[str, ...]] = {}
    for line in _lines(file):
        fields = line.split("\t")
        if len(fields) < 4:
            continue
        name = _term(fields[0], "allow_names.tsv")
        context = tuple(normalise(word) for word in fields[3].split(","))
        if not all(context):
            raise InvalidTerm(f"allow_names.tsv: {fields[0]}'s context {fields[3]!r} has no words")
        out[name.text] = out.get(name.text, ()) + context
    return out


@functools.cache
def shipped() -> Vocabulary:
    """The shipped vocabulary (read once a process); missing files read as empty."""
    data = _data()
    negation = _sections(data.joinpath("negation.txt"))
    return Vocabulary(
        terms=read_languages(data.joinpath("lang")),
        ages_by_language=read_ages(data.joinpath("lang")),
        negation={
            section: tuple(_term(line, "negation.txt") for line in negation.get(section, ()))
            for section in ("negators", "negators_after", "removal")
        },
        negative_markers=tuple(negation.get("negative_markers", ())),
        emoji=read_emoji(data.joinpath("emoji.tsv")),
        allow_names=read_allow_names(data.joinpath("allow_names.tsv")),
        place_names=read_allow_names(data.joinpath("allow_names.tsv"), "place"),
        name_context=read_name_context(data.joinpath("allow_names.tsv")),
    )
