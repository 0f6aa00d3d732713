"""Sexual words glued into a long token: "hotnakedgirl", "realisticboobsout", "sexyporn".

A few sexual words of five letters or more that no ordinary English word hides are looked for
inside long tokens of Latin letters; a token that holds one of the listed benign compounds
("breaststroke", "bukkakeudon") is left alone.
"""

from __future__ import annotations

import re

# Sexual words found inside glued tokens: long enough and rare enough inside English words.
GLUED_TERMS = (
    "naked", "nudes", "nudity", "topless", "boobs", "boobies", "breasts", "titties", "titty",
    "nipples", "pussy", "penis", "vagina", "dildo", "porn", "hentai", "nsfw", "orgasm",
    "blowjob", "handjob", "cumshot", "creampie", "bukkake", "gangbang", "threesome",
    "striptease", "stripper", "upskirt", "masturbat", "fellatio", "deepthroat", "onlyfans",
    "undressed", "unclothed", "erotic", "bondage", "hentai", "lingerie", "sexscene", "sextape",
    # Naked in other languages written with Latin letters; not German or Dutch, whose compounds
    # name slugs and mole-rats ("Nacktschnecke", "naaktslak").
    "desnud", "telanjang", "ciplak", "hubad", "barebreast",
    # Clothing said to be absent, glued ("girlwithnoclothes").
    "noclothes", "noclothing", "withoutclothes", "nopanties", "nounderwear",
)  # fmt: skip
# Ordinary compounds and names that hold one of those words.
BENIGN_COMPOUNDS = (
    "nakedeye", "nakedmole", "nakedneck", "breaststroke", "breastplate", "redbreast",
    "pussycat", "pussywillow", "pussyfoot", "penistone", "bukkakeudon", "wirestripper",
    "paintstripper", "wallpaperstripper", "nuder", "denude", "nudel", "lingeriestore",
    "peniscola", "pussytoes", "tittybong", "nudeshoe", "nudeshade", "sporn",
)  # fmt: skip
_GLUED = re.compile("|".join(sorted(set(GLUED_TERMS), key=len, reverse=True)))
_LONG_TOKEN = re.compile(r"\b[a-z]{8,}\b")


# Words about minors looked for in a token that holds a glued sexual word ("nakedschoolgirl").
_GLUED_MINORS = re.compile(r"school(?:girl|boy)|child|teen|loli|shota|underage|toddler|preteen")


def glued_minor(readings: tuple[str, ...]) -> bool:
    """Whether a long token holds both a glued sexual word and a word about minors."""
    return any(
        _GLUED.search(token) and _GLUED_MINORS.search(token)
        for reading in readings[:2]
        for token in _LONG_TOKEN.findall(reading)
    )


def glued(readings: tuple[str, ...]) -> str | None:
    """A listed sexual word inside a long glued token ("hotnakedgirl" -> "naked"), in the plain
    and leet readings (the glued reading joins hyphenated words: "nude-colored")."""
    for reading in readings[:2]:
        for token in _LONG_TOKEN.findall(reading):
            found = _GLUED.search(token)
            if found is None or len(found.group()) == len(token):
                continue
            if any(benign in token for benign in BENIGN_COMPOUNDS):
                continue
            return found.group()
    return None
