"""The prompt classifier: its corpus stays apart from every evaluation set, the shipped weights
read plain prompts right in several languages, and training is repeatable."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from moderation.classifier import PromptClassifier, featurise
from moderation.classifier_augment import TRICKS, augment
from moderation.classifier_corpus import CORPUS, CorpusError, Example, apart_from, read_corpus
from moderation.classifier_overlap import clashes, evaluation_folders, evaluation_prompts
from moderation.train_classifier import Settings, run

DATA = Path(__file__).resolve().parent.parent / "moderation" / "data"
# Written for the final figures by people who never saw the rules or the corpus: this test reads
# them to prove the corpus keeps apart, and never prints a line of them.
BLIND = ("blind1", "blind_final")


def test_the_evaluation_sets_are_all_found() -> None:
    names = {folder.name for folder in evaluation_folders()}
    assert {"eval", "heldout", "heldout2"} <= names, names


def test_the_corpus_shares_no_prompt_with_any_evaluation_set() -> None:
    """No prompt of an evaluation set is in the corpus, once normalised, nor one that shares
    80 % of its word 4-grams with a corpus prompt (the same template, a word changed)."""
    corpus = read_corpus()
    assert len(corpus) > 1000
    found: list[str] = []
    for folder in evaluation_folders():
        prompts = [example.prompt for example in corpus]
        for number, overlap in clashes(prompts, evaluation_prompts(folder)):
            # A blind set's prompt is never shown, not even the corpus' copy of it.
            shown = "" if folder.name in BLIND else f": {corpus[number].prompt!r}"
            found.append(f"{corpus[number].source} is in {folder.name} ({overlap:.2f}){shown}")
    assert found == [], "\n".join(found)


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
        "nude child",
    ]
    assert [n for n, _ in clashes(corpus, evaluation_prompts(tmp_path / "set"))] == [0, 1, 3]
    examples = [Example("benign", "ordinary", "en", p, f"c.tsv:{n}") for n, p in enumerate(corpus)]
    kept, left_out = apart_from(examples, [tmp_path / "set"])
    assert [e.prompt for e in kept] == [corpus[2]]
    assert left_out == ["c.tsv:0", "c.tsv:1", "c.tsv:3"]


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
    # The goal is under 1 ms; the bound leaves room for a busy test machine.
    assert timings[len(timings) // 2] < 0.005, timings[len(timings) // 2]


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
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "small.tsv").write_text(
        "# provenance: this test\n" + "\n".join(SMALL_CORPUS) + "\n", encoding="utf-8"
    )
    _train_small(corpus, tmp_path / "one")
    _train_small(corpus, tmp_path / "two")
    for name in ("weights.npy", "model.json"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    meta = json.loads((tmp_path / "one" / "model.json").read_text(encoding="utf-8"))
    assert meta["corpus"]["prompts"] == len(SMALL_CORPUS)
    loaded = PromptClassifier.load(tmp_path / "one")
    assert set(loaded.thresholds) == {"sexual", "gore", "minors"}


def test_a_corpus_line_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    (tmp_path / "bad.tsv").write_text("sexual\tplain_explicit\ten\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"bad\.tsv:1: expected label"):
        read_corpus(tmp_path)


def test_the_shipped_corpus_reads() -> None:
    examples = read_corpus(CORPUS)
    assert {example.label for example in examples} == {"benign", "sexual", "minors", "gore"}
