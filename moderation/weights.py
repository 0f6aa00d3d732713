"""Clothing weighed to nothing in Stable Diffusion's prompt syntax: "(clothes:0)", "[dress:-1.5]".

A weight of 0.3 or less on a word for clothing leaves it out of the picture, as a negative
prompt would; on a person it is clothing left out (``moderation.prompts``), beside a minor a
sexual cue.
"""

from __future__ import annotations

import re

# A weight in Stable Diffusion's syntax: "(clothes:0)", "[dress:-1.5]", "{fully clothed::0,0}",
# "(одежда:0)"; the words before it, up to three.
_WEIGHT = re.compile(
    r"[(\[{]\s*((?:[^\W\d_]+[ _-]){0,3}?[^\W\d_]+)\s*::?\s*(-?\s*(?:\d+(?:[.,]\d*)?|[.,]\d+))"
    r"\s*[)\]}]"
)
# All of one's clothes, in the languages people weigh them in.
_ALL_CLOTHES = frozenset(
    ("clothes", "clothing", "clothed", "dressed", "garment", "garments", "outfit", "attire",
     "ropa", "roupa", "roupas", "vêtements", "vetements", "kleidung", "kleider", "vestiti",
     "abbigliamento", "kleding", "ubrania", "ubranie", "одежда", "одежды", "одяг", "衣服", "服",
     "kıyafet", "kiyafet", "pakaian", "quần áo")
)  # fmt: skip
# One garment, by what it covers.
_TOPS = frozenset(("shirt", "tshirt", "top", "blouse", "bra", "tank", "camisole", "crop"))
_BOTTOMS = frozenset(("pants", "trousers", "jeans", "skirt", "shorts", "panties", "underwear"))
_WHOLE = frozenset(
    ("dress", "swimsuit", "bikini", "lingerie", "swimwear", "nightgown", "robe", "kimono", "towel",
     "bodysuit", "leotard")
)  # fmt: skip
_COVER_TOP = r"shirt|t shirt|top|blouse|sweater|jumper|hoodie|jacket|coat|cardigan|vest|bra"
_COVER_BOTTOM = r"pants|trousers|jeans|skirt|shorts|panties|underwear|leggings"
_COVER_WHOLE = r"dress|gown|robe|kimono|uniform|suit|overalls|jumpsuit|parka|coat|bodysuit"
_MALE = re.compile(r"\b(?:man|men|guy|guys|boy|male|he|his|him|gentleman|dude)\b", re.IGNORECASE)
_FEMALE = re.compile(
    r"\b(?:woman|women|girl|girls|lady|female|she|her|hers|1girl|wife|mother)\b", re.IGNORECASE
)


def _still_worn(part: str, rest: str) -> bool:
    covers = {
        "top": f"{_COVER_TOP}|{_COVER_WHOLE}",
        "bottom": f"{_COVER_BOTTOM}|{_COVER_WHOLE}",
        "whole": f"{_COVER_TOP}|{_COVER_BOTTOM}|{_COVER_WHOLE}",
    }[part]
    return re.search(rf"\b(?:{covers})\b", rest, re.IGNORECASE) is not None


def weighed_out(prompt: str) -> str | None:
    """Clothing weighed to (almost) nothing in Stable Diffusion's syntax, as written
    ("(clothes:0)", "[dress:-1.5]", "(fully clothed:0.1)", "(одежда:0)"): left out, as a
    negative prompt would. One garment weighed out counts only where nothing still named covers
    what it covered ("a business suit, (lingerie:-1)", "jeans and a sweater, (dress:0)" are a
    change of clothes), and a man's top alone is a shirtless man."""
    out: list[tuple[re.Match[str], str]] = []
    for found in _WEIGHT.finditer(prompt):
        words = [word.casefold() for word in re.split(r"[ _-]", found.group(1))]
        weight = float(re.sub(r"\s", "", found.group(2)).replace(",", "."))
        if weight > 0.3:
            continue
        joined = "".join(words[-2:])  # "t shirt" -> "tshirt"
        for word in (*words, joined):
            if word in _ALL_CLOTHES:
                out.append((found, "all"))
            elif word in _TOPS:
                out.append((found, "top"))
            elif word in _BOTTOMS:
                out.append((found, "bottom"))
            elif word in _WHOLE:
                out.append((found, "whole"))
            else:
                continue
            break
    # What is still worn: the prompt without every garment weighed out.
    starts = {found.start() for found, _ in out}
    rest = _WEIGHT.sub(lambda found: "" if found.start() in starts else found.group(), prompt)
    for found, part in out:
        if part == "all":
            return found.group()
        if part == "top" and _MALE.search(prompt) and not _FEMALE.search(prompt):
            continue  # "a man, (shirt:0)": shirtless
        if not _still_worn(part, rest):
            return found.group()
    return None
