"""Emoji used as sexual slang, read as the rules see them (``data/emoji.tsv``).

Normalisation drops emoji (they are no letters), so they are read here from the prompt as typed.
A strong emoji ("🍆💦") is sexual on its own; a weak one ("🍑") only beside a person or another
sexual cue: "🍑 pie recipe" and "🍆 at the market" pass, "girl 🍑💦" does not. Emoji that read as
a child (👧, 🧒) are words about minors, for the minors rule only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from moderation.lists import Layer
from moderation.vocab import Emoji

# Presentation selectors and skin tones change how an emoji looks, not what it is.
# What may stand between two weak emoji that read together: nothing, a sign, one short word.
_NEAR = re.compile(r"\s*(?:[+&x/>-]|\w{1,4}|➡)?\s*")
# A weak emoji followed by the dish or fruit it is ("🍑 pie", "🍆 parmesan") is food.
_FOOD_AFTER = re.compile(
    r"\s*(?:pies?|cobblers?|jam|tarts?|smoothies?|crumbles?|cakes?|juice|salad|parmesan|"
    r"parmigiana|curry|stew|soup|recipes?|orchards?|trees?|harvest|cherries|peach(?:es)?|"
    r"eggplants?|aubergines?|fruits?|vegetables?|emoji)\b",
    re.IGNORECASE,
)
# A sexual act named beside a weak emoji makes it a cue ("🍑 spanking", "🌮 spread").
SEXUAL_ACTS = re.compile(
    r"\b(?:spread|spreads|spreading|spank|spanks|spanked|spanking|lick|licks|licked|licking|"
    r"squirt|squirts|squirting|thrust|thrusting|pounding|moaning|fingering|grinding|twerking)\b"
)
# Slang emoji for a body part, then "out" ("🍒🍒 out", "🐓 out"): the part is bared. Not "out
# of" ("the 🐓 out of the coop"). Weak: a person must be named too.
_BARED_PARTS = {"🍒🍒": "breasts", "🍈🍈": "breasts", "🐓": "penis", "🍆": "penis"}
_BARED = re.compile(rf"({'|'.join(_BARED_PARTS)})\s*out\b(?!\s+of\b)", re.IGNORECASE)
_DROPPED = {0xFE0E: None, 0xFE0F: None, **{code: None for code in range(0x1F3FB, 0x1F400)}}


@dataclass(frozen=True)
class EmojiFound:
    strong: tuple[Emoji, ...] = ()
    weak: tuple[Emoji, ...] = ()
    # Two different weak ones side by side or one short word apart ("🍑🍆", "🍆 in 🍑"): a cue
    # for each other; one repeated ("🍑🍑 peach orchard") is not.
    weak_together: bool = False
    minors: tuple[Emoji, ...] = ()  # 👧, 🧒: words about minors, for the minors rule

    def __bool__(self) -> bool:
        return bool(self.strong or self.weak)

    def sexual(self, *, person: bool, other_cue: bool) -> tuple[Emoji, ...]:
        """The emoji that count as sexual in this prompt."""
        if self.strong or person or other_cue or self.weak_together:
            return self.strong + self.weak
        return ()


def find_emoji(prompt: str, table: tuple[Emoji, ...]) -> EmojiFound:
    """The listed emoji in a prompt, each sequence read once (the longest listed first)."""
    if prompt.isascii() or not table:
        return EmojiFound()
    text = prompt.translate(_DROPPED)
    present = set(text)
    candidates = [emoji for emoji in table if emoji.text[0] in present]
    if not candidates and _BARED.search(text) is None:
        return EmojiFound()
    strong: list[Emoji] = []
    weak: list[Emoji] = []
    minors: list[Emoji] = []
    together = False
    last_end = -2
    last: Emoji | None = None
    i = 0
    while i < len(text):
        found = next((emoji for emoji in candidates if text.startswith(emoji.text, i)), None)
        if found is None:
            i += 1
            continue
        # An innocent sequence ("😅💦": sweat) and a weak emoji before a food word ("🍑 pie":
        # the food it is) are no cue at all.
        if found.minor:
            minors.append(found)
        elif found.strong:
            strong.append(found)
        elif not found.innocent and not _FOOD_AFTER.match(text, i + len(found.text)):
            together = together or (
                last is not None and found != last and _NEAR.fullmatch(text[last_end:i]) is not None
            )
            weak.append(found)
            last, last_end = found, i + len(found.text)
        i += len(found.text)
    weak += [
        Emoji(bared.group(), f"{_BARED_PARTS[bared.group(1)]} out", strong=False)
        for bared in _BARED.finditer(text)
    ]
    return EmojiFound(
        tuple(dict.fromkeys(strong)),
        tuple(dict.fromkeys(weak)),
        together,
        tuple(dict.fromkeys(minors)),
    )


def emoji_reason(emoji: Emoji) -> str:
    """Read back as a default-list term by ``moderation.reasons``."""
    return f"'{emoji.text} ({emoji.reading})' is not allowed ({Layer.DEFAULT})"
