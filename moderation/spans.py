"""Phrases and wildcard terms found word by word, in time that does not grow with the lists.

One regular expression of every phrase and wildcard term (the first way) tried each of them at
every word: with the language files' 1000 more entries a prompt took 10-25 ms. Here each word
is looked up in a few dictionaries: phrases by their first word, prefix terms by their first
three letters, suffix terms by their last three, terms found anywhere by every three letters of
the word. At each word the longest match wins ("sexy video" over "sex*"), the entry listed
first among equals, and the next match starts after it.
"""

from __future__ import annotations

import re
from collections import defaultdict

_KEY = 3  # wildcard terms have at least this many letters (``moderation.terms.parse_term``)
# A word matches its plural: "-es" only after s, x, z, ch, sh ("bitches"), "-s" otherwise; "-es"
# after any word made "spices" the plural of a slur.
_SIBILANT_ENDS = ("s", "x", "z", "ch", "sh")


def word_forms(text: str) -> tuple[str, str]:
    """A one-word term (or a phrase's last word) and its plural."""
    return (text, text + ("es" if text.endswith(_SIBILANT_ENDS) else "s"))


class SpanMatcher:
    """Entries (shape "phrase", "prefix", "suffix" or "anywhere", and normalised text), each
    under a key that ``matches`` gives back."""

    def __init__(self) -> None:
        self._order: dict[str, int] = {}
        self._phrases: dict[str, list[tuple[tuple[str, ...], str]]] = defaultdict(list)
        self._prefixes: dict[str, list[tuple[str, str]]] = defaultdict(list)
        self._suffixes: dict[str, list[tuple[str, str]]] = defaultdict(list)
        self._anywhere: dict[str, list[tuple[str, str]]] = defaultdict(list)
        self._anywhere_found: re.Pattern[str] | None = None  # whether a view has any at all

    def __bool__(self) -> bool:
        return bool(self._order)

    def add(self, key: str, shape: str, text: str) -> None:
        if key in self._order:
            return
        self._order[key] = len(self._order)
        if shape == "phrase":
            words = tuple(text.split())
            self._phrases[words[0]].append((words, key))
        elif shape == "prefix":
            self._prefixes[text[:_KEY]].append((text, key))
        elif shape == "suffix":
            self._suffixes[text[-_KEY:]].append((text, key))
        else:
            self._anywhere[text[:_KEY]].append((text, key))
            self._anywhere_found = None

    def _phrase_end(self, words: list[str], i: int, phrase: tuple[str, ...]) -> int | None:
        """Where the phrase ends when it starts at word i (its last word may take s or es)."""
        end = i + len(phrase)
        if end > len(words) or tuple(words[i : end - 1]) != phrase[:-1]:
            return None
        last, written = words[end - 1], phrase[-1]
        if last in word_forms(written):
            return end
        return None

    def matches(self, words: list[str]) -> list[tuple[int, int, str]]:
        """(first word, the word after the match, key) of each match, in order."""
        out: list[tuple[int, int, str]] = []
        order, phrases, prefixes, suffixes = (
            self._order,
            self._phrases,
            self._prefixes,
            self._suffixes,
        )
        anywhere = self._anywhere if self._anywhere and self._has_anywhere(words) else None
        count = len(words)
        i = 0
        while i < count:
            word = words[i]
            best: tuple[int, int, str] | None = None  # (-end, order, key): longest, then first
            entries = phrases.get(word)
            if entries is not None:
                for phrase, key in entries:
                    end = self._phrase_end(words, i, phrase)
                    if end is not None and (best is None or (-end, order[key]) < best[:2]):
                        best = (-end, order[key], key)
            if len(word) >= _KEY:
                for table, found in ((prefixes, word.startswith), (suffixes, word.endswith)):
                    shaped = table.get(word[:_KEY] if table is prefixes else word[-_KEY:])
                    for text, key in shaped or ():
                        if found(text) and (best is None or (-(i + 1), order[key]) < best[:2]):
                            best = (-(i + 1), order[key], key)
                for start in range(len(word) - _KEY + 1) if anywhere is not None else ():
                    for text, key in anywhere.get(word[start : start + _KEY], ()):  # type: ignore[union-attr]
                        if word.startswith(text, start) and (
                            best is None or (-(i + 1), order[key]) < best[:2]
                        ):
                            best = (-(i + 1), order[key], key)
            if best is None:
                i += 1
            else:
                out.append((i, -best[0], best[2]))
                i = -best[0]
        return out

    def prepare(self) -> re.Pattern[str] | None:
        """Compiles the search for terms found anywhere (now, not at the first prompt)."""
        if self._anywhere_found is None and self._anywhere:
            texts = sorted({text for entries in self._anywhere.values() for text, _ in entries})
            self._anywhere_found = re.compile("|".join(map(re.escape, texts)))
        return self._anywhere_found

    def _has_anywhere(self, words: list[str]) -> bool:
        """Whether any term found anywhere is in the words at all (one search, most say no)."""
        found = self.prepare()
        return found is not None and found.search(" ".join(words)) is not None
