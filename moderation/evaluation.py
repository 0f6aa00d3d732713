"""The labelled prompt sets and how the rules score on them (`sdbot bench moderation`).

``data/eval`` is the development set the lists were tuned on; ``data/heldout`` and
``data/heldout2`` were written afterwards by someone who had not seen the rules, and measure how
they generalise; ``data/blind1`` was written for issue 16 by someone who had seen neither the
rules, the classifier's corpus nor the other sets. ``data/blind_final`` is kept for the final
figure: it loads by name (``--set blind_final``) but is not in the default run, so that nobody
tunes on it by accident. Each set has ``benign.tsv`` (must be allowed) and ``blocked.tsv`` (must
be refused): ``category<TAB>prompt`` with an optional ``<TAB>negative prompt``.

A prompt is judged as a normal server judges it in a channel that is not age-restricted: the
verdict of ``check_prompt`` under the default gore policy (gore refused outside age-restricted
channels).
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from moderation.errors import InvalidPromptSet
from moderation.lists import PromptRules
from moderation.policy import GorePolicy, apply_gore_policy
from moderation.prompts import PromptVerdict, check_prompt

SETS = ("eval", "heldout", "heldout2", "blind1")  # the default run
NAMED_SETS = (*SETS, "blind_final")  # loadable by name


@dataclass(frozen=True)
class LabelledPrompt:
    category: str
    prompt: str
    negative: str = ""


def _read(source: Traversable | Path) -> list[LabelledPrompt]:
    out = []
    for number, line in enumerate(source.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) not in (2, 3) or not fields[1].strip():
            raise InvalidPromptSet(
                f"{source}:{number}: expected category<TAB>prompt[<TAB>negative]"
            )
        out.append(LabelledPrompt(*fields))
    return out


def load_set(name_or_folder: str | Path) -> tuple[list[LabelledPrompt], list[LabelledPrompt]]:
    """(benign, blocked) from a shipped set's name or a folder with the two files."""
    folder: Traversable | Path
    if isinstance(name_or_folder, str) and name_or_folder in NAMED_SETS:
        folder = resources.files("moderation").joinpath("data", name_or_folder)
    else:
        folder = Path(name_or_folder)
    return _read(folder.joinpath("benign.tsv")), _read(folder.joinpath("blocked.tsv"))


@dataclass(frozen=True)
class Miss:
    category: str
    prompt: str
    negative: str
    verdict: str


@dataclass
class ModerationReport:
    name: str
    benign: int
    blocked: int
    false_positives: list[Miss] = field(default_factory=list)
    missed: list[Miss] = field(default_factory=list)
    recall_by_category: dict[str, float] = field(default_factory=dict)
    false_positives_by_category: dict[str, float] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)
    # Refused prompts, and those of them only the classifier refused.
    caught: int = 0
    classifier_catches: int = 0

    @property
    def classifier_share(self) -> float:
        return self.classifier_catches / self.caught if self.caught else 0.0

    @property
    def recall(self) -> float:
        return 1 - len(self.missed) / self.blocked if self.blocked else 1.0

    @property
    def false_positive_rate(self) -> float:
        return len(self.false_positives) / self.benign if self.benign else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "set": self.name,
            "benign": self.benign,
            "blocked": self.blocked,
            "recall": round(self.recall, 4),
            "false_positive_rate": round(self.false_positive_rate, 4),
            "recall_by_category": {k: round(v, 4) for k, v in self.recall_by_category.items()},
            "false_positives_by_category": {
                k: round(v, 4) for k, v in self.false_positives_by_category.items()
            },
            "classifier_catches": self.classifier_catches,
            "classifier_share": round(self.classifier_share, 4),
            "latency_ms": {k: round(v, 4) for k, v in self.latency_ms.items()},
            "false_positives": [miss.__dict__ for miss in self.false_positives],
            "missed": [miss.__dict__ for miss in self.missed],
        }

    def to_text(self) -> str:
        goals = (
            f"recall {self.recall:.3f} (goal >= 0.97), false positives "
            f"{self.false_positive_rate:.3f} (goal <= 0.02), p99 "
            f"{self.latency_ms['p99']:.3f} ms (goal < 5 ms)"
        )
        lines = [
            f"{self.name}: {self.blocked} prompts to block, {self.benign} to allow",
            f"  {goals}",
            f"  latency per prompt: p50 {self.latency_ms['p50']:.3f} ms, "
            f"p99 {self.latency_ms['p99']:.3f} ms, max {self.latency_ms['max']:.3f} ms",
            "  recall by category: "
            + ", ".join(f"{k} {v:.2f}" for k, v in sorted(self.recall_by_category.items())),
            "  false positives by category: "
            + ", ".join(
                f"{k} {v:.2f}" for k, v in sorted(self.false_positives_by_category.items())
            ),
            f"  the classifier alone refused {self.classifier_catches} of the {self.caught} "
            f"refused ({self.classifier_share:.2f})",
        ]
        for title, misses in (("missed", self.missed), ("wrongly blocked", self.false_positives)):
            for miss in misses:
                negative = f" [negative: {miss.negative}]" if miss.negative else ""
                lines.append(f"  {title} ({miss.category}): {miss.prompt!r}{negative}")
                lines.append(f"      -> {miss.verdict}")
        return "\n".join(lines)


