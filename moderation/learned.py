"""The learned layer as the rules call it: what ``moderation.classifier`` offers, read lazily.

The classifier is K's (``moderation/classifier.py``, weights in ``data/classifier/``); the rules
only need its reading of a prompt and its thresholds. It is used when both are shipped, and
numpy loads only then (sdbot's light commands stay light).
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from importlib import resources
from typing import Protocol


class Reading(Protocol):
    @property
    def scores(self) -> dict[str, float]: ...

    @property
    def cues(self) -> dict[str, tuple[str, ...]]: ...

    def over(self, label: str) -> bool: ...


class Classifier(Protocol):
    thresholds: dict[str, float]

    def read(self, prompt: str) -> Reading: ...


def shipped_classifier() -> Classifier | None:
    """The shipped classifier, or None while there is none (no module or no weights)."""
    if importlib.util.find_spec("moderation.classifier") is None:
        return None
    if not resources.files("moderation").joinpath("data", "classifier").is_dir():
        return None
    from moderation.classifier import PromptClassifier

    classifier: Classifier = PromptClassifier.shipped()
    return classifier


def explain(label: str, reading: Reading, shown: tuple[str, ...] | None = None) -> str:
    """``the classifier reads it as sexual (0.93: cue, cue)``: the score and what weighed most
    (``shown``: those cues only, the plain words left out)."""
    cues = ", ".join((reading.cues.get(label, ()) if shown is None else shown)[:3])
    score = f"{reading.scores[label]:.2f}"
    return f"the classifier reads it as {label} ({score}{': ' + cues if cues else ''})"


# Words that say who or how, not what: a classifier that leans only on these has learnt the
# corpus's people, not sex ("a woman" 0.98, "a 12 year old girl playing football").
_STOPWORDS = frozenset(
    {"a", "an", "the", "of", "in", "on", "at", "to", "and", "or", "with", "for", "from", "by", "is",
     "are", "was", "were", "be", "being", "his", "her", "their", "its", "my", "your", "our", "this",
     "that", "these", "those", "some", "who", "while", "as", "into", "near", "under", "over", "up",
     "out", "has", "have", "he", "she", "they", "them", "him", "it", "one", "two", "three", "four",
     "five", "few", "many"}
)  # fmt: skip
_STYLE = frozenset(
    {"photo", "photos", "photograph", "photography", "picture", "image", "portrait", "selfie",
     "solo", "drawing", "painting", "illustration", "sketch", "render", "anime", "manga", "cartoon",
     "realistic", "photorealistic", "masterpiece", "best", "quality", "high", "detailed", "hd",
     "4k", "8k", "uhd", "cinematic", "closeup", "close", "shot", "full", "body", "art", "style",
     "lighting", "year", "years", "old", "aged", "yo", "young", "younger", "little", "small",
     "older", "elderly", "foto", "fotos", "fotografia", "fotografie", "photographie", "retrato",
     "ritratto", "portrat", "portret", "realista", "realistico", "realistisch", "realiste",
     "realistyczne", "φωτογραφια", "ρεαλιστικη", "πορτρετο", "фото", "фотография", "портрет",
     "реалистичное", "реалистичный",
     # framing: how the person stands and where the camera does, not what is shown ("a woman
     # facing the camera, portrait" read 0.98 on "facing"); the rules read framing where it
     # makes a scene bare (``moderation.implied``)
     "front", "view", "side", "pose", "poses", "posing", "standing", "heroic", "dynamic",
     "viewer", "camera", "facing", "faces", "turning", "looking", "angle", "waist", "length"}
)  # fmt: skip
# Words of the [people] sections that say more than who: a role or a state the corpus's sexual
# prompts lean on ("stripper", "sunbathing"); a cue among them carries.
_LOADED = frozenset(
    {"sunbathing", "sunbather", "bather", "stripper", "cowgirl", "babe", "hunk", "stepmom",
     "stepsister", "stepbrother", "nymph", "figure", "waifu", "maid", "bodybuilder",
     "swimmer", "dancer", "cheerleader", "housewife", "gal", "goddess", "mermaid", "idol",
     "cosplayer"}
)  # fmt: skip
_COUNTED = re.compile(r"(?:\d+|[il])?(?:girl|boy|other|woman|man)s?")  # "1girl", "2boys"


def plain_word(word: str, person: Callable[[str], bool]) -> bool:
    """A word for people or minors (``person``), a pronoun, an age or number, a stopword or a
    style tag: nothing a classifier may call sexual on its own."""
    return (
        word in _STOPWORDS
        or word in _STYLE
        or any(char.isdigit() for char in word)
        or len(word) < 2  # a digit's look-alike reading ("8" as "b")
        or len(set(word)) == 1  # one letter over and over ("aaaa…") says nothing
        or _COUNTED.fullmatch(word) is not None
        or (word not in _LOADED and person(word))
    )


def carried(reading: Reading, label: str, person: Callable[[str], bool]) -> tuple[str, ...]:
    """The reading's cues for ``label`` that carry something beyond plain words (a cue of
    several words carries when any of its words does)."""
    return tuple(
        cue
        for cue in reading.cues.get(label, ())
        if not all(plain_word(word, person) for word in cue.split())
    )
