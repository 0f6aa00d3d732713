"""Spelling tricks applied to corpus prompts, so the classifier learns to read through them.

Each trick is what someone evading the rules types: leetspeak, look-alike letters from other
scripts, fullwidth letters, zero-width characters, spaces or dots inside words, words glued
together, accents dropped, random case, typos. Benign prompts get the same tricks as the ones to
refuse, or the classifier would learn that a trick itself is a sign. Everything is drawn from a
``random.Random`` the caller seeds, so a corpus always augments the same way.
"""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Callable

_LEET = {"a": "4@", "e": "3", "i": "1!", "o": "0", "s": "5$", "t": "7", "b": "8", "g": "9"}
_LOOKALIKE = {
    "a": "а", "c": "с", "e": "е", "i": "і", "o": "о", "p": "р", "x": "х", "y": "у", "s": "ѕ",
    "h": "һ", "j": "ј",
}  # fmt: skip
_INVISIBLE = ("\u200b", "\u200c", "\u200d", "\u2060", "\u00ad")
_SEPARATORS = (" ", ".", "-", "_", "*", " . ")


def _pick_words(words: list[str], rng: random.Random) -> set[int]:
    """Which words a trick touches: one to three of those with letters, or all of them."""
    candidates = [i for i, word in enumerate(words) if any(c.isalpha() for c in word)]
    if not candidates:
        return set()
    if rng.random() < 0.3:
        return set(candidates)
    return set(rng.sample(candidates, min(len(candidates), rng.randint(1, 3))))


def _per_word(change: Callable[[str, random.Random], str]) -> Callable[[str, random.Random], str]:
    def apply(prompt: str, rng: random.Random) -> str:
        words = prompt.split(" ")
        chosen = _pick_words(words, rng)
        return " ".join(change(w, rng) if i in chosen else w for i, w in enumerate(words))

    return apply


def _leet(word: str, rng: random.Random) -> str:
    return "".join(
        rng.choice(_LEET[c.lower()]) if c.lower() in _LEET and rng.random() < 0.7 else c
        for c in word
    )


def _lookalike(word: str, rng: random.Random) -> str:
    return "".join(_LOOKALIKE[c] if c in _LOOKALIKE and rng.random() < 0.6 else c for c in word)


def _fullwidth(word: str, rng: random.Random) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in word)


def _zero_width(word: str, rng: random.Random) -> str:
    mark = rng.choice(_INVISIBLE)
    return mark.join(word) if rng.random() < 0.5 else _insert(word, mark, rng)


def _insert(word: str, mark: str, rng: random.Random) -> str:
    if len(word) < 2:
        return word
    cut = rng.randint(1, len(word) - 1)
    return word[:cut] + mark + word[cut:]


def _spaced(word: str, rng: random.Random) -> str:
    separator = rng.choice(_SEPARATORS)
    if rng.random() < 0.5 or len(word) < 4:
        return separator.join(word)
    return _insert(word, separator, rng)


def _typo(word: str, rng: random.Random) -> str:
    if len(word) < 4:
        return word
    i = rng.randint(1, len(word) - 2)
    kind = rng.randrange(4)
    if kind == 0:  # swap two letters
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if kind == 1:  # drop one
        return word[:i] + word[i + 1 :]
    if kind == 2:  # double one, or stretch it
        return word[:i] + word[i] * rng.choice((2, 4)) + word[i + 1 :]
    vowels = "aeiouy"
    if word[i] in vowels:
        return word[:i] + rng.choice(vowels.replace(word[i], "")) + word[i + 1 :]
    return word


def _random_case(word: str, rng: random.Random) -> str:
    return "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in word)


def _glued(prompt: str, rng: random.Random) -> str:
    words = prompt.split(" ")
    if len(words) < 2:
        return prompt
    start = rng.randrange(len(words) - 1)
    end = min(len(words), start + rng.randint(2, 3))
    return " ".join([*words[:start], "".join(words[start:end]), *words[end:]])


def _no_accents(prompt: str, rng: random.Random) -> str:
    decomposed = unicodedata.normalize("NFD", prompt)
    stripped = "".join(c for c in decomposed if unicodedata.category(c) != "Mn")
    return unicodedata.normalize("NFC", stripped)


# Tags people add to any prompt. Added alike to every label, they stop the classifier from
# reading "photorealistic" as a sign of gore because the gore lines happen to say it more.
_STYLE_TAGS = (
    "photorealistic", "realistic photo", "hyperrealistic", "8k", "4k", "uhd", "highly detailed",
    "masterpiece", "best quality", "cinematic lighting", "dramatic lighting", "soft light",
    "studio lighting", "35mm", "dslr", "canon eos", "bokeh", "sharp focus", "oil painting",
    "digital art", "concept art", "artstation", "trending on artstation", "octane render",
    "unreal engine", "anime style", "watercolor", "illustration", "portrait", "full body",
    "close-up", "wide shot", "dark fantasy", "grimdark", "moody", "vibrant colors", "film grain",
    "by greg rutkowski", "detailed face", "volumetric light", "night", "golden hour",
)  # fmt: skip


def _style(prompt: str, rng: random.Random) -> str:
    tags = rng.sample(_STYLE_TAGS, rng.randint(1, 4))
    if rng.random() < 0.8:
        return ", ".join([prompt, *tags])
    return ", ".join([*tags, prompt])


def _upper(prompt: str, rng: random.Random) -> str:
    return prompt.upper()


TRICKS: dict[str, Callable[[str, random.Random], str]] = {
    "leet": _per_word(_leet),
    "lookalike": _per_word(_lookalike),
    "fullwidth": _per_word(_fullwidth),
    "zero_width": _per_word(_zero_width),
    "spaced": _per_word(_spaced),
    "glued": _glued,
    "no_accents": _no_accents,
    "random_case": _per_word(_random_case),
    "upper": _upper,
    "typo": _per_word(_typo),
    "style": _style,
}
_NAMES = tuple(TRICKS)
# Tricks that the normalisation already undoes are drawn less often than those it cannot.
_ODDS = {name: 1.0 for name in _NAMES} | {
    "leet": 3.0,
    "spaced": 2.0,
    "glued": 2.0,
    "typo": 3.0,
    "style": 4.0,
}


def augment(prompt: str, copies: int, rng: random.Random) -> list[str]:
    """``copies`` variants of a prompt, each with one or two tricks, none equal to the prompt."""
    out: list[str] = []
    weights = [_ODDS[name] for name in _NAMES]
    for _ in range(copies * 3):
        if len(out) == copies:
            break
        names = rng.choices(_NAMES, weights=weights, k=rng.choice((1, 1, 2)))
        variant = prompt
        for name in names:
            variant = TRICKS[name](variant, rng)
        if variant != prompt and variant not in out:
            out.append(variant)
    return out
