"""Sexual words written with letters starred out: "c*m", "f**king", "p***y", "f_ck1ng".

The leetspeak reading cannot read a star (it stands for any letter), so a word with stars in it
is matched against the few sexual words people censor this way, a star for a letter; a match is
read as that word. Markdown's "*bold*" has no letter before its star and is left alone, and so
is "#" ("a C#m chord" is no "cum").
"""

from __future__ import annotations

import functools
import re

# The words people star out, with their common forms; each is on the block or profanity list.
WORDS = (
    "fuck", "fucks", "fucked", "fucking", "fucker", "cum", "cumming", "cumshot", "cock", "cocks",
    "dick", "dicks", "dickpic", "pussy", "pussies", "porn", "porno", "sex", "sexy", "nude",
    "nudes", "naked", "tits", "titties", "titty", "boobs", "boobies", "nipple", "nipples",
    "penis", "vagina", "whore", "slut", "sluts", "horny", "orgasm", "blowjob", "handjob",
    "hentai", "anal", "cunt", "clit", "dildo", "milf", "boob", "bitch", "twat", "jizz",
    "breast", "breasts", "topless", "nudity", "genitals", "erotic", "xxx",
)  # fmt: skip
# Possessive throughout: a run of stars can be split between repeats in 2**n ways, and a
# failing match would try them all ("a" + 30 stars + "1" took minutes).
# A letter may be a leetspeak digit ("f_ck1ng"), and an underscore a star.
_MASKED = re.compile(r"(?<![\w*])[^\W_]++(?:[*_]++[^\W_]*+)++(?![\w*])")
_LEET = str.maketrans("0134578", "oieastb")


@functools.lru_cache(maxsize=1024)
def _pattern(masked: str) -> re.Pattern[str]:
    """A star for a letter; one star may hide two where four letters or more are shown
    ("f*king"), not in a short word ("c*t" is no "clit")."""
    parts = re.split(r"([*_]+)", masked.casefold().translate(_LEET))
    stretch = sum(char.isalpha() for char in masked) >= 4
    return re.compile(
        "".join(
            (f"[a-z]{{{len(part)}}}" if len(part) > 1 or not stretch else "[a-z]{1,2}")
            if part and part[0] in "*_"
            else re.escape(part)
            for part in parts
        )
    )


def unmasked(prompt: str) -> str:
    """The prompt with each starred word that can only be a listed sexual word read as it
    ("c*m on her face" -> "cum on her face"); unchanged where there is none."""
    if "*" not in prompt and "_" not in prompt:
        return prompt

    def word(found: re.Match[str]) -> str:
        masked = found.group()
        if sum(char.isalnum() for char in masked) < 2 or masked.replace("_", "").isdigit():
            return masked
        pattern = _pattern(masked)
        return next((one for one in WORDS if pattern.fullmatch(one)), masked)

    return _MASKED.sub(word, prompt)
