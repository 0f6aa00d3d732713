"""Normalisation: the few ways one prompt can be read, so that spelling tricks do not hide a word.

Every view starts from the same base: Unicode NFKC (fullwidth and mathematical letters become
plain ones), casefold, zero-width and other format characters and combining marks removed, and
look-alike letters from other scripts folded to Latin in words that use them as disguise. From
there the views differ in how they read what is left:

- ``plain``: letters and digits as words; runs of three or more single letters are joined, so
  "n u d e", "n.u.d.e" and "s_e_x" read as one word;
- ``leet``: the same after folding leetspeak (0 o, 3 e, 4 a, 1 i, 5 s, $ s, @ a, 7 t, ...) in
  words that mix letters with such characters; ``leet_l`` reads 1 and | as l instead of i;
- ``glued``: each whitespace-separated chunk with everything but letters and digits taken out,
  so "nu-de" and "p*rn" (with * dropped) read as one word;
- ``camel``: words written in camelCase split where a capital follows a small letter;
- each of those again with long letter repeats ("nuuuude") collapsed to one letter and to two.

A rule matches when it matches any view. Views are plain strings of words separated by single
spaces, so both word and phrase rules can look for `` term `` in the padded view.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# Format characters (zero-width space/joiners, soft hyphen, BOM, bidi marks) and variation
# selectors carry no letter; Unicode puts most in category Cf.
_INVISIBLE_CATEGORIES = frozenset({"Cf", "Mn", "Me"})
_EXTRA_INVISIBLE = frozenset("\u034f\u115f\u1160\u3164\uffa0")  # look blank but are letters

# Letters from other scripts that look like Latin ones (after casefold).
_LOOKALIKES = str.maketrans(
    {
        # Cyrillic
        "а": "a", "б": "b", "в": "b", "г": "r", "е": "e", "ё": "e", "з": "3", "и": "u",
        "к": "k", "м": "m", "н": "h", "о": "o", "п": "n", "р": "p", "с": "c", "т": "t",
        "у": "y", "х": "x", "ь": "b", "і": "i", "ї": "i", "ј": "j", "ѕ": "s", "ԁ": "d",
        "ԛ": "q", "ԝ": "w", "ѡ": "w", "һ": "h", "ӏ": "l", "ү": "y", "ո": "n",
        # Greek
        "α": "a", "β": "b", "γ": "y", "δ": "d", "ε": "e", "η": "n", "ι": "i", "κ": "k",
        "ν": "v", "ο": "o", "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "ω": "w", "ς": "s",
        "σ": "o", "μ": "u", "ϲ": "c", "ϳ": "j",
        # Armenian, Latin extras
        "օ": "o", "ս": "u", "հ": "h", "ı": "i", "ł": "l", "ø": "o", "đ": "d", "ħ": "h",
        "ƅ": "b", "ɡ": "g", "ɑ": "a", "ʀ": "r", "ᴀ": "a", "ᴇ": "e", "ɪ": "i", "ᴏ": "o",
    }
)  # fmt: skip
# Capitals fold before casefold: Greek "Ν" looks like N, its small "ν" like v.
_UPPER_LOOKALIKES = str.maketrans(
    {
        "Α": "a", "Β": "b", "Ε": "e", "Ζ": "z", "Η": "h", "Ι": "i", "Κ": "k", "Μ": "m", "Ν": "n",
        "Ο": "o", "Ρ": "p", "Τ": "t", "Υ": "y", "Χ": "x", "А": "a", "В": "b", "Е": "e", "К": "k",
        "М": "m", "Н": "h", "О": "o", "Р": "p", "С": "c", "Т": "t", "Х": "x", "У": "y", "Ѕ": "s",
        "І": "i", "Ј": "j",
    }
)  # fmt: skip
_LOOKALIKE_CHARS = frozenset(chr(c) for c in _LOOKALIKES) | frozenset(
    chr(c) for c in _UPPER_LOOKALIKES
)

# Letter-shaped symbols that NFKC leaves alone and no real text uses as letters: negative circled
# and squared letters (🅝, 🅽), regional indicators (🇳), small capitals (ɴᴜᴅᴇ).
_SMALL_CAPS = "ᴀʙᴄᴅᴇꜰɢʜɪᴊᴋʟᴍɴᴏᴘǫʀꜱᴛᴜᴠᴡxʏᴢ"
_LETTER_SYMBOLS = str.maketrans(
    {
        **{chr(start + i): chr(ord("a") + i) for start in (0x1F150, 0x1F170, 0x1F1E6)
           for i in range(26)},
        **{small: chr(ord("a") + i) for i, small in enumerate(_SMALL_CAPS) if small != "x"},
    }
)  # fmt: skip

# The other way: Latin letters (and a few leet characters) hiding in a Cyrillic word ("гoлая"
# with a Latin o) read as the Cyrillic letters they look like.
_TO_CYRILLIC = str.maketrans(
    {"a": "а", "b": "в", "c": "с", "e": "е", "h": "н", "k": "к", "m": "м", "o": "о", "p": "р",
     "t": "т", "x": "х", "y": "у", "0": "о", "@": "а", "3": "з", "6": "б"}
)  # fmt: skip

_LEET_I = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g",
     "@": "a", "$": "s", "!": "i", "|": "i", "+": "t", "€": "e", "¢": "c", "£": "e", "¡": "i"}
)  # fmt: skip
_LEET_L = str.maketrans({"1": "l", "|": "l", "!": "l"})
_LEET_CHARS = frozenset("013457890@$!|+€¢£¡")
# "v" for "u" between two consonants, where no English word has a v ("nvde", "fvck1ng",
# "m4stvrb4t1ng"): read on the leet-folded words, so "nvd3" becomes "nude".
_V_FOR_U = re.compile(r"(?<=[bcdfghjklmnpqrstwxz])v(?=[bcdfghjklmnpqrstwxz])")

# Scripts whose combining marks are part of the spelling (kept by ``base``): Devanagari to
# Sinhala, Thai, Lao, and the kana's voicing marks.
_MARK_SCRIPTS = ((0x0900, 0x0DFF), (0x0E00, 0x0EFF), (0x3040, 0x30FF))
_MARK_SCRIPT_LETTERS = frozenset(
    chr(code)
    for start, end in _MARK_SCRIPTS
    for code in range(start, end + 1)
    if unicodedata.category(chr(code)).startswith("L")
)
_MARK_SCRIPT_MARKS = frozenset(
    chr(code)
    for start, end in _MARK_SCRIPTS
    for code in range(start, end + 1)
    if unicodedata.category(chr(code)) in ("Mn", "Mc")
)
_MARK_CLASS = "".join(sorted(_MARK_SCRIPT_MARKS))
_WORD = re.compile(rf"(?:[^\W_]|[{_MARK_CLASS}])+")
_NOT_WORD = re.compile(rf"[^\w{_MARK_CLASS}]+|_+")
# Scripts written without spaces between words: a term in them matches anywhere in the text.
_SPACELESS = re.compile(r"[\u0e00-\u0e7f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
# Hangul: spaced, but a noun carries its particles ("소녀가"): a term matches a word's start.
_HANGUL = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")
_LONG_REPEAT = re.compile(r"([^\W\d_])\1{2,}")
_REPEAT_READINGS = 3
# camelCase: a small letter then a capital starts a new word ("sexyNakedElf").
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z][a-z])")


def _spelling_mark(char: str, before: str) -> bool:
    """A combining mark that spells (a Devanagari or Thai vowel sign, a kana's dakuten) rather
    than decorates: it follows a letter of a script in ``_MARK_SCRIPTS``."""
    return before in _MARK_SCRIPT_LETTERS and char in _MARK_SCRIPT_MARKS


def base(text: str, *, fold: bool = True) -> str:
    """NFKC, casefold, invisible characters and accents removed, disguised look-alikes folded.

    ``fold=False`` leaves look-alikes as written: the native reading of a Russian or Greek word
    in an English prompt ("a photo, секс"), which folding would turn into Latin ("cekc").
    Marks that spell a word in Indic, Thai and kana scripts stay (dropping them made different
    words one: Thai "นิ่ม" soft and "นม" milk); Hangul and kana are composed again.
    """
    if "|_|" in text:  # leetspeak's "u" drawn with strokes ("n|_|d3")
        text = text.replace("|_|", "u")
    if text.isascii():  # nothing to fold but case (most prompts, most terms)
        return " ".join(text.lower().split())
    text = unicodedata.normalize("NFKC", text).translate(_LETTER_SYMBOLS)
    kept: list[str] = []
    letter = ""  # the last letter kept: whether a mark after it spells
    marks = False
    for char in unicodedata.normalize("NFD", text):
        if unicodedata.category(char) in _INVISIBLE_CATEGORIES or char in _EXTRA_INVISIBLE:
            if _spelling_mark(char, letter):
                kept.append(char)
                marks = True
            continue
        kept.append(char)
        letter = char
    text = "".join(kept)
    if marks or not text.isascii():
        text = unicodedata.normalize("NFC", text)
    if not fold:
        return " ".join(text.casefold().split())
    latin_text = any(char.isascii() and char.isalpha() for char in text)
    return " ".join(_fold_lookalikes(chunk, latin_text).casefold() for chunk in text.split())


def _fold_lookalikes(chunk: str, latin_text: bool) -> str:
    """Folds a chunk written in Latin disguised with look-alikes; real Greek or Cyrillic stays.

    A chunk is folded when it mixes Latin letters with look-alikes, or, in a text that is
    otherwise Latin, consists only of look-alikes ("a рогп video"). A Russian prompt stays.
    """
    letters = [char for char in chunk if char.isalpha()]
    if not any(char in _LOOKALIKE_CHARS for char in letters):
        return chunk
    if not all(char.isascii() or char in _LOOKALIKE_CHARS for char in letters):
        return chunk
    if latin_text and (any(char.isascii() for char in letters) or len(letters) > 1):
        return chunk.translate(_UPPER_LOOKALIKES).casefold().translate(_LOOKALIKES)
    return chunk


def _has_letter(chunk: str) -> bool:
    return any(char.isalpha() for char in chunk)


def _fold_leet(chunk: str, table: dict[int, str]) -> str:
    """Leetspeak in a chunk that mixes letters with leet characters, or a lone leet character."""
    if not any(char in _LEET_CHARS for char in chunk):
        return chunk
    if _has_letter(chunk) or len(chunk) == 1:
        return chunk.translate(table)
    return chunk


def join_letter_runs(words: list[str], *, keep_article: bool = False) -> list[str]:
    """Three or more single letters in a row ("n u d e") become one word.

    With ``keep_article``, a leading "a" or "i" stays a word of its own: "a f u c k" -> "a fuck".
    """
    out: list[str] = []
    run: list[str] = []
    for word in [*words, ""]:
        if len(word) == 1 and word.isalpha():
            run.append(word)
            continue
        if keep_article and len(run) >= 4 and run[0] in ("a", "i"):
            out.append(run.pop(0))
        out.extend(["".join(run)] if len(run) >= 3 else run)
        run = []
        if word:
            out.append(word)
    return out


def _words(chunks: list[str], *, keep_article: bool = False) -> str:
    words = [word for chunk in chunks for word in _WORD.findall(chunk)]
    return " ".join(join_letter_runs(words, keep_article=keep_article))


@dataclass(frozen=True)
class Views:
    """The readings of one text; ``plain`` is the one shown to people and regex rules."""

    plain: str
    all: tuple[str, ...]


def views(text: str) -> Views:
    chunks = base(text).split()
    leet_i = [_fold_leet(chunk, _LEET_I) for chunk in chunks]
    readings = [_words(chunks), _words(leet_i)]
    readings += [_words(chunks, keep_article=True), _words(leet_i, keep_article=True)]
    if any(char in "1|!" for char in text):
        leet_l = [_fold_leet(chunk, _LEET_L) for chunk in chunks]
        readings.append(_words([_fold_leet(chunk, _LEET_I) for chunk in leet_l]))
    readings.append(" ".join(filter(None, (_NOT_WORD.sub("", chunk) for chunk in leet_i))))
    if "v" in readings[1] and _V_FOR_U.search(readings[1]):
        readings.append(_V_FOR_U.sub("u", readings[1]))
    if _CAMEL.search(text):
        readings.append(_words(base(_CAMEL.sub(" ", text)).split()))
    if not text.isascii():
        unfolded = base(text, fold=False).split()
        if (native := _words(unfolded)) != readings[0]:
            readings.append(native)
        if any(_latin_in_cyrillic(chunk) for chunk in unfolded):
            cyrillic = [
                chunk.translate(_TO_CYRILLIC) if _latin_in_cyrillic(chunk) else chunk
                for chunk in unfolded
            ]
            readings.append(_words(cyrillic))
    # Letters typed over and over ("nuuuude"), collapsed to one and to two: only the readings
    # that hold such a run, and at most _REPEAT_READINGS of them (each reading costs every index
    # a search).
    # The readings that keep articles are left out: they differ from the others only there.
    articled = set(readings[2:4]) - set(readings[:2])
    repeated = [
        reading
        for reading in dict.fromkeys(readings)
        if reading not in articled and _LONG_REPEAT.search(reading)
    ]
    for reading in repeated[:_REPEAT_READINGS]:
        readings += [_LONG_REPEAT.sub(r"\1", reading), _LONG_REPEAT.sub(r"\1\1", reading)]
    return Views(plain=readings[0], all=tuple(dict.fromkeys(readings)))


def _latin_in_cyrillic(chunk: str) -> bool:
    """A word mostly in Cyrillic with Latin letters or leet characters in it ("гoлая")."""
    cyrillic = sum(1 for char in chunk if "\u0400" <= char <= "\u04ff")
    return cyrillic >= 2 and any(
        (char.isascii() and char.isalnum()) or char == "@" for char in chunk
    )


def normalise(text: str) -> str:
    """The plain reading: what a term or phrase is compared with (``views(text).plain``)."""
    return _words(base(text).split())


def spaceless(text: str) -> bool:
    """Whether the text has letters of a script written without spaces (Chinese, Japanese,
    Thai), where a word is found anywhere inside a run of letters."""
    return _SPACELESS.search(text) is not None


def hangul(text: str) -> bool:
    return _HANGUL.search(text) is not None


_FRAGMENT_LETTERS = 3  # fragments this short or shorter are joined
_FRAGMENT_RUN = 8  # at most this many fragments make one word


def fragment_joins(reading: str) -> set[str]:
    """Words that runs of short fragments make when joined: "nu de" -> "nude", "p orn" -> "porn".

    Every contiguous run of two to eight tokens of at most three letters is joined. Joins make
    words out of ordinary text too ("a pen is" -> "penis"), so the caller compares them only
    with a few unambiguous terms.
    """
    tokens = reading.split()
    joins: set[str] = set()
    start = 0
    while start < len(tokens):
        end = start
        while end < len(tokens) and len(tokens[end]) <= _FRAGMENT_LETTERS and tokens[end].isalpha():
            end += 1
        run = tokens[start:end]
        for i in range(len(run)):
            for j in range(i + 2, min(len(run), i + _FRAGMENT_RUN) + 1):
                joins.add("".join(run[i:j]))
        start = end + 1
    return joins


def folded_only(word: str, text: str) -> bool:
    """Whether ``word`` (plain letters) is in the text only as a word whose accents folding took
    away ("góry" read as "gory"), not as typed."""
    typed = [chunk for chunk in re.split(r"[\W_]+", unicodedata.normalize("NFC", text.casefold()))]
    forms = {word, word + "s", word + "es"}
    if any(chunk in forms for chunk in typed):
        return False
    return any(not chunk.isascii() and normalise(chunk) in forms for chunk in typed)


def leet_reading(text: str) -> str:
    """The reading with leetspeak folded ("p0rn" -> "porn")."""
    return _words([_fold_leet(chunk, _LEET_I) for chunk in base(text).split()])
