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


# Words for the tens: a number word after one is part of an adult's age ("vingt-deux ans" is 22,
# "treinta y tres años", "yirmi iki yaşında", "dua puluh dua tahun", "двадцать два года").
_TEN_WORDS = (
    "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety", "vingt",
    "trente", "quarante", "cinquante", "soixante", "septante", "octante", "huitante", "nonante",
    "veinte", "treinta", "cuarenta", "cincuenta", "sesenta", "setenta", "ochenta", "noventa",
    "vinte", "trinta", "quarenta", "cinquenta", "sessenta", "oitenta", "yirmi", "otuz", "kırk",
    "elli", "altmış", "yetmiş", "seksen", "doksan", "puluh", "dwadzieścia", "trzydzieści",
    "czterdzieści", "pięćdziesiąt", "sześćdziesiąt", "siedemdziesiąt", "osiemdziesiąt",
    "dziewięćdziesiąt", "mươi", "двадцать", "тридцать", "сорок", "пятьдесят", "шестьдесят",
    "семьдесят", "восемьдесят", "девяносто", "двадцати", "тридцати", "сорока", "пятидесяти",
    "двадцять", "тридцять", "п'ятдесят", "шістдесят", "сімдесят", "вісімдесят", "дев'яносто",
    "είκοσι", "τριάντα", "σαράντα", "πενήντα", "εξήντα", "εβδομήντα", "ογδόντα", "ενενήντα",
    "dvadeset", "trideset", "četrdeset", "pedeset", "šezdeset", "dvacet", "třicet", "čtyřicet",
    "padesát", "dvadsať", "tridsať", "štyridsať", "päťdesiat", "douăzeci", "treizeci",
    "patruzeci", "cincizeci", "tjugo", "trettio", "fyrtio", "femtio", "tyve", "tredive", "fyrre",
    "tjue", "tretti", "førti", "kaksikymmentä", "kolmekymmentä", "neljäkymmentä", "viisikymmentä",
    "ishirini", "thelathini", "arobaini", "hamsini", "dalawampu", "tatlumpu", "apatnapu",
    "limampu",
)  # fmt: skip
_TENS = tuple(normalise(word) for word in _TEN_WORDS)
_ADULT_BEFORE = re.compile(
    rf"(?:^|[\s-])(?:{'|'.join(sorted(map(re.escape, _TENS), key=len, reverse=True))})"
    r"(?:[\s-]+(?:y|e|et|i|и|і|ve|na|and|och|og|a|ng|at|și|si))?[\s-]*$"
)
# Vietnamese and romanised Japanese tens come after their digit: "hai mươi hai tuổi" (22) holds
# "mươi hai tuổi", "ni juu sai" (20) "juu sai".
_DIGIT_BEFORE_TENS = re.compile(
    r"(?:^|\s)(?:hai|ba|bon|nam|sau|bay|tam|chin|ni|san|yon|go|roku|nana|hachi|kyuu|kyu)\s$"
)


def under_18(pattern: re.Pattern[str], plain: str) -> bool:
    """Whether ``pattern`` (``age_pattern``'s) finds an age under 18 in the plain reading that is
    not the end of an adult's age written in words ("vingt-deux ans", 22)."""
    for found in pattern.finditer(plain):
        before = plain[max(0, found.start() - 40) : found.start()]
        if _ADULT_BEFORE.search(before):
            continue
        if found.group().startswith(("muoi", "juu", "ju ")) and _DIGIT_BEFORE_TENS.search(before):
            continue
        return True
    return False


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
