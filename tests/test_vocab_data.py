"""The multilingual vocabulary files parse, and hold the sections the rules rely on.

They are data that the rules engine reads at start-up; a term that does not parse, a missing
section or a malformed row would break loading or silently drop a language.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from moderation.terms import TermShape, parse_term

DATA = Path(__file__).resolve().parent.parent / "moderation" / "data"
LANG = DATA / "lang"
LANGUAGES: tuple[str, ...] = ("en", "es", "pt", "fr", "de", "it", "nl", "pl", "tr", "ru", "uk")
LANGUAGES += ("ja", "ko", "zh", "ar", "hi", "id", "vi", "tl", "th", "el")
LANGUAGES += ("he", "sv", "cs", "ro", "hu", "fa", "bn", "ms", "fi", "sw", "hr", "sk", "da", "no")
SECTIONS = ("sexual", "nudity", "minors", "gore", "clothing", "age_units", "people", "euphemism")
REQUIRED = ("sexual", "nudity", "minors", "gore", "age_units")
KINDS = {"place", "species", "dish", "art", "person", "other"}


def read_sections(path: Path) -> dict[str, list[str]]:
    """Section name -> its lines, comments and blank lines left out (the format E reads)."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"{path.name}:{number}: a term before any [section]"
        current.append(line)
    return sections


def data_lines(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]


@pytest.mark.parametrize("code", LANGUAGES)
def test_language_file_has_every_section_and_parses(code: str) -> None:
    sections = read_sections(LANG / f"{code}.txt")
    # [innocent] only where a script is written without spaces; [age_numbers] is optional.
    known = {*SECTIONS, "innocent", "age_numbers", "suggestive"}
    assert set(sections) <= known, f"unknown sections: {set(sections) - known}"
    for name in SECTIONS:
        assert name in sections, f"{code}.txt lacks [{name}]"
    for name in REQUIRED:
        assert sections[name], f"{code}.txt: [{name}] is empty"
    for terms in sections.values():
        for term in terms:
            parse_term(term)  # raises InvalidTerm with the reason


def test_no_language_file_is_left_out() -> None:
    assert {path.stem for path in LANG.glob("*.txt")} == set(LANGUAGES)


def test_a_prefix_term_does_not_catch_a_common_innocent_word() -> None:
    """The reason inflected languages list their forms: "гол*" would catch "голова" (head)."""
    innocent = {"голова", "голос", "голубой", "desnudo", "nudeln", "kalori", "pierrot"}
    for code in LANGUAGES:
        for name, terms in read_sections(LANG / f"{code}.txt").items():
            for written in terms:
                term = parse_term(written)
                if term.shape is TermShape.PREFIX and name in ("sexual", "nudity"):
                    caught = {word for word in innocent if word.startswith(term.text)}
                    assert caught <= {"desnudo"}, f"{code}.txt {written!r} catches {caught}"


def test_allow_names_rows_have_a_kind_and_a_source() -> None:
    names = set()
    for line in data_lines(DATA / "allow_names.tsv"):
        fields = line.split("\t")
        assert len(fields) in (3, 4), f"not name<TAB>kind<TAB>source[<TAB>context]: {line!r}"
        name, kind, source = (field.strip() for field in fields[:3])
        for word in fields[3].split(",") if len(fields) == 4 else ():
            assert word.strip(), f"an empty context word in {line!r}"
        assert name, f"empty name: {line!r}"
        assert source, f"empty source: {line!r}"
        assert kind in KINDS, f"unknown kind {kind!r} in {line!r}"
        parse_term(name)
        assert name.casefold() not in names, f"{name!r} listed twice"
        names.add(name.casefold())
    assert len(names) >= 60


def test_emoji_rows_are_emoji_reading_strength() -> None:
    seen = set()
    for line in data_lines(DATA / "emoji.tsv"):
        fields = line.split("\t")
        assert len(fields) in (3, 4), f"not emoji<TAB>reading<TAB>strength[<TAB>context]: {line!r}"
        emoji, reading, strength = fields[:3]
        assert strength in ("strong", "weak", "innocent"), line
        for word in fields[3].split(",") if len(fields) == 4 else ():
            assert word.replace(" ", "").isalpha(), line
            assert word == word.lower(), line
        assert reading.strip(), line
        assert not any(char.isalpha() for char in emoji), line
        assert emoji not in seen, f"{emoji} listed twice"
        seen.add(emoji)
    assert {"🍆", "🍑", "💦", "🔞", "🍆💦"} <= seen


def test_negation_has_its_three_sections() -> None:
    sections = read_sections(DATA / "negation.txt")
    # [negators_after] (negators that follow the clothing word) is optional.
    required = {"negators", "removal", "negative_markers"}
    assert required <= set(sections) <= {*required, "negators_after"}
    for name in ("negators", "negators_after", "removal"):
        for term in sections.get(name, ()):
            parse_term(term)
    for must in ("no", "without", "sin", "ohne", "sans", "без"):
        assert must in sections["negators"]
    assert {"negative prompt:", "--no", "uc:"} <= set(sections["negative_markers"])
