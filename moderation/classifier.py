"""The learned layer of prompt moderation: a small linear classifier over hashed n-grams.

The rules (``moderation.prompts``) are exact and explainable but only know the words they list;
this reads paraphrase, slang, misspellings and other languages. A prompt becomes features:

- character n-grams (1 to 5) of each word, the word padded with ``<`` and ``>``, read on
  ``moderation.normalise.base`` text (look-alikes, fullwidth and zero-width folded first), on the
  leetspeak reading, and on each chunk with its inner punctuation taken out ("n.u.d.e");
- the words themselves and pairs of neighbouring words;
- symbols and emoji, alone and in pairs ("🍆💦").

Each feature is hashed (CRC-32) into one of ``buckets`` rows of a weight matrix with a column per
label (benign, sexual, gore); a prompt's scores are the softmax of its rows' sum. The weights and
the thresholds picked on validation ship in ``moderation/data/classifier/``; ``python -m
moderation.train_classifier`` writes them (the model card there says how and how well).

numpy is imported only when a classifier is loaded: the bot's light commands import this module.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
import unicodedata
import zlib
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from moderation.normalise import base, leet_reading

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

LABELS = ("benign", "sexual", "gore")
WEIGHTS_FILE = "weights.npy"
MODEL_FILE = "model.json"
NGRAMS = (1, 2, 3, 4, 5)
MAX_WORD = 40  # longer runs (a sentence in a script without spaces) are read in pieces this long
MAX_CUE = 12  # a longer word is named in a cue by its n-grams, not whole

_WORD = re.compile(r"[^\W_]+")
_CUES = 3  # words named in a reason


@dataclass(frozen=True)
class ClassifierReading:
    """What the classifier makes of one prompt."""

    scores: dict[str, float]  # "sexual", "gore": 0..1
    cues: dict[str, tuple[str, ...]]  # per label, the words that weighed most toward it
    thresholds: dict[str, float] = field(default_factory=dict)

    def over(self, label: str) -> bool:
        """The score is at or above the shipped threshold; "minors" reads the sexual score
        against the lower bar that applies when the prompt names a minor."""
        score = self.scores["sexual" if label == "minors" else label]
        return score >= self.thresholds[label]


@dataclass(frozen=True)
class Features:
    """A prompt's hashed features and, for each, the word it came from (for the cues)."""

    buckets: list[int]
    owners: list[str]


def _pieces(word: str) -> list[str]:
    if len(word) <= MAX_WORD:
        return [word]
    step = MAX_WORD - 4  # overlapping, so no 5-gram is lost at a seam
    return [word[i : i + MAX_WORD] for i in range(0, len(word) - 4, step)]


def _join_letter_runs(words: list[str]) -> list[str]:
    """Three or more single letters in a row ("n u d e") read as one word."""
    out: list[str] = []
    run: list[str] = []
    for word in [*words, ""]:
        if len(word) == 1 and word.isalpha():
            run.append(word)
            continue
        out.extend(["".join(run)] if len(run) >= 3 else run)
        run = []
        if word:
            out.append(word)
    return out


def _is_symbol(char: str) -> bool:
    return unicodedata.category(char)[0] == "S"


def tokens(prompt: str) -> tuple[list[str], list[str], list[str]]:
    """(words in order, the leetspeak reading's words in order, symbols in order)."""
    text = base(prompt)
    chunks = text.split()
    words = _join_letter_runs([word for chunk in chunks for word in _WORD.findall(chunk)])
    leet = leet_reading(prompt).split()
    glued = []
    for chunk in chunks:
        inner = _WORD.findall(chunk)
        if len(inner) > 1:
            glued.append("".join(inner))
    symbols = [char for char in text if not char.isalnum() and not char.isspace()]
    symbols = [char for char in symbols if _is_symbol(char)]
    return [*words, *(w for w in glued if w not in words)], leet, symbols


def _unspaced(char: str) -> bool:
    """A letter of a script written without spaces: kana, CJK ideographs, Thai, Lao, Khmer,
    Myanmar."""
    code = ord(char)
    return (
        0x3040 <= code <= 0x30FF
        or 0x3400 <= code <= 0x9FFF
        or 0x0E00 <= code <= 0x0EFF
        or 0x1000 <= code <= 0x109F
        or 0x1780 <= code <= 0x17FF
    )


@functools.lru_cache(maxsize=65536)
def _word_grams(word: str, buckets: int) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """The buckets of one word's character n-grams and of the word itself, and what each is
    named in a cue: the word, or in a long run of a script written without spaces (a whole
    Japanese sentence is one word) the n-gram itself. Cached: words repeat."""
    mask = buckets - 1
    out = [zlib.crc32(("w " + word).encode()) & mask]
    names = [word]
    long = len(word) > MAX_CUE or (len(word) > 3 and any(map(_unspaced, word)))
    for piece in _pieces(word):
        padded = f"<{piece}>"
        for n in NGRAMS:
            for i in range(len(padded) - n + 1):
                gram = padded[i : i + n]
                out.append(zlib.crc32(("c " + gram).encode()) & mask)
                names.append(gram.strip("<>") or word if long else word)
    return tuple(out), tuple(names)


