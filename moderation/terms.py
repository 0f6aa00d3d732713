"""Terms and patterns: how a list entry is written, validated and matched against a view.

A term is one or more words, matched whole after normalisation (``moderation.normalise``), with
its plural forms ("nude" also matches "nudes"). A ``*`` at either end widens a one-word term:
``porn*`` matches words that start with "porn", ``*porn`` words that end with it, ``*porn*``
words that contain it. A pattern is a regular expression matched against the normalised views,
time-bounded, so that no pattern can stall the bot.

Terms in scripts written without spaces (Chinese, Japanese, Thai) match anywhere inside the text
("裸" in "裸の女"); Korean ones at the start of a word, whatever particle follows ("소녀" in
"소녀가"). Such a term does not match inside a longer innocent word that holds it (an index's
``innocent`` words: "中出" in "中出现", to appear; "성기" in "성기사", paladin).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

import regex

from moderation.errors import InvalidTerm as InvalidTerm  # raised here; defined with its family
from moderation.normalise import hangul, normalise, spaceless
from moderation.spans import SpanMatcher, word_forms

T = TypeVar("T")

MAX_TERM_CHARS = 100
MAX_PATTERN_CHARS = 200
# A counted repeat compiles into one copy of its item per count (a{5000000}: 15 s, 1.5 GB), and
# nested counts multiply. No prompt is longer than 1000 characters by default, so no useful
# pattern repeats more often; 10000 expanded items compile in about 15 ms.
MAX_REPEAT = 1000
MAX_EXPANDED = 10_000
PROBE_TIMEOUT_S = 0.1
# One check reads the same few readings with each index several times; the last ones found are
# kept (a bounded number, so a stream of prompts cannot grow it).
FIND_CACHE_SIZE = 64
# Stretches of the scripts whose terms match inside words (``moderation.normalise``): their
# letters with the spaces between them, and the word they start and end in ("18禁", "a片").
_INSIDE_LETTER = (
    "[\u0e00-\u0e7f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
    "\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]"
)
_INSIDE_RUN = re.compile(rf"{_INSIDE_LETTER}+(?:\s+{_INSIDE_LETTER}+)*")
# Texts that make backtracking patterns run away: long runs of one letter or word, then a miss.
_PROBES = tuple(
    probe + end
    for probe in ("a" * 1000, "ab" * 500, "a " * 500, "x" * 1000, "aaa bbb " * 125)
    for end in ("", "!")
)


_BRACES = re.compile(r"\{([^{}]*)\}")
_COUNT = re.compile(r"\s*\d*\s*(?:,\s*\d*\s*)?")
_GROUP_OPENING = re.compile(r"\?(?:P?<[A-Za-z_]\w*>|<[=!]|[A-Za-z^-]*[:=!>|]?)")


class TermShape(enum.StrEnum):
    WORD = "word"
    PHRASE = "phrase"
    PREFIX = "prefix"
    SUFFIX = "suffix"
    ANYWHERE = "anywhere"

    @property
    def is_wildcard(self) -> bool:
        return self in (TermShape.PREFIX, TermShape.SUFFIX, TermShape.ANYWHERE)


@dataclass(frozen=True)
class Term:
    text: str  # normalised, without the stars
    shape: TermShape

    def __str__(self) -> str:
        star_before = self.shape in (TermShape.SUFFIX, TermShape.ANYWHERE)
        star_after = self.shape in (TermShape.PREFIX, TermShape.ANYWHERE)
        return f"{'*' if star_before else ''}{self.text}{'*' if star_after else ''}"


def parse_term(written: str) -> Term:
    """A list entry as written by a person; raises InvalidTerm with the reason."""
    raw = written.strip()
    if not raw:
        raise InvalidTerm("a term must not be empty")
    if len(raw) > MAX_TERM_CHARS:
        raise InvalidTerm(f"a term must be at most {MAX_TERM_CHARS} characters, got {len(raw)}")
    star_before, star_after = raw.startswith("*"), raw.endswith("*") and len(raw) > 1
    text = normalise(raw.strip("*"))
    if not text:
        raise InvalidTerm(f"the term {written!r} has no letters or digits")
    if "*" in raw.strip("*"):
        raise InvalidTerm(f"in {written!r}, '*' may only stand at the start or the end")
    if " " in text:
        if star_before or star_after:
            raise InvalidTerm(f"{written!r}: '*' works on one-word terms only")
        return Term(text, TermShape.PHRASE)
    if star_before and star_after:
        shape = TermShape.ANYWHERE
    elif star_before:
        shape = TermShape.SUFFIX
    elif star_after:
        shape = TermShape.PREFIX
    else:
        shape = TermShape.WORD
    if shape is not TermShape.WORD and len(text) < 3:
        raise InvalidTerm(f"{written!r}: a term with '*' needs at least 3 letters")
    return Term(text, shape)


def _class_end(text: str, start: int) -> int:
    """The index after the character class opening at ``start`` (nested sets too: [[a-z]--[q]])."""
    depth, i = 0, start
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
        elif char == "[":
            depth, i = depth + 1, i + 1
            i += text.startswith("^", i)
            i += text.startswith("]", i)  # a ']' first in a set is the character itself
        elif char == "]":
            depth, i = depth - 1, i + 1
            if depth == 0:
                return i
        else:
            i += 1
    return len(text)


def check_pattern_size(written: str) -> None:
    """Refuses a pattern whose counted repeats would make it slow or huge to compile, by
    reading it (never compiling it): every count at most MAX_REPEAT, and the pattern expanded
    by its counts (nested ones multiply) at most MAX_EXPANDED items. It errs on the side of
    refusing: a literal "{2000}" counts as a repeat too."""
    # One frame per open group: [weight of its finished items, weight of its last item].
    frames = [[0, 0]]

    def item(weight: int) -> None:
        frames[-1][0] += frames[-1][1]
        frames[-1][1] = weight

    i = 0
    while i < len(written):
        char = written[i]
        if char == "\\":  # an escape; \p{L}, \N{…}, \x{…} carry their own braces
            end = i + 2
            if written.startswith("{", end) and written[i + 1 : end].isalpha():
                close = written.find("}", end)
                end = len(written) if close < 0 else close + 1
            item(1)
            i = end
        elif char == "[":
            item(1)
            i = _class_end(written, i)
        elif char == "(" and written.startswith("(?#", i):
            close = written.find(")", i)
            i = len(written) if close < 0 else close + 1
        elif char == "(":
            frames.append([0, 0])
            i += 1
            if opening := _GROUP_OPENING.match(written, i):  # (?:, (?i:, (?P<name>, (?<=, …
                i = opening.end()
        elif char == ")" and len(frames) > 1:
            finished, last = frames.pop()
            item(finished + last)
            i += 1
        elif char == "{" and (braces := _BRACES.match(written, i)):
            counts = [int(number) for number in re.findall(r"\d+", braces.group(1))]
            if counts and max(counts) > MAX_REPEAT:
                raise InvalidTerm(
                    f"the pattern {written!r} repeats {max(counts)} times; a count may be at "
                    f"most {MAX_REPEAT} (no prompt is longer)"
                )
            if counts and _COUNT.fullmatch(braces.group(1)):  # not a fuzzy {e<=2}
                frames[-1][1] *= max(max(counts), 1)
                if frames[-1][1] > MAX_EXPANDED:
                    raise InvalidTerm(
                        f"the pattern {written!r} expands to over {MAX_EXPANDED} items (nested "
                        f"counts multiply: {{10}} inside {{100}} is 1000); write it with "
                        "smaller counts"
                    )
            i = braces.end()
        else:
            item(1)
            i += 1
    while len(frames) > 1:  # an unclosed group: the compiler refuses it, count it all the same
        finished, last = frames.pop()
        item(finished + last)
    if sum(frames[0]) > MAX_EXPANDED:
        raise InvalidTerm(
            f"the pattern {written!r} expands to over {MAX_EXPANDED} items (its counted "
            "repeats add up); write it with smaller counts"
        )


def compile_pattern(written: str, *, probe: bool = True) -> regex.Pattern[str]:
    """A regular expression entry, checked so that it can neither fail nor run away.

    Its size is checked before it is compiled, so a pattern stored before the limits existed
    is refused here too rather than compiled for minutes.
    """
    if not written.strip():
        raise InvalidTerm("a pattern must not be empty")
    if len(written) > MAX_PATTERN_CHARS:
        raise InvalidTerm(
            f"a pattern must be at most {MAX_PATTERN_CHARS} characters, got {len(written)}"
        )
    check_pattern_size(written)
    try:
        pattern = regex.compile(written, regex.IGNORECASE | regex.VERSION1)
    except (regex.error, ValueError) as error:  # (?V0) against VERSION1 is a ValueError
        raise InvalidTerm(
            f"the pattern {written!r} is not a valid regular expression: {error}"
        ) from None
    if pattern.search("") is not None:
        raise InvalidTerm(f"the pattern {written!r} matches empty text, so it would match anything")
    for text in _PROBES if probe else ():
        try:
            pattern.search(text, timeout=PROBE_TIMEOUT_S)
        except TimeoutError:
            raise InvalidTerm(
                f"the pattern {written!r} can take too long on some prompts (nested repeats "
                "such as (a+)+ backtrack); write it without repeating a repeat"
            ) from None
    return pattern


def _inside_windows(view: str) -> list[tuple[int, int]]:
    """Where terms matched inside words can be: each stretch of those scripts' letters (with the
    spaces between them), widened to the words it starts and ends in."""
    windows: list[tuple[int, int]] = []
    for run in _INSIDE_RUN.finditer(view):
        start = view.rfind(" ", 0, run.start()) + 1
        end = view.find(" ", run.end())
        end = len(view) if end < 0 else end
        if windows and start <= windows[-1][1]:
            start = windows.pop()[0]
        windows.append((start, end))
    return windows


class TermIndex(Generic[T]):
    """Terms, each with a value (who listed it and why), found in normalised views."""

    def __init__(
        self, entries: Iterable[tuple[Term, T]] = (), innocent: Iterable[str] = ()
    ) -> None:
        self._words: dict[str, tuple[Term, T]] = {}
        self._spans: dict[str, tuple[Term, T]] = {}  # phrase, prefix, suffix, anywhere
        self._matcher = SpanMatcher()
        self._inside: dict[str, tuple[Term, T]] = {}  # Chinese, Japanese, Thai, Korean terms
        self._inside_pattern: re.Pattern[str] | None = None
        self._entries: list[tuple[Term, T]] = []
        self.innocent: frozenset[str] = frozenset()
        self._innocent_pattern: re.Pattern[str] | None = None
        self._cache: dict[str, list[tuple[Term, T, str]]] = {}
        for term, value in entries:
            self.add(term, value)
        self.add_innocent(innocent)

    def add_innocent(self, words: Iterable[str]) -> None:
        """Longer words (normalised) inside which a term of a script without spaces does not
        match: "中出现" (to appear) holds "中出"."""
        self.innocent |= frozenset(word for word in words if word)
        self._innocent_pattern = None
        self._cache.clear()

    def add(self, term: Term, value: T) -> None:
        self._entries.append((term, value))
        self._cache.clear()
        if spaceless(term.text) or hangul(term.text):
            self._inside.setdefault(term.text, (term, value))
            self._inside_pattern = None
        elif term.shape is TermShape.WORD:
            for form in word_forms(term.text):
                self._words.setdefault(form, (term, value))
        else:
            key = f"{term.shape}:{term.text}"
            self._spans.setdefault(key, (term, value))
            self._matcher.add(key, term.shape, term.text)

    def __iter__(self) -> Iterator[tuple[Term, T]]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def prepare(self) -> None:
        """Compiles the index now (in the thread that builds it), not at its first use."""
        self._inside_found()
        self._matcher.prepare()

    def _inside_found(self) -> re.Pattern[str] | None:
        """One pattern for the terms matched inside words, the longest first."""
        if self._inside_pattern is None and self._inside:
            texts = sorted(self._inside, key=len, reverse=True)
            self._inside_pattern = re.compile(
                "|".join(
                    ("" if spaceless(text) else "(?<![^ ])") + re.escape(text) for text in texts
                )
            )
        if self._innocent_pattern is None and self.innocent:
            texts = sorted(self.innocent, key=len, reverse=True)
            self._innocent_pattern = re.compile("|".join(map(re.escape, texts)))
        return self._inside_pattern

    def _inside_matches(self, view: str) -> list[re.Match[str]]:
        """The matches of the terms found inside words, less those inside an innocent word."""
        inside = self._inside_found()
        if inside is None or view.isascii():
            return []
        # Only the runs of those scripts are searched: the one pattern of several hundred terms
        # costs time at every character it is tried at.
        matches = [
            match
            for start, end in _inside_windows(view)
            for match in inside.finditer(view, start, end)
        ]
        if matches and self._innocent_pattern is not None:
            covered = [match.span() for match in self._innocent_pattern.finditer(view)]
            matches = [
                match
                for match in matches
                if not any(start <= match.start() and match.end() <= end for start, end in covered)
            ]
        return matches

    def find(self, view: str) -> list[tuple[Term, T, str]]:
        """(term, value, the words it matched) for the entries found in one view."""
        cached = self._cache.get(view)
        if cached is None:
            cached = self._find(view)
            if len(self._cache) >= FIND_CACHE_SIZE:
                self._cache.clear()
            self._cache[view] = cached
        return list(cached)

    def _find(self, view: str) -> list[tuple[Term, T, str]]:
        words = view.split()
        found = [(*self._words[word], word) for word in words if word in self._words]
        if self._matcher:
            for start, end, key in self._matcher.matches(words):
                term, value = self._spans[key]
                found.append((term, value, " ".join(words[start:end])))
        found += [
            (*self._inside[match.group()], match.group()) for match in self._inside_matches(view)
        ]
        return found

    def remove_from(self, view: str, unless: Callable[[T], bool] | None = None) -> str:
        """The view with entries' words taken out (an allow list at work), except for entries
        whose value ``unless`` says to keep."""

        def kept(entry: tuple[Term, T]) -> bool:
            return unless is not None and unless(entry[1])

        words = [
            "_" if word in self._words and not kept(self._words[word]) else word
            for word in view.split()
        ]
        if self._matcher:
            out: list[str] = []
            done = 0
            for start, end, key in self._matcher.matches(words):
                out += words[done:start]
                out += words[start:end] if kept(self._spans[key]) else ["_"]
                done = end
            words = out + words[done:]
        text = " ".join(words)
        for match in reversed(self._inside_matches(text)):
            if not kept(self._inside[match.group()]):
                text = text[: match.start()] + "_" + text[match.end() :]
        return text
