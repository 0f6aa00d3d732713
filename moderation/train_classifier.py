"""Trains the prompt classifier on the project's corpus: ``python -m moderation.train_classifier``.

1. Read ``moderation/data/corpus/*.tsv`` (``label<TAB>kind<TAB>lang<TAB>prompt``; minors lines
   count as sexual), one line per distinct prompt once normalised.
2. Split off a validation part by prompt (a hash of the normalised prompt), so a prompt and its
   augmented copies stay on one side.
3. Augment both parts with spelling tricks (``moderation.classifier_augment``), seeded.
4. Train a multinomial logistic regression on hashed n-grams with minibatch Adam, L2 and class
   weights (numpy only).
5. Pick thresholds on validation: the lowest score at which at most 1 % of benign prompts are
   refused (sexual, gore), and the lower bar for prompts that name a minor.
6. Write the weights, thresholds and figures to ``moderation/data/classifier/``.

The same corpus and seed give the same bytes.
"""

from __future__ import annotations

import argparse
import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from moderation.classifier import PromptClassifier, featurise, round_up, scale_for
from moderation.classifier_augment import augment
from moderation.classifier_card import write_card
from moderation.classifier_corpus import (
    CORPUS,
    CorpusError,
    Example,
    apart_from,
    balance,
    distinct,
    in_validation,
    read_corpus,
)
from moderation.classifier_overlap import evaluation_folders

ROOT = Path(__file__).resolve().parent / "data"
OUTPUT = ROOT / "classifier"
BUCKETS = 1 << 18  # 262,144 rows x 3 labels in float16: 1.5 MB


@dataclass(frozen=True)
class Settings:
    seed: int = 16
    buckets: int = BUCKETS
    copies: int = 6  # augmented variants of each prompt
    validation_percent: int = 15
    epochs: int = 12
    batch: int = 32
    learning_rate: float = 0.005
    l2: float = 1e-6
    max_false_positives: float = 0.01
    floor: float = 0.5  # no sexual bar under even odds
    # Gore's bar is higher: on the development sets every gore catch the classifier alone made
    # scored 0.85 or more, while innocent prompts reached 0.5-0.7 ("red" alone, a battle scene).
    gore_floor: float = 0.75
    minors_floor: float = 0.3
    scale: str = "sqrt"  # each feature of a prompt counts 1/sqrt(its feature count), or 1


@dataclass
class Matrix:
    """Rows of hashed features, stored flat: row i is ``index[start[i]:start[i + 1]]``."""

    index: npt.NDArray[np.int64]
    start: npt.NDArray[np.int64]
    target: npt.NDArray[np.int64]
    weight: npt.NDArray[np.float64]  # what a row's loss counts for (see ``balance``)
    original: npt.NDArray[np.bool_]  # the prompt as written, not an augmented copy
    kinds: list[str]
    labels: list[str]
    scale: str

    @classmethod
    def build(cls, examples: list[Example], settings: Settings, rng: random.Random) -> Matrix:
        index: list[int] = []
        start = [0]
        target, weight, original, kinds, labels = [], [], [], [], []
        balanced = balance(examples)
        for example, share in zip(examples, balanced, strict=True):
            variants = [example.prompt, *augment(example.prompt, settings.copies, rng)]
            for number, text in enumerate(variants):
                index.extend(featurise(text, settings.buckets).buckets)
                start.append(len(index))
                target.append(example.target)
                weight.append(share)
                original.append(number == 0)
                kinds.append(example.kind)
                labels.append(example.label)
        return cls(
            np.asarray(index, dtype=np.int64),
            np.asarray(start, dtype=np.int64),
            np.asarray(target, dtype=np.int64),
            np.asarray(weight, dtype=np.float64),
            np.asarray(original, dtype=bool),
            kinds,
            labels,
            settings.scale,
        )

    def __len__(self) -> int:
        return len(self.target)

    def rows(
        self, chosen: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any]]:
        """(feature buckets, the position in ``chosen`` each came from, the feature's value)."""
        lengths = self.start[chosen + 1] - self.start[chosen]
        segment = np.repeat(np.arange(len(chosen)), lengths)
        offsets = np.repeat(self.start[chosen] - np.cumsum(lengths) + lengths, lengths)
        value = np.repeat(feature_scale(lengths, self.scale), lengths)
        return self.index[np.arange(lengths.sum()) + offsets], segment, value


def feature_scale(counts: npt.NDArray[Any], scale: str) -> npt.NDArray[np.float64]:
    """``moderation.classifier.scale_for`` for many prompts at once."""
    scale_for(1, scale)  # refuses an unknown scale
    if scale == "sqrt":
        scaled: npt.NDArray[np.float64] = 1 / np.sqrt(np.maximum(counts, 1))
        return scaled
    return np.ones(len(counts))


