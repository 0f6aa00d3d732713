"""Clothing left out inside the prompt, and a negative prompt typed into the prompt.

"woman, no clothes", "without any clothing", "taking off her bra", "sin ropa", "服を脱いだ" ask
for nudity without a nudity word: a negator or removal word within a few words of a clothing
word, in the same clause. Accessories are no clothing that exposes anyone ("without glasses",
"taking off his hat" pass), and negation of anything else ("no people", "no text") is no
request at all.

"..., negative prompt: clothes" or "--no clothing" typed into the prompt is split off and read
as the negative prompt it is, so the negative prompt's clothing rule applies to it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Generic, NamedTuple, TypeVar

from moderation.normalise import hangul, spaceless, views
from moderation.terms import Term, TermIndex

if TYPE_CHECKING:
    from moderation.lists import PromptRules

T = TypeVar("T")

# Not clothing whose absence exposes a person, in English; the language files' [clothing]
# sections should leave these out too.
ACCESSORIES = frozenset(
    {"glasses", "sunglasses", "eyeglasses", "spectacles", "hat", "hats", "cap", "caps", "helmet",
     "helmets", "mask", "masks", "shoe", "shoes", "boot", "boots", "sock", "socks", "glove",
     "gloves", "scarf", "scarves", "jewelry", "jewellery", "necklace", "earring", "earrings",
     "ring", "rings", "watch", "makeup", "lipstick", "tie", "jacket", "jackets", "coat", "coats",
     "hood", "hoodie", "cape", "backpack", "bag", "belt", "crown", "tiara", "wig", "headband",
     "umbrella"}
)  # fmt: skip
# Negative-prompt words that are not garments ("censored", "sfw", "fabric").
NOT_GARMENTS = frozenset(
    {"censored", "censorship", "censor bar", "sfw", "safe for work", "fabric", "drapery",
     "blanket", "covered"}
)  # fmt: skip
_NEAR = 3  # at most this many words between the negator and the clothing word after it
_NEAR_AFTER = 2  # and between the clothing word and a removal word after it
_CLAUSES = re.compile(r"[,;.!?|\n()\[\]{}:、。，；！？]+")


def clothing_index(terms: Iterable[Term]) -> TermIndex[None]:
    """Clothing words for the in-prompt rule: accessories and cover words left out."""
    return TermIndex(
        (term, None)
        for term in terms
        if term.text not in ACCESSORIES and term.text not in NOT_GARMENTS
    )


def marker_pattern(markers: Iterable[str]) -> re.Pattern[str] | None:
    """How a typed negative prompt starts ("negative prompt:", "--no "), case-insensitive."""
    shapes = []
    for marker in sorted({m.strip() for m in markers if m.strip()}, key=len, reverse=True):
        shape = re.escape(marker)
        if marker[0].isalnum():
            shape = r"(?<![\w-])" + shape
        if marker[-1].isalnum():
            shape += r"(?!\w)"
        shapes.append(shape)
    return re.compile("|".join(shapes), re.IGNORECASE) if shapes else None


def split_typed_negative(prompt: str, markers: re.Pattern[str] | None) -> tuple[str, str]:
    """(the prompt, a negative prompt typed into it): after a marker, up to the next "--"
    parameter ("--no clothes --ar 16:9"), a "|" or a new line, or the end."""
    if markers is None:
        return prompt, ""
    found = markers.search(prompt)
    if found is None:
        return prompt, ""
    rest = prompt[found.end() :]
    # It ends at the next "--" parameter, or at a "|", ";", a new line or "Prompt:", after which the
    # prompt goes on ("negative prompt: clothing | woman standing", "Negative prompt: text.
    # Prompt: a farmer").
    parameter = re.search(
        r"\s--[a-z]|\s*[|\n;]\s*|[.,;]?\s*\b(?:positive prompt|positive|prompt)\s*:\s*",
        rest,
        re.IGNORECASE,
    )
    negative = rest[: parameter.start()] if parameter else rest
    after = rest[parameter.start() :] if parameter else ""
    if parameter and not parameter.group().strip().startswith("--"):
        after = " " + rest[parameter.end() :]
    more_positive, more_negative = split_typed_negative(after, markers)
    return (
        prompt[: found.start()] + " " + more_positive,
        " ".join(part for part in (negative, more_negative) if part.strip()),
    )


def _spaced_script(text: str) -> bool:
    """Latin, Cyrillic, Greek, Arabic, Devanagari: a negator comes before the word there."""
    return not (spaceless(text) or hangul(text))


def _units(text: str) -> int:
    """Words up to here, a character of a spaceless script counting as a word."""
    return text.count(" ") + sum(1 for char in text if spaceless(char))


class _Span(NamedTuple, Generic[T]):
    first: int  # the unit it starts at (a word, or a character of a spaceless script)
    last: int
    start: int  # its characters in the reading
    end: int
    value: T  # the index's value: a section of negation.txt
    words: str  # the words it matched
    term: str


# Spans of one index in one reading, at most: a prompt of one word repeated ("no no no ...")
# must not make the pairing below grow without bound.
_MAX_SPANS = 400


def _spans(index: TermIndex[T], reading: str) -> list[_Span[T]]:
    """Where each term of the index stands in one reading, in order, each text looked for once
    and the words counted as the reading is walked (linear in its length)."""
    padded = f" {reading} "
    starts: list[tuple[int, bool, T, str, str]] = []
    for term, value, matched in dict.fromkeys(index.find(reading)):
        inside = spaceless(matched)
        needle = matched if inside else f" {matched} "
        start = padded.find(needle)
        while start >= 0 and len(starts) < 4 * _MAX_SPANS:
            starts.append((start if inside else start + 1, inside, value, matched, term.text))
            start = padded.find(needle, start + 1)
    spans = []
    units, walked = 0, 0
    for begin, inside, value, matched, text in sorted(starts, key=lambda one: one[0])[:_MAX_SPANS]:
        units += _units(padded[walked:begin])
        walked = begin
        # A phrase of n words covers n units ("out of" two); a spaceless term, its characters.
        words = _units(matched) if inside else matched.count(" ") + 1
        last = units + max(words, 1) - 1
        end = begin - 1 + len(matched)
        spans.append(_Span(units, last, begin - 1, end, value, matched, text))
    return spans


def _by_unit(spans: list[_Span[T]]) -> dict[int, list[_Span[T]]]:
    """The spans under each unit they cover, so that a word's neighbours are looked up."""
    units: dict[int, list[_Span[T]]] = {}
    for span in spans:
        for unit in range(span.first, span.last + 1):
            units.setdefault(unit, []).append(span)
    return units


