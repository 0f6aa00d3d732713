"""Emoji used as sexual slang, read as the rules see them (``data/emoji.tsv``).

Normalisation drops emoji (they are no letters), so they are read here from the prompt as typed.
A strong emoji ("🍆💦") is sexual on its own; a weak one ("🍑") only beside a person or another
sexual cue: "🍑 pie recipe" and "🍆 at the market" pass, "girl 🍑💦" does not. Emoji that read as
a child (👧, 🧒) are words about minors, for the minors rule only.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from moderation.lists import Layer
from moderation.vocab import Emoji

# Presentation selectors and skin tones change how an emoji looks, not what it is.
# What may stand between two weak emoji that read together: nothing, a sign, one short word, one
# other emoji ("🍆 👄 💦").
_NEAR = re.compile(r"\s*(?:[+&x/>-]|\w{1,4}|[^\w\s]{1,3})?\s*")
# A weak emoji followed by the dish or fruit it is ("🍑 pie", "🍆 parmesan") is food.
_FOOD_AFTER = re.compile(
    r"\s*(?:pies?|cobblers?|jam|tarts?|smoothies?|crumbles?|cakes?|juice|salad|parmesan|parm|"
    r"parmigiana|curry|stew|soup|recipes?|orchards?|trees?|harvest|cherries|peach(?:es)?|"
    r"eggplants?|aubergines?|fruits?|vegetables?|emoji)\b",
    re.IGNORECASE,
)
# A sexual act named beside a weak emoji makes it a cue ("🍑 spanking", "🌮 spread").
SEXUAL_ACTS = re.compile(
    r"\b(?:spread|spreads|spreading|spank|spanks|spanked|spanking|lick|licks|licked|licking|"
    r"squirt|squirts|squirting|thrust|thrusting|pounding|moaning|fingering|grinding|twerking)\b"
)
# Slang emoji for a body part, then a word that bares it ("🍒🍒 out", "🍒 flash", "🐱 slip"): the
# part is bared. Not "out of" ("the 🐓 out of the coop"). Weak: a person must be named too.
_BARED_PARTS = {
    "🍒🍒": "breasts", "🍈🍈": "breasts", "🍒": "breasts", "🍈": "breasts", "🐓": "penis",
    "🍆": "penis", "🍑": "butt", "🌮": "vagina", "🐱": "vagina",
}  # fmt: skip
_BARING = (
    r"out\b(?!\s+of\b)|flash(?:es|ing)?|uncovered|exposed|showing|on show|on display|bared?|"
    r"slips?|falling out|popping out|spilling out|hanging out|spread|spreading"
)
# "Out" is the cat's own ("🐱 out in the garden"), and so is "🐱 pic": not for 🐱.
_FULLY = r"(?:(?:fully|all the way|completely|totally|all) )?"  # "🍈🍈 fully out"
_BARED = re.compile(
    rf"(🐱)\s*(?!out\b|hanging out)(?:{_BARING})\b"
    rf"|({'|'.join(part for part in _BARED_PARTS if part != '🐱')})\s*{_FULLY}(?:{_BARING})",
    re.IGNORECASE,
)
# A body-part emoji that is someone's ("her 🍑", "his big 🍆", "soaping her 🍒"): a body part,
# sexual with no other cue; "her 🐱" is her cat, "his 🍌" his banana.
_OWNED_PARTS = {
    "🍑": "butt", "🍆": "penis", "🍒": "breasts", "🍈": "breasts", "🌮": "vagina", "🐱": "vagina",
}  # fmt: skip
_OWNED = re.compile(
    r"\b(?:her|his|my|your|ur|their|hers|gf'?s|bf'?s|wife'?s|husband'?s|girlfriend'?s|"
    r"boyfriend'?s)\s+(?:[a-z]+\s+)?((?:" + "|".join(set(_OWNED_PARTS) - {"🐱"}) + r")+)"
    # "her 🐱" is her cat, but not inside or under a sexual act: "🥒 inside her 🐱".
    r"|\b(?:inside|into|in|lick(?:s|ing|ed)?|eat(?:s|ing)?|finger(?:s|ing|ed)?|spread(?:s|ing)?)"
    r"\s+(?:her|his|my|your|their)\s+(🐱)",
    re.IGNORECASE,
)
# A garment emoji crossed out or pointed down ("👙❌", "🚫👗", "👗⬇️", "👙➡️❌"): the garment off.
_GARMENT_NAMES = {
    "👙": "bikini", "🩲": "underwear", "🩱": "swimsuit", "👗": "dress", "👚": "top",
    "👖": "trousers", "👕": "shirt", "🩳": "shorts", "👘": "kimono", "🥻": "sari", "👔": "shirt",
}  # fmt: skip
_GARMENTS = "".join(_GARMENT_NAMES)
_UNDRESSED = re.compile(rf"([{_GARMENTS}])\s?(?:➡\s?)?[❌🚫⬇✂🗑]|[❌🚫]\s?([{_GARMENTS}])")
# A phallic emoji put where a sexual act puts it ("🥒 in her mouth", "doing 🍌 on him"): the act;
# into another emoji with no owner ("🍌 in the 🍩") only away from food and where the second is
# not a word's first half ("a 🍌 in the 🍑 tree", "🌭 in a 🌮, street food").
_PHALLIC_ACT = re.compile(
    r"([🥒🍌🌭🍆🥖])\s*(?:(?:in|inside|into|up) (?:her|his|my|your|their) "
    r"(?:mouth|throat|ass|butt|🍑|🐱|🌮|👄|🫦|🍩)|on (?:him|her|me|them)\b)",
    re.IGNORECASE,
)
_PHALLIC_INTO = re.compile(
    r"[🥒🍌🌭🍆🥖]\s*(?:in|inside|into|up) (?:the |a )?[🍩🍑🐱🌮👄🫦](?!\s*(?:tree|trees|orchard|"
    r"shop|stand|stall|window|smoothie|smoothies|pie|salad|bowl|basket|box|tray)\b)",
    re.IGNORECASE,
)
# Food named beside the pair: "🥒 in a 🌮, mexican food", "kids' lunchbox: 🍌 in a 🍑 smoothie".
_FOOD_WORDS = re.compile(
    r"\b(?:food|foods|recipe|dish|cooking|kitchen|restaurant|bakery|lunch|lunchbox|dinner|"
    r"breakfast|menu|snack|meal|market|grocery|cuisine|chef|taco|tacos|burrito|sandwich)\b",
    re.IGNORECASE,
)
# Emoji of grown people: with one, a weak emoji is beside a person ("👩 🍒 flash").
_GROWN = frozenset("👩👨🧑👱🧔👸🤴💃🕺👫👬👭💑💏👰🤵👵👴🧖🧍")
_DROPPED = {0xFE0E: None, 0xFE0F: None, **{code: None for code in range(0x1F3FB, 0x1F400)}}


@dataclass(frozen=True)
class EmojiFound:
    strong: tuple[Emoji, ...] = ()  # and body parts made someone's ("her 🍑")
    weak: tuple[Emoji, ...] = ()
    # Two different weak ones side by side or one short word apart ("🍑🍆", "🍆 in 🍑"): a cue
    # for each other; one repeated ("🍑🍑 peach orchard") is not.
    weak_together: bool = False
    minors: tuple[Emoji, ...] = ()  # 👧, 🧒: words about minors, for the minors rule
    person: bool = False  # an emoji of a grown person (👩, 🧔, 💃): a person for the weak ones
    # Read in their ordinary sense by a word beside them ("🔞 sign"): no cue, except that beside
    # a minor a strong one still counts (context is no excuse there).
    in_context: tuple[Emoji, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.strong or self.weak)

    def sexual(self, *, person: bool, other_cue: bool) -> tuple[Emoji, ...]:
        """The emoji that count as sexual in this prompt."""
        if self.strong or person or self.person or other_cue or self.weak_together:
            return self.strong + self.weak
        return ()


def find_emoji(prompt: str, table: tuple[Emoji, ...]) -> EmojiFound:
    """The listed emoji in a prompt, each sequence read once (the longest listed first)."""
    if prompt.isascii() or not table:
        return EmojiFound()
    text = prompt.translate(_DROPPED)
    present = set(text)
    candidates = [emoji for emoji in table if emoji.text[0] in present]
    framed = _framed(text)
    if not candidates and not framed:
        return EmojiFound()
    words = text.lower()
    strong: list[Emoji] = []
    weak: list[Emoji] = []
    minors: list[Emoji] = []
    in_context: list[Emoji] = []
    together = False
    last_end = -2
    last: Emoji | None = None
    i = 0
    while i < len(text):
        found = next((emoji for emoji in candidates if text.startswith(emoji.text, i)), None)
        if found is None:
            i += 1
            continue
        # An innocent sequence ("😅💦": sweat), a weak emoji before a food word ("🍑 pie": the
        # food it is) and one in its ordinary context ("🔞 sign at the liquor store", "girl
        # eating a 🍑") are no cue at all, unless the prompt makes it a body part.
        end = i + len(found.text)
        ordinary = found.context and not framed and _in_context(found.context, words, i, end)
        if found.minor:
            minors.append(found)
        elif ordinary:
            in_context.append(found)
        elif found.strong:
            strong.append(found)
        elif not found.innocent and not _FOOD_AFTER.match(text, i + len(found.text)):
            together = together or (
                last is not None and found != last and _NEAR.fullmatch(text[last_end:i]) is not None
            )
            weak.append(found)
            last, last_end = found, i + len(found.text)
        i += len(found.text)
    for kind, found_text, reading in framed:
        (strong if kind == "owned" else weak).append(Emoji(found_text, reading, strong=False))
    owned = "".join(emoji.text for emoji in strong)
    weak = [emoji for emoji in weak if emoji.text not in owned]  # "her 🍑" once, not twice
    return EmojiFound(
        tuple(dict.fromkeys(strong)),
        tuple(dict.fromkeys(weak)),
        together,
        tuple(dict.fromkeys(minors)),
        person=not present.isdisjoint(_GROWN),
        in_context=tuple(dict.fromkeys(in_context)),
    )


def _framed(text: str) -> list[tuple[str, str, str]]:
    """Emoji the prompt makes a body part or a garment taken off: (kind, as written, reading);
    kind "owned" ("her 🍑") counts on its own, the others ("🍒 out", "👙❌") beside a person."""
    out = [
        ("owned", owned.group(), " ".join(dict.fromkeys(_OWNED_PARTS[c] for c in parts)))
        for owned in _OWNED.finditer(text)
        for parts in [owned.group(1) or owned.group(2)]
        if not _FOOD_AFTER.match(text, owned.end())  # "his 🍆 parmigiana" is his dinner
    ]
    out += [("owned", act.group(), "sexual act") for act in _PHALLIC_ACT.finditer(text)]
    out += [
        ("owned", act.group(), "sexual act")
        for act in _PHALLIC_INTO.finditer(text)
        if not _FOOD_WORDS.search(text[max(0, act.start() - 30) : act.end() + 30])
    ]
    for bared in _BARED.finditer(text):
        part = bared.group(1) or bared.group(2)
        out.append(("bared", bared.group(), f"{_BARED_PARTS[part]} out"))
    for off in _UNDRESSED.finditer(text):
        out.append(("undressed", off.group(), f"no {_GARMENT_NAMES[off.group(1) or off.group(2)]}"))
    return out


_NEAR_WORDS = 8  # how many words (or emoji) either side of the emoji its context may stand


_NEAR_CHARS = 100  # and within this many characters (a run of emoji has no spaces)


@functools.cache
def _context_pattern(context: tuple[str, ...]) -> re.Pattern[str]:
    words = "|".join(re.escape(word) for word in context)
    return re.compile(rf"\b(?:{words})(?:s|es|ing|ed|er|ers|y|ies)?\b")


def _in_context(context: tuple[str, ...], text: str, start: int, end: int) -> bool:
    """Whether one of the words (or an inflection: s, es, ing, ed, er, y) stands within a few
    words of the emoji at text[start:end]."""
    before = text[max(0, start - _NEAR_CHARS) : start].split()[-_NEAR_WORDS:]
    after = text[end : end + _NEAR_CHARS].split()[:_NEAR_WORDS]
    return _context_pattern(context).search(" ".join(before + after)) is not None


def emoji_reason(emoji: Emoji) -> str:
    """Read back as a default-list term by ``moderation.reasons``."""
    return f"'{emoji.text} ({emoji.reading})' is not allowed ({Layer.DEFAULT})"
