"""The prompt classifier: its corpus stays apart from every evaluation set, the shipped weights
read plain prompts right in several languages, and training is repeatable."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from moderation.classifier import PromptClassifier, featurise
from moderation.classifier_augment import TRICKS, augment
from moderation.classifier_corpus import (
    CORPUS,
    CorpusError,
    Example,
    apart_from,
    distinct,
    read_corpus,
)
from moderation.classifier_overlap import clashes, evaluation_folders, evaluation_prompts
from moderation.evaluation import NAMED_SETS
from moderation.train_classifier import Settings, run

DATA = Path(__file__).resolve().parent.parent / "moderation" / "data"
# Written for the final figures by people who never saw the rules or the corpus: this test reads
# them to prove the corpus keeps apart, and never prints a line of them.
BLIND = ("blind1", "blind_final")


def test_the_evaluation_sets_are_all_found() -> None:
    """Every set the bench can load by name is one the overlap check reads, the blind ones
    included."""
    names = {folder.name for folder in evaluation_folders()}
    assert set(NAMED_SETS) <= names, set(NAMED_SETS) - names
    assert set(BLIND) <= set(NAMED_SETS)


def test_training_leaves_out_every_corpus_line_an_evaluation_set_holds() -> None:
    """No prompt of an evaluation set is trained on: the same once normalised, 80 % of its
    word 4-grams, or all its words give or take two. The corpus files may hold such lines (their
    writers never saw the sets); the shipped model names the ones it left out, and they are
    exactly those."""
    examples, _ = distinct(read_corpus())
    assert len(examples) > 1000
    _, left_out = apart_from(examples, evaluation_folders())
    meta = json.loads((DATA / "classifier" / "model.json").read_text(encoding="utf-8"))
    shipped = meta["corpus"]["in_an_evaluation_set_left_out"]
    # File and line only: a blind set's prompt is never shown, not even the corpus' copy of it.
    assert shipped == left_out, (
        f"left out now {sorted(set(left_out) - set(shipped))}, no longer "
        f"{sorted(set(shipped) - set(left_out))}; retrain: python -m moderation.train_classifier"
    )


def test_the_shipped_weights_were_trained_on_todays_corpus() -> None:
    examples, _ = distinct(read_corpus())
    kept, _ = apart_from(examples, evaluation_folders())
    meta = json.loads((DATA / "classifier" / "model.json").read_text(encoding="utf-8"))
    files = dict(sorted(Counter(e.source.split(":")[0] for e in kept).items()))
    now = {"files": files, "prompts": len(kept)}
    then = {key: meta["corpus"][key] for key in now}
    assert then == now, "retrain: python -m moderation.train_classifier"


def test_an_evaluation_prompt_in_the_corpus_is_found_and_left_out_of_training(
    tmp_path: Path,
) -> None:
    (tmp_path / "set").mkdir()
    (tmp_path / "set" / "benign.tsv").write_text(
        "ordinary\ta red fox sleeping in the snow at dawn\n", encoding="utf-8"
    )
    (tmp_path / "set" / "blocked.tsv").write_text("explicit\tnude child\n", encoding="utf-8")
    corpus = [
        "A RED FOX sleeping in the snow at dawn",  # the same once normalised
        "a red fox sleeping in the snow at dawn, 8k",  # the same template
        "a red fox running through the forest",
        "nude child, 8k",  # a short prompt with a word added
    ]
    assert [n for n, _ in clashes(corpus, evaluation_prompts(tmp_path / "set"))] == [0, 1, 3]
    examples = [Example("benign", "ordinary", "en", p, f"c.tsv:{n}") for n, p in enumerate(corpus)]
    kept, left_out = apart_from(examples, [tmp_path / "set"])
    assert [e.prompt for e in kept] == [corpus[2]]
    assert left_out == ["c.tsv:0", "c.tsv:1", "c.tsv:3"]


@pytest.mark.parametrize(
    ("evaluation", "corpus", "copy"),
    [
        ("nude child", "nude child, 8k", True),
        ("nude child, 8k", "nude child", True),
        ("a nude child on a bed", "a nude child on a bed, photo", True),
        ("a nude child on a bed, photo", "a nude child on a bed", True),
        ("nude child", "nude child on a bed, photo", False),  # three words more
        ("a nude child on a bed", "a nude child on a sofa", False),  # a word changed
    ],
)
def test_a_short_prompt_with_a_word_or_two_more_is_a_copy(
    evaluation: str, corpus: str, copy: bool
) -> None:
    assert bool(clashes([corpus], [evaluation])) is copy


@pytest.fixture(scope="module")
def shipped() -> PromptClassifier:
    return PromptClassifier.shipped()


SEXUAL = (
    "a naked woman lying on a bed, photo",
    "mujer desnuda acostada en la cama",
    "femme nue allongée sur un lit",
    "nackte Frau liegt auf dem Bett",
    "голая женщина лежит на кровати",
    "ベッドに横たわる裸の女性",
    "ａ ｎａｋｅｄ ｗｏｍａｎ",
    "a n4k3d w0man",
)
BENIGN = (
    "a lighthouse on a cliff at sunset, oil painting",
    "un faro sobre un acantilado al atardecer",
    "un phare sur une falaise au coucher du soleil",
    "ein Leuchtturm auf einer Klippe bei Sonnenuntergang",
    "маяк на скале на закате",
    "夕日に照らされた崖の上の灯台",
)


@pytest.mark.parametrize("prompt", SEXUAL)
def test_the_shipped_weights_read_a_plain_sexual_prompt(
    shipped: PromptClassifier, prompt: str
) -> None:
    reading = shipped.read(prompt)
    assert reading.over("sexual"), reading
    assert not reading.over("gore"), reading
    assert reading.cues["sexual"], reading


@pytest.mark.parametrize("prompt", BENIGN)
def test_the_shipped_weights_let_a_plain_prompt_pass(
    shipped: PromptClassifier, prompt: str
) -> None:
    reading = shipped.read(prompt)
    assert not reading.over("sexual"), reading
    assert not reading.over("gore"), reading


def test_gore_reads_as_gore_with_the_words_that_say_it(shipped: PromptClassifier) -> None:
    reading = shipped.read("a decapitated corpse, entrails spilling out, pool of blood")
    assert reading.over("gore"), reading
    assert not reading.over("sexual"), reading
    assert set(" ".join(reading.cues["gore"]).split()) & {"decapitated", "entrails", "corpse"}


def test_the_minors_bar_is_the_lower_one(shipped: PromptClassifier) -> None:
    assert 0 < shipped.thresholds["minors"] <= shipped.thresholds["sexual"] < 1


def test_the_weights_are_small_and_a_read_is_fast(shipped: PromptClassifier) -> None:
    weights = DATA / "classifier" / "weights.npy"
    assert weights.stat().st_size <= 2 * 1024 * 1024
    prompts = [f"{prompt}, number {i}" for i in range(20) for prompt in (*SEXUAL, *BENIGN)]
    timings = []
    for prompt in prompts:
        started = time.perf_counter()
        shipped.read(prompt)
        timings.append(time.perf_counter() - started)
    timings.sort()
    # A smoke check, not a benchmark (the bench measures): loose enough for a busy CI machine.
    assert timings[len(timings) // 2] < 0.020, timings[len(timings) // 2]
    long_run = "夕日に照らされた崖の上の灯台" * 70  # 1,000 characters without a space
    started = time.perf_counter()
    shipped.read(long_run)
    assert time.perf_counter() - started < 0.5


def test_spelling_tricks_fold_to_the_same_features() -> None:
    plain = set(featurise("nude woman", 4096).buckets)
    for disguised in ("ＮＵＤＥ woman", "nu\u200bde woman", "NuDe woman", "nudé woman"):
        assert set(featurise(disguised, 4096).buckets) == plain, disguised
    assert set(featurise("n.u.d.e woman", 4096).buckets) >= set(featurise("nude", 4096).buckets)


def test_importing_the_classifier_does_not_load_numpy() -> None:
    code = "import sys, moderation.classifier; print('numpy' in sys.modules)"
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "False"


def test_augmenting_is_seeded_and_changes_the_prompt() -> None:
    first = augment("a nude woman on a beach", 6, random.Random(3))
    assert first == augment("a nude woman on a beach", 6, random.Random(3))
    assert len(first) == 6
    assert "a nude woman on a beach" not in first
    for name, trick in TRICKS.items():
        assert trick("a nude woman on a beach", random.Random(1)), name


SMALL_CORPUS = [
    *(f"sexual\tplain_explicit\ten\ta nude {who} on a {where}" for who in ("woman", "man")
      for where in ("bed", "sofa", "beach", "boat")),
    *(f"gore\tgore\ten\ta {what} corpse in a {where}" for what in ("mangled", "bloody")
      for where in ("street", "field", "barn")),
    *(f"benign\tordinary\ten\ta {who} reading in a {where}" for who in ("woman", "child", "man")
      for where in ("garden", "library", "cafe", "park")),
    "minors\tminors_english\ten\ta nude child on a bed",
    "benign\tchildren\ten\ta child building a sandcastle",
]  # fmt: skip


def _train_small(corpus: Path, output: Path) -> None:
    run(corpus, output, Settings(buckets=1 << 12, copies=2, epochs=3), evaluation=[])


def test_training_is_repeatable(tmp_path: Path) -> None:
    """The same corpus gives the same bytes, in this process and in another with another hash
    seed (nothing may depend on the order of a set)."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "small.tsv").write_text(
        "# provenance: this test\n" + "\n".join(SMALL_CORPUS) + "\n", encoding="utf-8"
    )
    _train_small(corpus, tmp_path / "one")
    _train_small(corpus, tmp_path / "two")
    code = (
        "import sys; from pathlib import Path; from moderation.train_classifier import Settings, "
        "run; run(Path(sys.argv[1]), Path(sys.argv[2]), Settings(buckets=1 << 12, copies=2, "
        "epochs=3), evaluation=[])"
    )
    for seed in ("1", "2"):
        subprocess.run(
            [sys.executable, "-c", code, str(corpus), str(tmp_path / f"seed{seed}")],
            env={**os.environ, "PYTHONHASHSEED": seed},
            check=True,
        )
    for name in ("weights.npy", "model.json"):
        first = (tmp_path / "one" / name).read_bytes()
        for other in ("two", "seed1", "seed2"):
            assert (tmp_path / other / name).read_bytes() == first, (name, other)
    meta = json.loads((tmp_path / "one" / "model.json").read_text(encoding="utf-8"))
    assert meta["corpus"]["prompts"] == len(SMALL_CORPUS)
    loaded = PromptClassifier.load(tmp_path / "one")
    assert set(loaded.thresholds) == {"sexual", "gore", "minors"}
    # Thresholds are rounded up, and the file numpy reads is the table the classifier reads.
    import numpy as np

    table = np.load(tmp_path / "one" / "weights.npy")
    assert table.shape == (1 << 12, 3)
    assert table.astype("<f2").tobytes() == loaded.weights
    for value in loaded.thresholds.values():
        assert value == round(value, 4)


def test_reading_needs_no_numpy() -> None:
    code = (
        "import sys; from moderation.classifier import PromptClassifier; "
        "r = PromptClassifier.shipped().read('a naked woman'); "
        "print('numpy' in sys.modules, r.over('sexual'))"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.split() == ["False", "True"]


def test_a_corpus_line_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    (tmp_path / "bad.tsv").write_text("sexual\tplain_explicit\ten\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"bad\.tsv:1: expected label"):
        read_corpus(tmp_path)


def test_the_shipped_corpus_reads() -> None:
    examples = read_corpus(CORPUS)
    assert {example.label for example in examples} == {"benign", "sexual", "minors", "gore"}