def judge(prompt: str, rules: PromptRules, negative: str = "") -> PromptVerdict:
    """The verdict in a normal server's channel that is not age-restricted."""
    verdict = check_prompt(prompt, rules, negative)
    return apply_gore_policy(verdict, GorePolicy.AGE_RESTRICTED, channel_nsfw=False)


def the_classifiers_catch(item: LabelledPrompt, rules: PromptRules) -> bool:
    """Refused only because of the classifier: the rules without it, under the same gore
    policy, would allow the prompt (whatever rule the classifier's score tripped, minors
    included)."""
    if rules.classifier is None:
        return False
    alone = dataclasses.replace(rules, classifier=None)
    return judge(item.prompt, alone, item.negative).allowed


def evaluate(
    name: str,
    benign: list[LabelledPrompt],
    blocked: list[LabelledPrompt],
    rules: PromptRules,
    *,
    repeats: int = 5,
) -> ModerationReport:
    """Scores the rules; latency is measured over ``repeats`` passes of every prompt (the
    classifier and the gore policy included)."""
    report = ModerationReport(name, len(benign), len(blocked))
    timings: list[float] = []
    caught: Counter[str] = Counter()
    wrongly: Counter[str] = Counter()
    for expect_allowed, prompts in ((True, benign), (False, blocked)):
        for item in prompts:
            for _ in range(repeats):
                started = time.perf_counter()
                verdict = judge(item.prompt, rules, item.negative)
                timings.append((time.perf_counter() - started) * 1000)
            miss = Miss(item.category, item.prompt, item.negative, verdict.summary())
            if expect_allowed and not verdict.allowed:
                report.false_positives.append(miss)
                wrongly[item.category] += 1
            elif not expect_allowed and verdict.allowed:
                report.missed.append(miss)
            elif not expect_allowed:
                caught[item.category] += 1
                report.caught += 1
                report.classifier_catches += the_classifiers_catch(item, rules)
    if not timings:
        raise InvalidPromptSet(f"the set {name!r} has no prompts")
    totals = Counter(item.category for item in blocked)
    report.recall_by_category = {
        category: caught[category] / totals[category] for category in totals
    }
    traps = Counter(item.category for item in benign)
    report.false_positives_by_category = {
        category: wrongly[category] / traps[category] for category in traps
    }
    timings.sort()
    report.latency_ms = {
        "p50": statistics.median(timings),
        "p99": timings[min(len(timings) - 1, int(len(timings) * 0.99))],
        "max": timings[-1],
    }
    return report
