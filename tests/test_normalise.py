"""The readings of a prompt: each evasion folds back to the word, ordinary text stays itself."""

from __future__ import annotations

import pytest

from moderation.normalise import base, leet_reading, normalise, views


@pytest.mark.parametrize(
    ("text", "reading"),
    [
        ("n u d e woman", "nude woman"),
        ("n.u.d.e", "nude"),
        ("s_e_x", "sex"),
        ("p0rn", "porn"),
        ("$3x", "sex"),
        ("n@ked", "naked"),
        ("ｎｕｄｅ", "nude"),
        ("𝐧𝐮𝐝𝐞", "nude"),
        ("nu\u200bde", "nude"),
        ("n\u0308u\u0303de", "nude"),
        ("nuuuuude", "nude"),
        ("nu-de", "nude"),
        ("a \u0440\u043e\u0433\u043f video", "a porn video"),  # all Cyrillic look-alikes
        ("a 1ady", "a lady"),
        ("a f u c k", "a fuck"),
    ],
)
def test_evasions_fold_back(text: str, reading: str) -> None:
    assert reading in views(text).all


def test_ordinary_text_is_left_alone() -> None:
    assert normalise("  A\u00adB—c!!  D_e ") == "ab cde"  # three single letters join
    assert normalise("Crème Brûlée") == "creme brulee"
    assert base("закат над морем") == "закат над морем"  # real Cyrillic stays Cyrillic
    assert views("a castle at dusk").all == ("a castle at dusk",)
    assert leet_reading("R2-D2 in 4k") == "r2 d2 in ak"  # harmless: no word appears


def test_views_are_bounded() -> None:
    # The worst case (leet, 1, repeats) yields a handful of readings, never one per word.
    assert len(views("p0rn 1ady nuuude " * 50).all) <= 18


@pytest.mark.parametrize(
    ("text", "reading"),
    [
        ("नंगी लड़की", "नंगी लड़की"),  # Devanagari vowel signs and nasal marks stay...
        ("ผู้หญิง", "ผู้หญิง"),  # ...and Thai ones: they spell the word
        ("ジャズ", "ジャズ"),  # a kana's voicing mark too (ザ is not サ)
        ("\u30b7\u3099\u30e3\u30b9\u3099", "ジャズ"),  # decomposed, composed again
        ("소녀가", "소녀가"),  # Hangul syllables composed, never jamo
        ("عَارِيَة", "عارية"),  # Arabic short vowels are optional: dropped
        ("Ｃｒèｍｅ", "creme"),  # Latin accents still go
    ],
)
def test_scripts_keep_what_spells_them(text: str, reading: str) -> None:
    assert normalise(text) == reading


def test_a_word_in_another_script_keeps_a_native_reading() -> None:
    assert "a photo cekc" in views("a photo, секс").all  # folded: it may be a disguise
    assert "a photo секс" in views("a photo, секс").all  # and as written: it may be Russian


def test_latin_letters_hiding_in_a_cyrillic_word_read_as_cyrillic() -> None:
    assert "голая девочка" in views("гoлая дeвочка").all  # Latin o and e
    assert "голая" in views("г0лая").all  # a zero
    assert views("закат над морем").all == ("закат над морем",)  # nothing to read otherwise
