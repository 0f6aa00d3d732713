"""Ages under 18 written in any covered language: "12 años", "12 лет", "12歳", "12살", "十二歳",
and with the number in words where a language file lists them ("doce años", "열두 살").

The units come from the language files' ``[age_units]`` sections, the number words from their
``[age_numbers]``. A digit under 18 before any language's unit counts, and after one in the
languages that write the unit first (Hebrew "בת 12", Swahili "miaka 12"); a number word only
before its own language's unit ("drei Jahre", not "zwei an der Bar" through French "an"), and
never before a unit that is also a word for other things (Polish "letnie", of summer).
Not an age: the end of an adult's age in words ("vingt-deux ans", 22) and a time span ("tres
años después", "hace tres años"). The English forms ("12 year old", "13yo", "aged 12") are
``moderation.prompts``' own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from moderation.normalise import hangul, normalise, spaceless

_NUMBER = r"(?<![\d.])(?:1[0-7]|[1-9])(?!\d)"
_HAN_DIGITS = "一二三四五六七八九两兩"
_HAN_NUMBER = (
    rf"(?<![{_HAN_DIGITS}十百千])(?:十[一二三四五六七几多来來]?|[{_HAN_DIGITS}])(?![十百千])"
)
# The languages whose unit comes before the number (Hebrew "בת 12", Swahili "umri wa miaka
# 12"), and the units that do so elsewhere (Malay and Indonesian "usia 12", "umur 12").
UNIT_FIRST = frozenset({"he", "sw"})
_FIRST_UNITS = frozenset({"usia", "umur", "berusia", "berumur"})
# Units that are also words for other things after a number word: Polish "letnie" (of summer:
# "dwie letnie sukienki"), Czech "lety" (flights), Croatian "godišnja doba" (the seasons),
# Slovak "ročné" (yearly), Scandinavian "års" ("fem års garanti"). After a digit, ages.
_ADJECTIVE_UNIT_WORDS = (
    "letnia", "letni", "letnie", "letniej", "leta", "lety", "lete", "letou", "leteho", "letemu",
    "letych", "godisnja", "godisnji", "godisnje", "godisnju", "godisnjoj", "godisnjeg",
    "godisnjak", "godisnjaka", "rocna", "rocny", "rocne", "rocnej", "rocneho", "rocnu", "rocnom",
    "rocnemu", "rocni", "rocnych", "års", "ars",
)  # fmt: skip
_ADJECTIVE_UNITS = frozenset(normalise(unit) for unit in _ADJECTIVE_UNIT_WORDS)
# Korean native numbers before 살, and what may follow it ("열두 살의", of twelve years).
_KOREAN_AFTER = r"(?:의|이|인|에|짜리|배기|밖에)?(?![가-힣])"
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
# Romanised Japanese tens come after their digit: "ni juu yon sai" (24) holds "yon sai", and
# "ni juu sai" (20) "juu sai".
_ROMAJI_TENS = re.compile(r"(?:^|\s)(?:ni|san|yon|go|roku|nana|hachi|kyuu?) ?juu\s$")
_ROMAJI_DIGIT = re.compile(r"(?:^|\s)(?:ni|san|yon|go|roku|nana|hachi|kyuu?)\s$")
# Vietnamese: "hai mươi hai tuổi" (22) holds "mươi hai tuổi". Folded, "mươi" (the tens) and
# "mười" (ten) are one word, so the prompt as written says which ("nam mười lăm tuổi" is a
# boy of 15: "nam" is male there, not five).
_VIET_DIGIT = re.compile(r"(?:^|\s)(?:mot|hai|ba|bon|nam|sau|bay|tam|chin)\s$")
# A time span, not an age: "tres años después", "trois ans plus tard", "hace tres años".
_SPAN_AFTER = re.compile(
    r"^\s(?:ago|later|despues|atras|fa|dopo|plus tard|apres|spater|danach|zuvor|temu|pozniej|"
    r"geleden|daarna|depois|назад|спустя|позже|тому назад|kemudian|lalu|yang lalu|sebelumnya|"
    r"önce|once|sonra|evvel|पहले|बाद|sitten|myohemmin|siden|senere|sedan|senare|nato|truoc|"
    r"sau do|ago)(?!\w)"
)
_SPAN_BEFORE = re.compile(
    r"(?:^|\s)(?:hace|ha|il y a|vor|seit|desde|depuis|durante|pendant|sejak|cach day|через|"
    r"за|tijdens|sinds|od|przez)\s$"
)


def _is_age(found: re.Match[str], plain: str, raw: str) -> bool:
    """Whether a match of the pattern is an age: not a time span, not the end of an adult's age
    in words."""
    text, before = found.group(), plain[max(0, found.start() - 40) : found.start()]
    if _SPAN_AFTER.search(plain[found.end() : found.end() + 20]) or _SPAN_BEFORE.search(before):
        return False
    if text[0].isdigit():
        return True
    if _ADULT_BEFORE.search(before) or _ROMAJI_TENS.search(before):
        return False
    if text.startswith(("juu ", "ju ")) and _ROMAJI_DIGIT.search(before):
        return False
    return not (text.startswith("muoi") and _VIET_DIGIT.search(before) and "mươi" in raw)


def under_18(pattern: re.Pattern[str], plain: str, raw: str = "") -> bool:
    """Whether ``pattern`` (``age_pattern``'s) finds an age under 18 in the plain reading
    (``raw``: the prompt as written, for what folding loses)."""
    return any(_is_age(found, plain, raw) for found in pattern.finditer(plain))


def age_pattern(
    by_language: Mapping[str, tuple[Sequence[str], Sequence[str]]],
) -> re.Pattern[str] | None:
    """One pattern over the plain reading, or None without units. ``by_language``: each
    language's (units, number words for 1 to 17), as written."""
    spaced: set[str] = set()
    first: set[str] = set()
    glued: set[str] = set()  # "12歳の", "12살이", "十二歳": no space, no word end needed
    words_shapes: list[str] = []
    for language, (units, numbers) in sorted(by_language.items()):
        own: set[str] = set()
        adjectives: set[str] = set()  # after a number word only glued: "dvanaestogodišnja"
        for unit in filter(None, map(normalise, units)):
            if spaceless(unit) or hangul(unit):
                glued.add(unit)
                continue
            spaced.add(unit)
            if language in UNIT_FIRST or unit in _FIRST_UNITS:
                first.add(unit)
            (adjectives if unit in _ADJECTIVE_UNITS else own).add(unit)
        words = sorted({word for word in map(normalise, numbers) if word}, key=len, reverse=True)
        if not words:
            continue
        either = "|".join(map(re.escape, words))
        if own:
            units_of = "|".join(map(re.escape, sorted(own, key=len, reverse=True)))
            words_shapes.append(rf"(?<!\w)(?:{either}) ?(?:{units_of})(?!\w)")
        if adjectives:
            units_of = "|".join(map(re.escape, sorted(adjectives, key=len, reverse=True)))
            words_shapes.append(rf"(?<!\w)(?:{either})(?:{units_of})(?!\w)")
        if language == "ko":
            words_shapes.append(rf"(?<![가-힣])(?:{either}) ?살{_KOREAN_AFTER}")
    shapes = []
    if spaced:
        either = "|".join(map(re.escape, sorted(spaced, key=len, reverse=True)))
        shapes.append(rf"{_NUMBER} ?(?:{either})(?!\w)")
    shapes += words_shapes
    if first:
        either = "|".join(map(re.escape, sorted(first, key=len, reverse=True)))
        shapes.append(rf"(?<!\w)(?:{either}) ?{_NUMBER}")
    if glued:
        either = "|".join(map(re.escape, sorted(glued, key=len, reverse=True)))
        shapes.append(rf"(?:{_NUMBER}|{_HAN_NUMBER}) ?(?:{either})")
    return re.compile("|".join(shapes)) if shapes else None
