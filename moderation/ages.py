"""Ages under 18 written in any covered language: "12 años", "12 лет", "12歳", "12살", "十二歳",
and with the number in words where a language file lists them ("doce años", "열두 살").

The units come from the language files' ``[age_units]`` sections, the number words from their
``[age_numbers]``. A digit under 18 before any language's unit counts, and after one in the
languages that write the unit first (Hebrew "בת 12", Swahili "miaka 12"); a number word only
before its own language's unit ("drei Jahre", not "zwei an der Bar" through French "an"), and
never before a unit that is also a word for other things (Polish "letnie", of summer). A number
word after its own language's word for the tens ends an adult's age ("vingt-deux ans", 22). The
English forms ("12 year old", "13yo", "aged 12") are ``moderation.prompts``' own.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from moderation.normalise import hangul, normalise, spaceless

_NUMBER = r"(?<![\d.])(?:1[0-7]|[1-9])(?!\d)"
_HAN_DIGITS = "一二三四五六七八九两兩"
# One Han number under 18, or a pair in a row ("十二三岁", 12 or 13; "七八岁"), not "十七八"
# (17 or 18) nor the end of a larger one ("二十二岁").
_HAN_NUMBER = (
    rf"(?<![{_HAN_DIGITS}十百千])(?:十[一二三四五六]?[一二三四五六七]?|十[七几多来來]"
    rf"|[{_HAN_DIGITS}]{{1,2}})(?![十百千])"
)
# The languages whose unit comes before the number (Hebrew "בת 12", Swahili "umri wa miaka
# 12"), and the units that do so elsewhere (Malay and Indonesian "usia 12", "umur 12").
UNIT_FIRST = frozenset({"he", "sw"})
_FIRST_UNITS = frozenset({"usia", "umur", "berusia", "berumur"})
# Units that are also words for other things after a number word: Polish "letnie" (of summer:
# "dwie letnie sukienki"), Czech "lety" (flights), Croatian "godišnja doba" (the seasons),
# Slovak "ročné" (yearly), Scandinavian "års" ("fem års garanti"). After a digit, ages; after a
# number word only glued ("dwunastoletnia").
_ADJECTIVE_UNIT_WORDS = (
    "letnia", "letni", "letnie", "letniej", "leta", "lety", "lete", "letou", "leteho", "letemu",
    "letych", "godisnja", "godisnji", "godisnje", "godisnju", "godisnjoj", "godisnjeg",
    "godisnjak", "godisnjaka", "rocna", "rocny", "rocne", "rocnej", "rocneho", "rocnu", "rocnom",
    "rocnemu", "rocni", "rocnych", "års", "ars",
)  # fmt: skip
_ADJECTIVE_UNITS = frozenset(normalise(unit) for unit in _ADJECTIVE_UNIT_WORDS)
# Each language's words for the tens, before its number words: "vingt-deux ans" is 22, "yirmi
# iki yaşında", "dua puluh dua tahun", "двадцать два года", "ni juu yon sai" (24), "hai mươi
# hai tuổi". Only the language's own: "Elli, doce años" is a girl of twelve named Elli, not
# Turkish fifty. Languages that glue or put the tens after (German "zweiundzwanzig") need none.
_TENS_WORDS = {
    "fr": "vingt trente quarante cinquante soixante septante octante huitante nonante",
    "es": "veinte treinta cuarenta cincuenta sesenta setenta ochenta noventa",
    "pt": "vinte trinta quarenta cinquenta sessenta setenta oitenta noventa",
    "tr": "yirmi otuz kırk elli altmış yetmiş seksen doksan",
    "pl": "dwadzieścia trzydzieści czterdzieści pięćdziesiąt sześćdziesiąt siedemdziesiąt "
    "osiemdziesiąt dziewięćdziesiąt",
    "ru": "двадцать тридцать сорок пятьдесят шестьдесят семьдесят восемьдесят девяносто "
    "двадцати тридцати сорока пятидесяти шестидесяти",
    "uk": "двадцять тридцять сорок п'ятдесят шістдесят сімдесят вісімдесят дев'яносто",
    "el": "είκοσι τριάντα σαράντα πενήντα εξήντα εβδομήντα ογδόντα ενενήντα",
    "hr": "dvadeset trideset četrdeset pedeset šezdeset",
    "cs": "dvacet třicet čtyřicet padesát šedesát",
    "sk": "dvadsať tridsať štyridsať päťdesiat šesťdesiat",
    "ro": "douăzeci treizeci patruzeci cincizeci",
    "sv": "tjugo trettio fyrtio femtio sextio",
    "da": "tyve tredive fyrre halvtreds tres",
    "no": "tjue tretti førti femti seksti",
    "fi": "kaksikymmentä kolmekymmentä neljäkymmentä viisikymmentä",
    "sw": "ishirini thelathini arobaini hamsini",
    "tl": "dalawampu tatlumpu apatnapu limampu",
    "ar": "عشرين عشرون ثلاثين ثلاثون أربعين أربعون خمسين خمسون",
}
# Tens written as a digit and a word: Indonesian and Malay "dua puluh", Vietnamese "hai mươi",
# romanised Japanese "ni juu" (before "juu…" only the digit: "ni juu sai" is 20).
_TENS_PATTERNS = {
    "id": r"[a-z]+ puluh",
    "ms": r"[a-z]+ puluh",
    "vi": r"(?:mot|hai|ba|bon|nam|sau|bay|tam|chin) muoi",
    "ja": r"(?:ni|san|yon|go|roku|nana|hachi|kyuu?)(?: ?juu)?(?=[\s-]+j)|(?:ni|san|yon|go|roku|"
    r"nana|hachi|kyuu?) ?juu",
    "ko": r"스물|서른|마흔|쉰|예순|일흔|여든|아흔",
}
_JOINERS = r"y|e|et|i|и|і|ve|na|and|och|og|a|ng|at|si|t|و"
# Korean number words before 살, and what may follow it ("열두 살의", of twelve years).
_KOREAN_AFTER = r"(?:의|이|인|에|짜리|배기|밖에)?(?![가-힣])"


def _either(words: Iterable[str]) -> str:
    """An alternation of the words, the longest first (regular expressions take the first)."""
    return "|".join(map(re.escape, sorted(words, key=len, reverse=True)))


def _tens(language: str) -> str | None:
    if language in _TENS_PATTERNS:
        return _TENS_PATTERNS[language]
    words = _TENS_WORDS.get(language)
    if words is None:
        return None
    return _either(map(normalise, words.split()))


def _is_age(found: re.Match[str], raw: str) -> bool:
    """Whether a match of the pattern is an age, not the end of an adult's age in words."""
    tens = [name for name, value in found.groupdict().items() if value is not None]
    if not tens:
        return True
    # Folded, Vietnamese "mươi" (the tens) and "mười" (ten) are one word; the prompt as written
    # says which ("nam mười lăm tuổi" is a boy of 15: "nam" is male there, not five).
    return tens == ["t_vi"] and "mươi" not in raw


