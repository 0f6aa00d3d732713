"""Ages under 18 written in any covered language: "12 años", "12 лет", "12歳", "12살", "十二歳",
and with the number in words where a language file lists them ("doce años").

The units come from the language files' ``[age_units]`` sections; a number under 18 before or
after one counts as a word about minors. The English forms ("12 year old", "13yo", "aged 12")
are ``moderation.prompts``' own.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from moderation.normalise import hangul, normalise, spaceless

_NUMBER = r"(?<![\d.])(?:1[0-7]|[1-9])(?!\d)"
_HAN_DIGITS = "一二三四五六七八九"
_HAN_NUMBER = rf"(?<![{_HAN_DIGITS}十百千])(?:十[一二三四五六七]?|[{_HAN_DIGITS}])(?![十百千])"


def age_pattern(units: Iterable[str], numbers: Iterable[str] = ()) -> re.Pattern[str] | None:
    """One pattern over the plain reading, or None without units. ``numbers`` are words for
    1 to 17 in the languages ("doce", "двенадцать"): one of them before a unit counts too."""
    spaced: list[str] = []
    glued: list[str] = []  # "12歳の", "12살이", "十二歳": no space, no word end needed
    for written in dict.fromkeys(units):
        unit = normalise(written)
        if unit:
            (glued if spaceless(unit) or hangul(unit) else spaced).append(re.escape(unit))
    words = sorted({re.escape(word) for word in map(normalise, numbers) if word}, key=len)
    number = rf"(?:{_NUMBER}|(?<!\w)(?:{'|'.join(reversed(words))}))" if words else _NUMBER
    shapes = []
    if spaced:
        either = "|".join(sorted(spaced, key=len, reverse=True))
        shapes += [rf"{number} ?(?:{either})(?!\w)", rf"(?<!\w)(?:{either}) ?{_NUMBER}"]
    if glued:
        either = "|".join(sorted(glued, key=len, reverse=True))
        shapes.append(rf"(?:{_NUMBER}|{_HAN_NUMBER}) ?(?:{either})")
    return re.compile("|".join(shapes)) if shapes else None
