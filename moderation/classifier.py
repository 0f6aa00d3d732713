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

Reading needs no numpy (the bot's light commands load the shipped classifier): the weights are
kept as the raw float16 bytes of ``weights.npy`` and a read unpacks the few rows it needs. numpy
is for training only (``moderation.train_classifier``).
"""

from __future__ import annotations

import ast
import functools
import itertools
import json
import math
import re
import struct
import unicodedata
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from moderation.normalise import base, join_letter_runs, leet_reading

LABELS = ("benign", "sexual", "gore")
WEIGHTS_FILE = "weights.npy"
MODEL_FILE = "model.json"
NGRAMS = (1, 2, 3, 4, 5)
# A longer run (a sentence in a script without spaces, a glued tag list) is read with n-grams up
# to 3 only: its features grow 3 per character, not 5, which bounds a long prompt's read.
MAX_WORD = 40
LONG_NGRAMS = (1, 2, 3)
MAX_CUE = 12  # a longer word is named in a cue by its n-grams, not whole

_WORD = re.compile(r"[^\W_]+")
_CUES = 3  # words named in a reason
_CACHED_WORDS = 65536  # words whose sums a classifier keeps (then it starts again)
_ROW = struct.Struct("<3e")  # one bucket's weights: benign, sexual, gore
_NPY_MAGIC = b"\x93NUMPY"


@dataclass(frozen=True)
class ClassifierReading:
    """What the classifier makes of one prompt."""

    scores: dict[str, float]  # "sexual", "gore": 0..1
    cues: dict[str, tuple[str, ...]]  # per label, the words that weighed most toward it
    thresholds: dict[str, float]  # the classifier's, so that ``over`` needs nothing else

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


def _is_symbol(char: str) -> bool:
    return unicodedata.category(char)[0] == "S"


def tokens(prompt: str) -> tuple[list[str], list[str], list[str]]:
    """(words in order, the leetspeak reading's words in order, symbols in order)."""
    text = base(prompt)
    chunks = text.split()
    words = join_letter_runs([word for chunk in chunks for word in _WORD.findall(chunk)])
    leet = leet_reading(prompt).split()
    glued = []
    for chunk in chunks:
        inner = _WORD.findall(chunk)
        # Rejoins "n.u.d.e"; a longer chunk (a tag list with no spaces) is read by its pieces.
        if len(inner) > 1 and sum(map(len, inner)) <= MAX_WORD:
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
    Japanese sentence is one word) the n-gram itself. Cached: words repeat. A run longer than
    ``MAX_WORD`` gets n-grams up to 3 only."""
    mask = buckets - 1
    out = [zlib.crc32(("w " + word).encode()) & mask]
    names = [word]
    long = len(word) > MAX_CUE or (len(word) > 3 and any(map(_unspaced, word)))
    padded = f"<{word}>"
    for n in NGRAMS if len(word) <= MAX_WORD else LONG_NGRAMS:
        for i in range(len(padded) - n + 1):
            gram = padded[i : i + n]
            out.append(zlib.crc32(("c " + gram).encode()) & mask)
            names.append(gram.strip("<>") or word if long else word)
    return tuple(out), tuple(names)


def word_features(words: list[str], leet: list[str]) -> list[str]:
    """The words a prompt's character n-grams are read from (``tokens``), each once: the
    words, then the leetspeak reading's words the plain reading lacks. A word said again adds
    nothing ("red red red ..." reads as "red"; counted each time, 249 of them read as gore)."""
    return list(dict.fromkeys([*words, *leet]))


def other_features(leet: list[str], symbols: list[str], buckets: int) -> Features:
    """The features that are not a word's own (``tokens``): pairs of neighbouring words,
    symbols and pairs of symbols, each once."""
    mask = buckets - 1
    named: dict[str, str] = {}  # feature text -> owner, each feature once
    for first, second in itertools.pairwise(leet):
        named.setdefault(f"b {first} {second}", f"{first} {second}")
    for i, symbol in enumerate(symbols):
        named.setdefault("s " + symbol, symbol)
        if i:
            pair = symbols[i - 1] + symbol
            named.setdefault("s " + pair, pair)
    return Features([zlib.crc32(text.encode()) & mask for text in named], list(named.values()))


def featurise(prompt: str, buckets: int) -> Features:
    """The features of a prompt as typed (what training reads; ``read`` adds up the same)."""
    out: list[int] = []
    owners: list[str] = []
    words, leet, symbols = tokens(prompt)
    for word in word_features(words, leet):
        grams, names = _word_grams(word, buckets)
        out.extend(grams)
        owners.extend(names)
    rest = other_features(leet, symbols, buckets)
    return Features([*out, *rest.buckets], [*owners, *rest.owners])


@dataclass(frozen=True)
class _Sums:
    """What a group of features adds up to: their count, the summed weights per label, and per
    owner (the word named in a cue) its pull toward sexual and toward gore against benign."""

    count: int
    totals: tuple[float, float, float]
    pulls: tuple[tuple[str, float, float], ...]


class PromptClassifier:
    """Scores prompts as sexual and gore; ``thresholds`` are where each label counts.

    ``weights`` is the table as raw little-endian float16, ``buckets`` rows of one weight per
    label: a read unpacks only the rows its features hash to, so no array library is needed."""

    def __init__(
        self,
        weights: bytes,
        bias: Sequence[float],
        thresholds: dict[str, float],
        meta: dict[str, Any] | None = None,
    ) -> None:
        buckets, rest = divmod(len(weights), _ROW.size)
        if rest or not buckets or buckets & (buckets - 1):
            raise ValueError(
                f"weights must be a power of two of rows of {len(LABELS)} float16, "
                f"got {len(weights)} bytes"
            )
        if len(bias) != len(LABELS):
            raise ValueError(f"bias must have {len(LABELS)} values, got {len(bias)}")
        missing = {"sexual", "gore", "minors"} - thresholds.keys()
        if missing:
            raise ValueError(f"thresholds lack {sorted(missing)}")
        self.weights = bytes(weights)
        self.bias = tuple(float(value) for value in bias)
        self.thresholds = dict(thresholds)
        self.meta = dict(meta or {})
        self.scale = str(self.meta.get("scale", "none"))
        scale_for(1, self.scale)  # refuses an unknown scale now, not at a read
        self.buckets = buckets
        self._cache: dict[str, _Sums] = {}

    @classmethod
    def shipped(cls) -> PromptClassifier:
        """The classifier in ``moderation/data/classifier/`` (loaded once)."""
        return _shipped()

    @classmethod
    def load(cls, folder: Traversable | Path) -> PromptClassifier:
        meta = json.loads(folder.joinpath(MODEL_FILE).read_text(encoding="utf-8"))
        weights = npy_float16_rows(folder.joinpath(WEIGHTS_FILE).read_bytes(), len(LABELS))
        return cls(weights, meta["bias"], meta["thresholds"], meta)

    def save(self, folder: Path, meta: dict[str, Any]) -> None:
        """Writes the weights as ``.npy`` (float16) and ``meta`` with the bias and thresholds
        (rounded up, so rounding never lets one more benign prompt through)."""
        folder.mkdir(parents=True, exist_ok=True)
        header = repr(
            {"descr": "<f2", "fortran_order": False, "shape": (self.buckets, len(LABELS))}
        )
        pad = -(len(_NPY_MAGIC) + 4 + len(header) + 1) % 64  # numpy aligns the data to 64
        with (folder / WEIGHTS_FILE).open("wb") as stream:
            encoded = (header + " " * pad + "\n").encode("latin1")
            stream.write(_NPY_MAGIC + b"\x01\x00" + struct.pack("<H", len(encoded)))
            stream.write(encoded + self.weights)
        document = {
            **meta,
            "labels": list(LABELS),
            "scale": self.scale,
            "buckets": self.buckets,
            "bias": [round(value, 6) for value in self.bias],
            "thresholds": {k: round_up(v) for k, v in sorted(self.thresholds.items())},
        }
        (folder / MODEL_FILE).write_text(
            json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )

    def read(self, prompt: str) -> ClassifierReading:
        """Scores and cues for a prompt as typed."""
        words, leet, symbols = tokens(prompt)
        parts = [self._word_sums(word) for word in word_features(words, leet)]
        rest = other_features(leet, symbols, self.buckets)
        parts.append(self._sums(rest.buckets, rest.owners))
        count = sum(part.count for part in parts)
        if not count:
            return ClassifierReading({"sexual": 0.0, "gore": 0.0}, {}, self.thresholds)
        totals = [sum(part.totals[k] for part in parts) for k in range(len(LABELS))]
        # The cues rank owners by their pull; the prompt's feature scale is the same for all.
        sexual: dict[str, float] = {}
        gore: dict[str, float] = {}
        for part in parts:
            for owner, to_sexual, to_gore in part.pulls:
                sexual[owner] = sexual.get(owner, 0.0) + to_sexual
                gore[owner] = gore.get(owner, 0.0) + to_gore
        scale = scale_for(count, self.scale)
        logits = [total * scale + bias for total, bias in zip(totals, self.bias, strict=True)]
        top = max(logits)
        exps = [math.exp(logit - top) for logit in logits]
        whole = sum(exps)
        scores = {"sexual": exps[1] / whole, "gore": exps[2] / whole}
        cues = {"sexual": _top(sexual), "gore": _top(gore)}
        return ClassifierReading(scores, cues, self.thresholds)

    def _word_sums(self, word: str) -> _Sums:
        """One word's sums, cached: words repeat from prompt to prompt."""
        found = self._cache.get(word)
        if found is None:
            if len(self._cache) >= _CACHED_WORDS:
                self._cache.clear()
            found = self._cache[word] = self._sums(*_word_grams(word, self.buckets))
        return found

    def _sums(self, buckets: Sequence[int], owners: Sequence[str]) -> _Sums:
        unpack, weights, size = _ROW.unpack_from, self.weights, _ROW.size
        totals = [0.0, 0.0, 0.0]
        pulls: dict[str, list[float]] = {}
        for bucket, owner in zip(buckets, owners, strict=True):
            benign, sexual, gore = unpack(weights, bucket * size)
            totals[0] += benign
            totals[1] += sexual
            totals[2] += gore
            pull = pulls.setdefault(owner, [0.0, 0.0])
            pull[0] += sexual - benign
            pull[1] += gore - benign
        return _Sums(
            len(buckets),
            (totals[0], totals[1], totals[2]),
            tuple((owner, pull[0], pull[1]) for owner, pull in pulls.items()),
        )


def _top(pull: dict[str, float]) -> tuple[str, ...]:
    """The words whose features pushed most toward the label."""
    ranked = sorted(pull.items(), key=lambda item: -item[1])
    return tuple(owner for owner, weight in ranked[:_CUES] if weight > 0)


def round_up(value: float) -> float:
    """A threshold to 4 decimals, never below what was picked."""
    return math.ceil(value * 1e4) / 1e4


def scale_for(count: int, scale: str) -> float:
    """What each feature of a prompt with ``count`` features counts for: 1/sqrt(count), so a
    long prompt does not add up to a confident score from many weak features; or 1."""
    if scale == "sqrt":
        return 1 / math.sqrt(max(count, 1))
    if scale == "none":
        return 1.0
    raise ValueError(f"scale must be 'sqrt' or 'none', got {scale!r}")


def npy_float16_rows(data: bytes, columns: int) -> bytes:
    """The raw little-endian float16 table of a C-ordered ``.npy`` file of shape
    (rows, ``columns``), read without numpy (the bot's light commands load the classifier)."""
    if not data.startswith(_NPY_MAGIC):
        raise ValueError("not a .npy file")
    major = data[len(_NPY_MAGIC)]  # then the minor version, then the header length
    if major == 1:
        (length,), start = struct.unpack_from("<H", data, 8), 10
    elif major in (2, 3):
        (length,), start = struct.unpack_from("<I", data, 8), 12
    else:
        raise ValueError(f"unknown .npy version {major}")
    header = ast.literal_eval(data[start : start + length].decode("latin1"))
    shape = header.get("shape", ())
    if (
        header.get("descr") != "<f2"
        or header.get("fortran_order")
        or len(shape) != 2
        or shape[1] != columns
    ):
        raise ValueError(f"expected little-endian float16 rows of {columns}, got {header}")
    table = data[start + length :]
    if len(table) != shape[0] * columns * 2:
        raise ValueError(f"expected {shape[0] * columns * 2} bytes of weights, got {len(table)}")
    return table


@functools.cache
def _shipped() -> PromptClassifier:
    return PromptClassifier.load(resources.files("moderation").joinpath("data", "classifier"))
