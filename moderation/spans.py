"""Phrases and wildcard terms found word by word, in time that does not grow with the lists.

One regular expression of every phrase and wildcard term (the first way) tried each of them at
every word: with the language files' 1000 more entries a prompt took 10-25 ms. Here each word
is looked up in a few dictionaries: phrases by their first two words, prefix terms by their first
three letters, suffix terms by their last three, terms found anywhere by every three letters of
the word. At each word the longest match wins ("sexy video" over "sex*"), the entry listed
first among equals, and the next match starts after it.
"""

from __future__ import annotations

from collections import defaultdict

_KEY = 3  # wildcard terms have at least this many letters (``moderation.terms.parse_term``)
# A word matches its plural: "-es" only after s, x, z, ch, sh ("bitches"), "-s" otherwise; "-es"
# after any word made "spices" the plural of a slur.
_SIBILANT_ENDS = ("s", "x", "z", "ch", "sh")
_UNSEEN = (-1, "")  # a word not yet looked up
_SEEN_WORDS = 20_000  # words whose wildcard matches are kept (about 2 MB)


def word_forms(text: str) -> tuple[str, str]:
    """A one-word term (or a phrase's last word) and its plural."""
    return (text, text + ("es" if text.endswith(_SIBILANT_ENDS) else "s"))


class SpanMatcher:
    """Entries (shape "phrase", "prefix", "suffix" or "anywhere", and normalised text), each
    under a key that ``matches`` gives back."""

    def __init__(self) -> None:
        self._order: dict[str, int] = {}
        # By the first two words (a two-word phrase's second word in both its forms): keyed by
        # the first alone, "a" or "the" sent every word to hundreds of phrases.
        self._phrases: dict[tuple[str, str], list[tuple[tuple[str, ...], str]]] = defaultdict(list)
        self._prefixes: dict[str, list[tuple[str, str]]] = defaultdict(list)
        self._suffixes: dict[str, list[tuple[str, str]]] = defaultdict(list)
        self._anywhere: dict[str, list[tuple[str, str]]] = defaultdict(list)
        self._seen: dict[str, tuple[int, str] | None] = {}  # word -> wildcard match

    def __bool__(self) -> bool:
        return bool(self._order)

    def add(self, key: str, shape: str, text: str) -> None:
        if key in self._order:
            return
        self._order[key] = len(self._order)
        if shape == "phrase":
            words = tuple(text.split())
            seconds = word_forms(words[1]) if len(words) == 2 else (words[1],)
            for second in seconds:
                self._phrases[(words[0], second)].append((words, key))
        elif shape == "prefix":
            self._prefixes[text[:_KEY]].append((text, key))
        elif shape == "suffix":
            self._suffixes[text[-_KEY:]].append((text, key))
        else:
            self._anywhere[text[:_KEY]].append((text, key))
        self._seen.clear()

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
        order, phrases, seen = self._order, self._phrases, self._seen
        count = len(words)
        i = 0
        while i < count:
            word = words[i]
            best: tuple[int, int, str] | None = None  # (-end, order, key): longest, then first
            entries = phrases.get((word, words[i + 1])) if i + 1 < count else None
            if entries is not None:
                for phrase, key in entries:
                    end = self._phrase_end(words, i, phrase)
                    if end is not None and (best is None or (-end, order[key]) < best[:2]):
                        best = (-end, order[key], key)
            one = seen.get(word, _UNSEEN)
            if one is _UNSEEN:
                one = self._one_word(word)
            if best is None and one is not None:
                best = (-(i + 1), *one)
            if best is None:
                i += 1
            else:
                out.append((i, -best[0], best[2]))
                i = -best[0]
        return out

    def _one_word(self, word: str) -> tuple[int, str] | None:
        """(order, key) of the first-listed wildcard term the word matches; the last words
        asked are kept (a prompt's readings and clauses share most words)."""
        best: tuple[int, str] | None = None
        order = self._order
        if len(word) >= _KEY:
            candidates = [
                *(
                    key
                    for text, key in self._prefixes.get(word[:_KEY], ())
                    if word.startswith(text)
                ),
                *(key for text, key in self._suffixes.get(word[-_KEY:], ()) if word.endswith(text)),
            ]
            for start in range(len(word) - _KEY + 1) if self._anywhere else ():
                candidates += [
                    key
                    for text, key in self._anywhere.get(word[start : start + _KEY], ())
                    if word.startswith(text, start)
                ]
            if candidates:
                key = min(candidates, key=order.__getitem__)
                best = (order[key], key)
        if len(self._seen) >= _SEEN_WORDS:
            self._seen.clear()
        self._seen[word] = best
        return best

    def prepare(self) -> None:
        """Nothing to compile: the tables are ready as entries are added."""
