"""The learned layer as the rules call it: what ``moderation.classifier`` offers, read lazily.

The classifier is K's (``moderation/classifier.py``, weights in ``data/classifier/``); the rules
only need its reading of a prompt and its thresholds. It is used when both are shipped, and
numpy loads only then (sdbot's light commands stay light).
"""

from __future__ import annotations

import importlib.util
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


def explain(label: str, reading: Reading) -> str:
    """``the classifier reads it as sexual (0.93: cue, cue)``: the score and what weighed most."""
    cues = ", ".join(reading.cues.get(label, ())[:3])
    score = f"{reading.scores[label]:.2f}"
    return f"the classifier reads it as {label} ({score}{': ' + cues if cues else ''})"