# "top" is a garment, but not in "his top hat", "the top of the jar", "the top layer".
_TOP_NOT_GARMENT = frozenset(
    {"hat", "hats", "of", "layer", "shelf", "lid", "floor", "half", "part", "sail", "soil", "coat"}
)


# A garment opened only at one end stays on: "shirt unbuttoned at the collar" (opened, not
# taken off: "a boy without pants at the top of the hill" is no such thing).
_PARTLY = re.compile(r"\s*(?:at|by) the (?:collar|neck|throat|cuffs?|wrists?|sleeves?)\b")
_OPENING = ("unbutton", "undone", "undo", "undid", "unzip", "loosen", "unfasten", "unlac")


def _not_a_garment_here(term: str, rest: str) -> bool:
    following = rest.split(maxsplit=1)
    return term == "top" and bool(following) and following[0] in _TOP_NOT_GARMENT


def clothing_left_out(rules: PromptRules, prompt: str, readings: tuple[str, ...]) -> str | None:
    """The words that leave clothing out ("no clothes", "taking off her bra"), or None;
    ``readings`` are the prompt's views, which show whether a clause needs reading at all."""
    if not rules.negation or not rules.clothing:
        return None
    if not any(rules.negation.find(reading) for reading in readings[:2]):
        return None  # most prompts: no clause to read
    for clause in _CLAUSES.split(prompt):
        for reading in views(clause).all[:2]:
            negated = _by_unit(_spans(rules.negation, reading))
            if not negated:
                continue
            for c in _spans(rules.clothing, reading):
                if _not_a_garment_here(c.term, reading[c.end :]):
                    continue
                near = range(c.first - _NEAR, c.last + _NEAR_AFTER + 1)
                for n in dict.fromkeys(n for unit in near for n in negated.get(unit, ())):
                    overlap = c.first <= n.last and n.first <= c.last  # "服なし": one word
                    before = 0 <= c.first - n.last - 1 < _NEAR
                    # A removal word may follow, close ("her bra removed"); a negator only
                    # where its language puts it after ("服なし", "옷 없이", "kıyafet yok"), never
                    # "a dress with no sleeves".
                    follows = n.value in ("removal", "negators_after") or not _spaced_script(
                        n.words
                    )
                    after = follows and 0 <= n.first - c.last - 1 < _NEAR_AFTER
                    partly = n.words.startswith(_OPENING) and _PARTLY.match(
                        reading, max(c.end, n.end)
                    )
                    if (overlap or before or after) and not partly:
                        return reading[min(c.start, n.start) : max(c.end, n.end)]
    return None


def asserted(rules: PromptRules, index: TermIndex[T], readings: tuple[str, ...]) -> list[str]:
    """The index's terms found in the readings, less those negated where they stand: "no gore",
    "without blood", "gore-free" ask for the opposite."""
    kept: dict[str, bool] = {}
    for reading in readings:
        spans = _spans(index, reading)
        if not spans:
            continue
        negators = {n.last for n in _spans(rules.negation, reading) if n.value != "removal"}
        for span in spans:
            negated = span.first - 1 in negators
            negated = negated or reading.startswith(" free", span.end)
            kept[span.term] = kept.get(span.term, False) or not negated
    return [term for term, keep in kept.items() if keep]