def featurise(prompt: str, buckets: int) -> Features:
    """The features of a prompt as typed."""
    mask = buckets - 1
    words, leet, symbols = tokens(prompt)
    out: list[int] = []
    owners: list[str] = []
    seen = set(words)
    for word in [*words, *(w for w in leet if w not in seen)]:
        grams, names = _word_grams(word, buckets)
        out.extend(grams)
        owners.extend(names)
    for first, second in itertools.pairwise(leet):
        out.append(zlib.crc32(f"b {first} {second}".encode()) & mask)
        owners.append(f"{first} {second}")
    for i, symbol in enumerate(symbols):
        out.append(zlib.crc32(("s " + symbol).encode()) & mask)
        owners.append(symbol)
        if i:
            pair = symbols[i - 1] + symbol
            out.append(zlib.crc32(("s " + pair).encode()) & mask)
            owners.append(pair)
    return Features(out, owners)


class PromptClassifier:
    """Scores prompts as sexual and gore; ``thresholds`` are where each label counts."""

    def __init__(
        self,
        weights: npt.NDArray[Any],
        bias: npt.NDArray[Any],
        thresholds: dict[str, float],
        meta: dict[str, Any] | None = None,
    ) -> None:
        import numpy as np

        buckets = weights.shape[0]
        if buckets & (buckets - 1) or weights.shape[1] != len(LABELS):
            raise ValueError(
                f"weights must be (a power of two, {len(LABELS)}), got {weights.shape}"
            )
        missing = {"sexual", "gore", "minors"} - thresholds.keys()
        if missing:
            raise ValueError(f"thresholds lack {sorted(missing)}")
        self.weights = np.asarray(weights, dtype=np.float32)
        self.bias = np.asarray(bias, dtype=np.float32)
        self.thresholds = dict(thresholds)
        self.meta = dict(meta or {})
        self.scale = str(self.meta.get("scale", "none"))
        feature_scale(np.ones(1), self.scale)  # refuses an unknown scale now, not at a read
        self.buckets = buckets

    @classmethod
    def shipped(cls) -> PromptClassifier:
        """The classifier in ``moderation/data/classifier/`` (loaded once)."""
        return _shipped()

    @classmethod
    def load(cls, folder: Traversable | Path) -> PromptClassifier:
        import numpy as np

        meta = json.loads(folder.joinpath(MODEL_FILE).read_text(encoding="utf-8"))
        with folder.joinpath(WEIGHTS_FILE).open("rb") as stream:
            weights = np.load(stream, allow_pickle=False)
        return cls(weights, np.asarray(meta["bias"]), meta["thresholds"], meta)

    def save(self, folder: Path, meta: dict[str, Any]) -> None:
        """Writes the weights (float16) and ``meta`` with the bias and thresholds."""
        import numpy as np

        folder.mkdir(parents=True, exist_ok=True)
        with (folder / WEIGHTS_FILE).open("wb") as stream:
            np.save(stream, self.weights.astype(np.float16), allow_pickle=False)
        document = {
            **meta,
            "labels": list(LABELS),
            "scale": self.scale,
            "buckets": self.buckets,
            "bias": [round(float(value), 6) for value in self.bias],
            "thresholds": {k: round(v, 4) for k, v in sorted(self.thresholds.items())},
        }
        (folder / MODEL_FILE).write_text(
            json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )

    def read(self, prompt: str) -> ClassifierReading:
        """Scores and cues for a prompt as typed."""
        import numpy as np

        features = featurise(prompt, self.buckets)
        if not features.buckets:
            return ClassifierReading({"sexual": 0.0, "gore": 0.0}, {}, self.thresholds)
        index = np.asarray(features.buckets, dtype=np.intp)
        count = np.asarray([len(index)])
        rows = self.weights[index] * feature_scale(count, self.scale)[0]
        logits = rows.sum(axis=0) + self.bias
        exp = np.exp(logits - logits.max())
        probabilities = exp / exp.sum()
        scores = {label: float(probabilities[i]) for i, label in enumerate(LABELS) if i}
        cues = {label: self._cues(features, rows, i) for i, label in enumerate(LABELS) if i}
        return ClassifierReading(scores, cues, self.thresholds)

    @staticmethod
    def _cues(features: Features, rows: npt.NDArray[np.float32], column: int) -> tuple[str, ...]:
        """The words whose features pushed most toward the label, against benign."""
        pull: dict[str, float] = {}
        toward = (rows[:, column] - rows[:, 0]).tolist()
        for owner, weight in zip(features.owners, toward, strict=True):
            pull[owner] = pull.get(owner, 0.0) + weight
        ranked = sorted(pull.items(), key=lambda item: -item[1])
        return tuple(owner for owner, weight in ranked[:_CUES] if weight > 0)


def feature_scale(counts: npt.NDArray[Any], scale: str) -> npt.NDArray[np.float64]:
    """What each feature of a prompt counts for: 1/sqrt(the prompt's feature count), so a long
    prompt does not add up to a confident score from many weak features; or 1."""
    import numpy as np

    if scale == "sqrt":
        scaled: npt.NDArray[np.float64] = 1 / np.sqrt(np.maximum(counts, 1))
        return scaled
    if scale == "none":
        return np.ones(len(counts))
    raise ValueError(f"scale must be 'sqrt' or 'none', got {scale!r}")


@functools.cache
def _shipped() -> PromptClassifier:
    return PromptClassifier.load(resources.files("moderation").joinpath("data", "classifier"))