def _logits(
    weights: npt.NDArray[np.float64],
    bias: npt.NDArray[np.float64],
    index: npt.NDArray[Any],
    segment: npt.NDArray[Any],
    value: npt.NDArray[Any],
    count: int,
) -> npt.NDArray[np.float64]:
    picked = weights[index] * value[:, None]
    out = np.stack(
        [np.bincount(segment, weights=picked[:, k], minlength=count) for k in range(3)], axis=1
    )
    return out + bias


def _softmax(logits: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities: npt.NDArray[np.float64] = exp / exp.sum(axis=1, keepdims=True)
    return probabilities


def train(data: Matrix, settings: Settings) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """Minibatch Adam on the class-weighted cross-entropy with L2; returns (weights, bias).

    Adam is lazy: a batch moves only the rows its prompts touch (and their L2), which keeps a
    step proportional to the batch, not to the table."""
    rng = np.random.default_rng(settings.seed)
    weights = np.zeros((settings.buckets, 3))
    bias = np.zeros(3)
    moment, square = np.zeros_like(weights), np.zeros_like(weights)
    bias_moment, bias_square = np.zeros(3), np.zeros(3)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    step = 0
    for _ in range(settings.epochs):
        order = rng.permutation(len(data))
        for first in range(0, len(order), settings.batch):
            chosen = order[first : first + settings.batch]
            index, segment, value = data.rows(chosen)
            logits = _logits(weights, bias, index, segment, value, len(chosen))
            error = _softmax(logits)
            target = data.target[chosen]
            error[np.arange(len(chosen)), target] -= 1
            error *= data.weight[chosen][:, None] / len(chosen)
            spread = error[segment] * value[:, None]
            rows, where = np.unique(index, return_inverse=True)
            grad = np.stack(
                [np.bincount(where, weights=spread[:, k], minlength=len(rows)) for k in range(3)],
                axis=1,
            )
            grad += settings.l2 * weights[rows]
            step += 1
            correction = np.sqrt(1 - beta2**step) / (1 - beta1**step)
            moment[rows] = beta1 * moment[rows] + (1 - beta1) * grad
            square[rows] = beta2 * square[rows] + (1 - beta2) * grad * grad
            weights[rows] -= (
                settings.learning_rate * correction * moment[rows] / (np.sqrt(square[rows]) + eps)
            )
            bias_grad = error.sum(axis=0)
            bias_moment = beta1 * bias_moment + (1 - beta1) * bias_grad
            bias_square = beta2 * bias_square + (1 - beta2) * bias_grad * bias_grad
            bias -= settings.learning_rate * correction * bias_moment / (np.sqrt(bias_square) + eps)
    return weights, bias


def predict(
    weights: npt.NDArray[Any], bias: npt.NDArray[Any], data: Matrix
) -> npt.NDArray[np.float64]:
    everything = np.arange(len(data))
    index, segment, value = data.rows(everything)
    return _softmax(_logits(weights, bias, index, segment, value, len(data)))


def threshold_for(benign_scores: npt.NDArray[Any], share: float) -> float:
    """The lowest threshold at which at most ``share`` of the benign scores reach it."""
    if len(benign_scores) == 0:
        return 0.5
    ranked = np.sort(benign_scores)[::-1]
    allowed = int(np.floor(share * len(ranked)))
    if allowed >= len(ranked):
        return 0.0
    return float(np.nextafter(ranked[allowed], 1.0))


def pick_thresholds(scores: npt.NDArray[Any], data: Matrix, settings: Settings) -> dict[str, float]:
    """Sexual and gore: the lowest score at which at most ``max_false_positives`` of the benign
    validation prompts are over, but never under ``floor``: validation prompts are written in
    the corpus' own style, and a bar under even odds that holds there need not hold on prompts
    unlike them. Minors (the bar a sexual score must reach when the prompt names a minor): at
    most that share of the benign prompts about children over and five times it of all benign
    ones, never under ``minors_floor`` nor over the sexual bar."""
    share = settings.max_false_positives
    benign = data.target == 0
    children = benign & np.asarray([kind == "children" for kind in data.kinds])
    sexual = max(threshold_for(scores[benign, 1], share), settings.floor)
    minors = max(
        threshold_for(scores[children, 1], share) if children.any() else sexual,
        threshold_for(scores[benign, 1], 5 * share),
        settings.minors_floor,
    )
    picked = {
        "sexual": sexual,
        "gore": max(threshold_for(scores[benign, 2], share), settings.gore_floor),
        "minors": min(minors, sexual),
    }
    # As shipped (4 decimals, rounded up): the figures are those of the bars the bot uses.
    return {label: round_up(value) for label, value in picked.items()}


def figures(scores: npt.NDArray[Any], data: Matrix, thresholds: dict[str, float]) -> dict[str, Any]:
    """Recall and false positives on validation: prompts as written, and with their copies."""
    out: dict[str, Any] = {}
    for part, mask in (("as_written", data.original), ("with_copies", np.ones(len(data), bool))):
        sexual_over = scores[:, 1] >= thresholds["sexual"]
        gore_over = scores[:, 2] >= thresholds["gore"]
        caught = np.where(data.target == 2, gore_over, sexual_over)
        labels = np.asarray(data.labels)
        kinds = np.asarray(data.kinds)
        benign = mask & (labels == "benign")
        minors = mask & (labels == "minors")
        section: dict[str, Any] = {
            "prompts": int(mask.sum()),
            "recall_sexual": _share(caught, mask & (data.target == 1)),
            "recall_minors_at_minors_bar": _share(scores[:, 1] >= thresholds["minors"], minors),
            "recall_gore": _share(caught, mask & (data.target == 2)),
            "false_positive_sexual": _share(sexual_over, benign),
            "false_positive_gore": _share(gore_over, benign),
            "recall_by_kind": {
                kind: _share(caught, mask & (data.target > 0) & (kinds == kind))
                for kind in sorted(set(kinds[mask & (data.target > 0)]))
            },
            "false_positive_by_kind": {
                kind: _share(sexual_over | gore_over, benign & (kinds == kind))
                for kind in sorted(set(kinds[benign]))
            },
        }
        out[part] = section
    return out


def _share(hit: npt.NDArray[np.bool_], mask: npt.NDArray[np.bool_]) -> float | None:
    total = int(mask.sum())
    return round(float(hit[mask].sum()) / total, 4) if total else None


def run(
    corpus: Path, output: Path, settings: Settings, evaluation: list[Path] | None = None
) -> dict[str, Any]:
    """Reads, splits, augments, trains, picks thresholds and writes; returns the model's meta.
    Corpus lines an evaluation set holds (``evaluation``: the shipped sets by default) are left
    out."""
    if evaluation is None:
        evaluation = evaluation_folders()
    started = time.perf_counter()
    examples, conflicts = distinct(read_corpus(corpus))
    examples, left_out = apart_from(examples, evaluation)
    if not examples:
        raise CorpusError(f"no corpus lines in {corpus}")
    rng = random.Random(settings.seed)
    held = [e for e in examples if in_validation(e, settings.validation_percent)]
    kept = [e for e in examples if not in_validation(e, settings.validation_percent)]
    train_rows = Matrix.build(kept, settings, rng)
    validation = Matrix.build(held, settings, rng)
    weights, bias = train(train_rows, settings)
    # Thresholds are picked on the weights as shipped (float16).
    weights = weights.astype(np.float16).astype(np.float64)
    scores = predict(weights, bias, validation)
    thresholds = pick_thresholds(scores, validation, settings)
    meta = {
        "corpus": {
            "files": {
                name: count
                for name, count in sorted(Counter(e.source.split(":")[0] for e in examples).items())
            },
            "prompts": len(examples),
            "by_label": dict(sorted(Counter(e.label for e in examples).items())),
            "conflicting_labels_dropped": conflicts,
            "in_an_evaluation_set_left_out": left_out,
            "train_prompts": len(kept),
            "validation_prompts": len(held),
            "train_rows_with_copies": len(train_rows),
        },
        "settings": settings.__dict__,
        "validation": figures(scores, validation, thresholds),
    }
    table = weights.astype("<f2").tobytes()
    PromptClassifier(table, bias.tolist(), thresholds, {"scale": settings.scale}).save(output, meta)
    meta["thresholds"] = thresholds
    # Not in the weights nor model.json: those are the same bytes for the same corpus.
    seconds = time.perf_counter() - started
    write_card(output, meta, seconds)
    return {**meta, "training_seconds": round(seconds, 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--seed", type=int, default=Settings.seed)
    parser.add_argument("--epochs", type=int, default=Settings.epochs)
    args = parser.parse_args(argv)
    meta = run(args.corpus, args.output, Settings(seed=args.seed, epochs=args.epochs))
    import json

    print(json.dumps({k: meta[k] for k in ("corpus", "validation", "training_seconds")}, indent=2))


if __name__ == "__main__":
    main()
