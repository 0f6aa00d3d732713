"""The classifier's corpus as training reads it: ``moderation/data/corpus/*.tsv`` lines, one per
distinct prompt, split by prompt, weighed by language, apart from the evaluation sets."""

from __future__ import annotations

import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from moderation.classifier_overlap import clashes, evaluation_prompts
from moderation.normalise import normalise

CORPUS = Path(__file__).resolve().parent / "data" / "corpus"
CORPUS_LABELS = {"benign": 0, "sexual": 1, "minors": 1, "gore": 2}


class CorpusError(ValueError):
    """A corpus line that cannot be read; names the file and line."""


@dataclass(frozen=True)
class Example:
    label: str  # as written: benign, sexual, minors, gore
    kind: str
    lang: str
    prompt: str
    source: str  # file:line

    @property
    def target(self) -> int:
        return CORPUS_LABELS[self.label]


def read_corpus(folder: Path = CORPUS) -> list[Example]:
    """Every line of every ``*.tsv`` in the folder, in file order; ``#`` lines are comments."""
    examples: list[Example] = []
    for path in sorted(folder.glob("*.tsv")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, start=1):
            if not line.strip() or line.startswith("#"):
                continue
            fields = line.split("\t")
            if len(fields) != 4 or fields[0] not in CORPUS_LABELS or not fields[3].strip():
                raise CorpusError(
                    f"{path.name}:{number}: expected label<TAB>kind<TAB>lang<TAB>prompt with "
                    f"label one of {sorted(CORPUS_LABELS)}, got {line[:60]!r}"
                )
            label, kind, lang, prompt = fields
            examples.append(Example(label, kind, lang, prompt, f"{path.name}:{number}"))
    return examples


def distinct(examples: list[Example]) -> tuple[list[Example], list[str]]:
    """One example per normalised prompt; a prompt given two labels is dropped and named."""
    by_text: dict[str, list[Example]] = {}
    for example in examples:
        by_text.setdefault(normalise(example.prompt), []).append(example)
    kept, conflicts = [], []
    for group in by_text.values():
        if len({example.target for example in group}) > 1:
            conflicts.append(", ".join(example.source for example in group))
            continue
        kept.append(group[0])
    return kept, conflicts


def in_validation(example: Example, percent: int) -> bool:
    return zlib.crc32(normalise(example.prompt).encode()) % 100 < percent


def balance(examples: list[Example]) -> list[float]:
    """A weight per example: within each language, benign prompts and those to refuse weigh
    the same in all, so that a language is no reason of its own (the writers wrote more lines
    to refuse than benign ones in some); then each label (benign, sexual, gore) weighs the same
    in all, so that gore, the rarest, is not read as unlikely."""
    groups = Counter((e.lang, e.target == 0) for e in examples)
    out = []
    for e in examples:
        size = groups[(e.lang, True)] + groups[(e.lang, False)]
        out.append(size / 2 / groups[(e.lang, e.target == 0)])
    by_label: defaultdict[int, float] = defaultdict(float)
    for e, weight in zip(examples, out, strict=True):
        by_label[e.target] += weight
    total = sum(by_label.values())
    return [
        w * total / len(by_label) / by_label[e.target] for e, w in zip(examples, out, strict=True)
    ]


def apart_from(examples: list[Example], folders: list[Path]) -> tuple[list[Example], list[str]]:
    """The examples no evaluation set holds, and the corpus lines left out (named by file and
    line only)."""
    prompts = [example.prompt for example in examples]
    found: set[int] = set()
    for folder in folders:
        found.update(number for number, _ in clashes(prompts, evaluation_prompts(folder)))
    kept = [example for number, example in enumerate(examples) if number not in found]
    return kept, sorted(examples[number].source for number in found)