def under_18(pattern: re.Pattern[str], plain: str, raw: str = "") -> bool:
    """Whether ``pattern`` (``age_pattern``'s) finds an age under 18 in the plain reading
    (``raw``: the prompt as written, for what folding loses)."""
    return any(_is_age(found, raw) for found in pattern.finditer(plain))


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
        adjectives: set[str] = set()
        for unit in filter(None, map(normalise, units)):
            if spaceless(unit) or hangul(unit):
                glued.add(unit)
                continue
            spaced.add(unit)
            if language in UNIT_FIRST or unit in _FIRST_UNITS:
                first.add(unit)
            (adjectives if unit in _ADJECTIVE_UNITS else own).add(unit)
        words = {word for word in map(normalise, numbers) if word}
        if not words:
            continue
        either = _either(words)
        tens = _tens(language)
        name = "t_" + re.sub(r"\W", "_", language)
        before = rf"(?P<{name}>(?:{tens})[\s-]+(?:(?:{_JOINERS})[\s-]+)?)?" if tens else ""
        if own:
            words_shapes.append(rf"(?<!\w){before}(?:{either}) ?(?:{_either(own)})(?!\w)")
        if adjectives:
            words_shapes.append(rf"(?<!\w)(?:{either})(?:{_either(adjectives)})(?!\w)")
        if language == "ko":  # native numbers before 살, Sino-Korean (십이) before 세
            korean = before.replace(f"?P<{name}>", "?P<t_ko2>")
            native = _either(word for word in words if word[0] != "십")
            sino = _either(word for word in words if word[0] == "십")
            words_shapes.append(rf"(?<![가-힣]){korean}(?:{native}) ?살{_KOREAN_AFTER}")
            if sino:
                words_shapes.append(rf"(?<![가-힣])(?:{sino}) ?세{_KOREAN_AFTER}")
    shapes = [rf"{_NUMBER} ?(?:{_either(spaced)})(?!\w)"] if spaced else []
    shapes += words_shapes
    if first:
        shapes.append(rf"(?<!\w)(?:{_either(first)}) ?{_NUMBER}")
    if glued:
        shapes.append(rf"(?:{_NUMBER}|{_HAN_NUMBER}) ?(?:{_either(glued)})")
    return re.compile("|".join(shapes)) if shapes else None
