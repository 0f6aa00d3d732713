"""Prompt syntax shared by the front ends and the worker (no torch): A1111 attention weights,
``<lora:NAME:WEIGHT>`` tags, and the text the rules should read.

The attention syntax, as AUTOMATIC1111's web UI reads it (written here from its rules):

- ``(a)`` multiplies the attention to ``a`` by 1.1, ``[a]`` divides it by 1.1, ``(a:1.3)`` sets
  the factor to 1.3; brackets nest and their factors multiply (``((a))`` is 1.21,
  ``((a:1.3))`` is 1.43).
- ``\\(`` ``\\)`` ``\\[`` ``\\]`` ``\\\\`` are the characters themselves; a backslash before
  anything else is dropped.
- Never an error: a closing bracket without its opening one is plain text, as are ``:`` and
  ``:1.3)`` outside round brackets; a bracket left open weighs everything after it.
- ``BREAK`` (the word, upper case) ends the text encoder's window: what follows starts a new
  one. Unlike A1111, a BREAK inside brackets still breaks (A1111 weighs it as a word there).

Moderation reads :func:`plain_text` beside the raw prompt: every letter the model reads is in
it, so ``(n)ude`` reads as ``nude``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from generation.errors import InvalidOption
from generation.options import LORA_WEIGHT_MAX, LORA_WEIGHT_MIN, LoraChoice

ROUND_FACTOR = 1.1  # ( ) and its inverse for [ ]
PROMPT_WEIGHT_MIN, PROMPT_WEIGHT_MAX = 0.0, 3.0  # beyond 3 the embeddings stop meaning much
BREAK_WEIGHT = -1.0

# One piece of prompt text at a time: an escape, a stray backslash, an explicit weight closing
# a round bracket, a bracket, a lone colon, or a run of anything else.
_PIECE = re.compile(
    r"""
      \\(?P<escaped>[()\[\]\\])
    | (?P<backslash>\\)
    | (?P<weight>:\s*(?P<number>[+-]?[0-9.]+)\s*\))
    | (?P<bracket>[()\[\]])
    | (?P<text>[^\\()\[\]:]+|:)
    """,
    re.VERBOSE | re.DOTALL,
)
_BREAK = re.compile(r"\s*\bBREAK\b\s*")
_LORA_TAG = re.compile(r"<lora:([^<>]*)>", re.IGNORECASE)
_LORA_UNCLOSED = re.compile(r"<lora:[^\s<>]*", re.IGNORECASE)
_LORA_FORMAT = (
    "{0}NAME{1} or {0}NAME:WEIGHT{1}, WEIGHT a number from "
    + f"{LORA_WEIGHT_MIN:g} to {LORA_WEIGHT_MAX:g}"
)


@dataclass(frozen=True)
class Segment:
    text: str
    weight: float = 1.0

    @property
    def is_break(self) -> bool:
        return self.weight == BREAK_WEIGHT and self.text == "BREAK"


BREAK = Segment("BREAK", BREAK_WEIGHT)


def parse_weights(prompt: str) -> list[Segment]:
    """A1111 syntax: ``(a)`` ×1.1, ``((a))`` ×1.21, ``[a]`` ÷1.1, ``(a:1.3)``, ``\\(`` escapes,
    ``BREAK`` a chunk boundary (a Segment with text "BREAK" and weight -1). Unbalanced
    brackets are read as A1111 reads them (never an error). Adjacent equal weights merge."""
    pieces: list[list[str | float]] = []  # [text, weight]; BREAK pieces keep BREAK_WEIGHT
    round_opened: list[int] = []  # where each open bracket started, as an index into pieces
    square_opened: list[int] = []

    def weigh_since(start: int, factor: float) -> None:
        for piece in pieces[start:]:
            if piece[1] != BREAK_WEIGHT or piece[0] != "BREAK":
                piece[1] = float(piece[1]) * factor

    def add_text(text: str) -> None:
        for index, part in enumerate(_BREAK.split(text)):
            if index:
                pieces.append(["BREAK", BREAK_WEIGHT])
            if part:
                pieces.append([part, 1.0])

    for match in _PIECE.finditer(prompt):
        if match["escaped"] is not None:
            pieces.append([match["escaped"], 1.0])
        elif match["backslash"] is not None:
            continue
        elif match["weight"] is not None:
            factor = _number(match["number"])
            if round_opened and factor is not None:
                weigh_since(round_opened.pop(), factor)
                continue
            add_text(match["weight"][:-1])  # no weight after all: text, then the bracket
            if round_opened:
                weigh_since(round_opened.pop(), ROUND_FACTOR)
            else:
                add_text(")")
        elif match["bracket"] in ("(", "["):
            (round_opened if match["bracket"] == "(" else square_opened).append(len(pieces))
        elif match["bracket"] == ")" and round_opened:
            weigh_since(round_opened.pop(), ROUND_FACTOR)
        elif match["bracket"] == "]" and square_opened:
            weigh_since(square_opened.pop(), 1 / ROUND_FACTOR)
        else:
            add_text(match[0])
    for start in round_opened:
        weigh_since(start, ROUND_FACTOR)
    for start in square_opened:
        weigh_since(start, 1 / ROUND_FACTOR)
    return _merged(pieces)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:  # "1.2.3", "."
        return None


def _merged(pieces: list[list[str | float]]) -> list[Segment]:
    segments: list[Segment] = []
    for text, weight in pieces:
        segment = Segment(str(text), float(weight))
        if segment.is_break and segments and segments[-1].is_break:
            continue
        if segments and not segment.is_break and segments[-1].weight == segment.weight:
            segments[-1] = Segment(segments[-1].text + segment.text, segment.weight)
        else:
            segments.append(segment)
    return segments or [Segment("")]


def check_weights(prompt: str) -> None:
    """Refuses a prompt whose words weigh less than 0 or more than 3, nested brackets
    multiplied in (A1111 takes any number; far outside that range the picture is noise)."""
    for segment in parse_weights(prompt):
        if segment.is_break or not segment.text.strip():
            continue
        if not PROMPT_WEIGHT_MIN <= segment.weight <= PROMPT_WEIGHT_MAX:
            raise InvalidOption(
                "prompt weight",
                float(f"{segment.weight:.4g}"),
                f"a number from {PROMPT_WEIGHT_MIN:g} to {PROMPT_WEIGHT_MAX:g}"
                " (nested brackets multiply)",
            )


def plain_text(prompt: str) -> str:
    """The prompt as its words, without weights, brackets, escapes or lora tags: what the
    moderation rules read beside the raw prompt."""
    without_tags = _LORA_TAG.sub("", prompt)
    words = "".join(" " if s.is_break else s.text for s in parse_weights(without_tags))
    return " ".join(words.split())


def take_lora_tags(prompt: str) -> tuple[str, tuple[LoraChoice, ...]]:
    """``<lora:NAME>`` / ``<lora:NAME:WEIGHT>`` tags taken out of the prompt; InvalidOption for
    a malformed tag (names it). The weight's range and the name are the catalog's to check."""
    choices = tuple(_lora_choice(match[1], match[0]) for match in _LORA_TAG.finditer(prompt))
    rest = _LORA_TAG.sub("", prompt)
    unclosed = _LORA_UNCLOSED.search(rest)
    if unclosed:
        raise InvalidOption("lora tag", unclosed[0], _LORA_FORMAT.format("<lora:", ">"))
    if not choices:
        return prompt, ()
    return re.sub(r"[ \t]{2,}", " ", rest).strip(), choices


def parse_lora_list(text: str) -> tuple[LoraChoice, ...]:
    """``"outline:0.8, stripes"`` (Discord's lora option, the CLI's repeated --lora joined):
    InvalidOption names the bad entry. Empty entries (a trailing comma) are skipped."""
    return tuple(_lora_choice(entry, entry.strip()) for entry in text.split(",") if entry.strip())


def _lora_choice(text: str, shown: str) -> LoraChoice:
    """NAME or NAME:WEIGHT; InvalidOption names ``shown`` (the whole tag or list entry)."""
    tag = shown.startswith("<")
    bad = InvalidOption(
        "lora tag" if tag else "lora",
        shown,
        _LORA_FORMAT.format(*(("<lora:", ">") if tag else ("", ""))),
    )
    name, _, weight = text.partition(":")
    if not name.strip() or ":" in weight:
        raise bad
    try:
        choice = LoraChoice.parse(text)
    except InvalidOption:
        raise bad from None
    if not math.isfinite(choice.weight):
        raise bad
    return LoraChoice(name.strip(), choice.weight)
