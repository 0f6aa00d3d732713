"""Which corpus prompts an evaluation set also holds: the same prompt once normalised, one that
shares most of its word 4-grams (the same template with a word changed), or one that holds all
the other's words give or take two ("nude child" and "nude child, 8k"; a short prompt has too
few 4-grams for the first measure).

The classifier must never be trained on a prompt it is measured on. The corpus writers never
read the evaluation sets, yet short prompts ("nude child") are written alike by anyone; the
training run leaves such lines out, and ``tests/test_classifier.py`` asks the corpus files to be
free of them. Only the corpus side is ever named: the blind sets are not to be seen.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from moderation.normalise import normalise

SHINGLE = 4  # words
NEAR = 0.8  # Jaccard of the shingle sets at which two prompts count as one
EXTRA = 2  # words one prompt may add to all of the other's and still count as its copy
DATA = Path(__file__).resolve().parent / "data"


def shingles(text: str) -> frozenset[tuple[str, ...]]:
    words = text.split()
    if len(words) < SHINGLE:
        return frozenset({tuple(words)})
    return frozenset(tuple(words[i : i + SHINGLE]) for i in range(len(words) - SHINGLE + 1))


def evaluation_folders(data: Path = DATA) -> list[Path]:
    """Every folder of labelled prompts (``benign.tsv`` and ``blocked.tsv``)."""
    return sorted(
        folder
        for folder in data.iterdir()
        if (folder / "benign.tsv").is_file() and (folder / "blocked.tsv").is_file()
    )


def contains(small: frozenset[str], large: frozenset[str]) -> bool:
    """One prompt's words are all the other's, and the other adds at most ``EXTRA``."""
    return small <= large and len(large) - len(small) <= EXTRA


def clashes(corpus: list[str], others: Iterable[str]) -> list[tuple[int, float]]:
    """(index into ``corpus``, overlap) for each corpus prompt one of ``others`` matches; the
    overlap is the shingle Jaccard, or 1.0 for a copy by words."""
    texts = [normalise(prompt) for prompt in corpus]
    sets = [shingles(text) for text in texts]
    words = [frozenset(text.split()) for text in texts]
    by_shingle: dict[tuple[str, ...], set[int]] = defaultdict(set)
    by_word: dict[str, set[int]] = defaultdict(set)
    for number, found in enumerate(sets):
        for shingle in found:
            by_shingle[shingle].add(number)
        for word in words[number]:
            by_word[word].add(number)
    out: list[tuple[int, float]] = []
    for prompt in others:
        text = normalise(prompt)
        mine = shingles(text)
        my_words = frozenset(text.split())
        candidates = set().union(*(by_shingle.get(shingle, set()) for shingle in mine))
        # A copy by words holds at least one of any EXTRA + 1 of my words: take the rarest.
        rarest = sorted(my_words, key=lambda word: len(by_word.get(word, ())))[: EXTRA + 1]
        by_words = set().union(*(by_word.get(word, set()) for word in rarest))
        for number in sorted(candidates | by_words):
            overlap = len(mine & sets[number]) / len(mine | sets[number])
            theirs = words[number]
            if contains(my_words, theirs) or contains(theirs, my_words):
                out.append((number, 1.0))
            elif texts[number] == text or overlap >= NEAR:
                out.append((number, overlap))
    return out


def evaluation_prompts(folder: Path) -> list[str]:
    """The prompts of one set, read without the evaluation module (which needs the rules)."""
    prompts = []
    for name in ("benign.tsv", "blocked.tsv"):
        for line in (folder / name).read_text(encoding="utf-8").splitlines():
            fields = line.split("\t")
            if line.strip() and not line.startswith("#") and len(fields) >= 2:
                prompts.append(fields[1])
    return prompts
