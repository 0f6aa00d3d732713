"""The model card beside the shipped weights, written by the training run from its own figures
(so the card and the weights never disagree)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

_ABOUT = """\
# The prompt classifier

What it is: a multinomial logistic regression over three labels (benign, sexual, gore; the
corpus' `minors` lines count as sexual) on hashed features of the prompt: character n-grams 1-5
of each word (padded with `<` `>`) read on `moderation.normalise.base` text (look-alike letters,
fullwidth, zero-width characters, accents folded first), on the leetspeak reading, and on each
chunk of up to 40 letters with its inner punctuation taken out (`n.u.d.e`); a run longer than
40 characters (a sentence in a script written without spaces) gets n-grams 1-3 only, so its
features grow 3 per character, not 5; the words and pairs of neighbouring words; symbols and
emoji alone and in pairs. Each feature counts 1/sqrt(the prompt's feature count). Features are
hashed with CRC-32 into {buckets:,} rows; `weights.npy` holds the {buckets:,} x 3 weights in
float16 ({size_kb:,} kB), `model.json` the bias, the thresholds (rounded up to 4 decimals, so
rounding never lets one more benign prompt through), the training settings and the figures
below. Training uses numpy; reading does not: `moderation.classifier` keeps the raw float16 bytes
of `weights.npy` (its header parsed by hand) and unpacks only the rows a prompt's features hash
to, with the sums of each word cached, so that the bot's light commands stay light.

Cost of a read on the 2-core development machine (`PromptClassifier.read`, one process, measured
over the 963 prompts of `eval`, `heldout` and `heldout2` three times and 20 new 1,000-character
prompts of each kind): {latency}

How it is used: `PromptClassifier.shipped().read(prompt)` gives the sexual and gore scores and
the words that weighed most toward each (the cues a refusal names); `check_prompt` refuses a
sexual score at or above `thresholds["sexual"]` where no list did, reads a gore score at or above
`thresholds["gore"]` as gore (the guild's gore policy decides), and holds a prompt that names a
minor to the lower bar `thresholds["minors"]`.

Corpus: `moderation/data/corpus/*.tsv` (its README says who wrote which file and how), one line
per distinct normalised prompt; lines given two labels are dropped, and so are lines an
evaluation set also holds (the same prompt once normalised, 80 % of its word 4-grams, or all
the other's words with at most two more: see `moderation/classifier_overlap.py`). Within each
language the benign prompts and those to refuse
weigh the same in all (the writers wrote more of the latter in some languages, and a language
must be no reason of its own); then each label weighs the same in all (gore is the rarest).

Training: `python -m moderation.train_classifier` (numpy minibatch Adam, L2, {epochs} epochs,
seed {seed}; the same corpus gives the same bytes). {validation_percent} % of the prompts, chosen
by a hash of the normalised prompt, are held out for validation; every prompt, on both sides, gets
{copies} copies with spelling tricks (leetspeak, look-alike letters, fullwidth, zero-width
characters, spaces or dots inside words, glued words, accents dropped, random or upper case,
typos, style tags), so a prompt and its copies stay on one side. The shipped weights are those
trained on the training side; the thresholds are picked on the validation side: sexual and gore
at the lowest score that refuses at most {fp_percent} % of the benign validation prompts (copies
included), but never under {floor} for sexual and {gore_floor} for gore (validation prompts are in
the corpus' own style: a bar under even odds that holds there need not hold on prompts unlike
them; gore's is higher because innocent prompts such as "red" or a battle scene reached 0.5-0.7
on the development sets while its own catches there scored 0.85 or more); minors at the lowest that
refuses at most {fp_percent} % of the benign prompts about children and {fp5_percent} % of all
benign ones, never under {minors_floor} nor above the sexual one.
"""


def _row(name: str, section: dict[str, Any]) -> str:
    def cell(value: Any) -> str:
        return "-" if value is None else f"{value:.3f}"

    keys = (
        "recall_sexual",
        "recall_minors_at_minors_bar",
        "recall_gore",
        "false_positive_sexual",
        "false_positive_gore",
    )
    return f"| {name} | {section['prompts']} | " + " | ".join(cell(section[k]) for k in keys) + " |"


# Measured by hand (the training run does not time reads: its bytes must not depend on the
# machine); update when featurisation changes.
LATENCY = (
    "typical prompts p50 0.20 ms, p99 0.95 ms; 1,000 characters of Latin tags p50 1.6 ms; "
    "1,000 characters of Japanese with punctuation p50 4.1 ms; the worst case, 1,000 "
    "characters of Japanese without a space or a stop, p50 13 ms (max 30 ms on a busy machine)."
)


def write_card(output: Path, meta: dict[str, Any], training_seconds: float) -> None:
    settings = meta["settings"]
    weights = output / "weights.npy"
    about = _ABOUT.format(
        buckets=settings["buckets"],
        size_kb=weights.stat().st_size // 1024,
        epochs=settings["epochs"],
        seed=settings["seed"],
        validation_percent=settings["validation_percent"],
        copies=settings["copies"],
        fp_percent=round(settings["max_false_positives"] * 100, 1),
        fp5_percent=round(settings["max_false_positives"] * 500, 1),
        floor=settings["floor"],
        gore_floor=settings.get("gore_floor", settings["floor"]),
        minors_floor=settings["minors_floor"],
        latency=LATENCY,
    )
    corpus = meta["corpus"]
    validation = meta["validation"]
    lines = [
        about,
        "## Figures",
        "",
        f"Corpus: {corpus['prompts']} distinct prompts ("
        + ", ".join(f"{label} {count}" for label, count in corpus["by_label"].items())
        + f") in "
        f"{len(corpus['files'])} files; {corpus['train_prompts']} trained on "
        f"({corpus['train_rows_with_copies']} rows with their copies), "
        f"{corpus['validation_prompts']} held out. Training took {training_seconds:.0f} s on "
        "the 2-core development machine.",
        "",
        "Thresholds: "
        + ", ".join(f"{label} {value:.4f}" for label, value in meta["thresholds"].items()),
        "",
        "On the validation prompts (never trained on), as written and with their copies:",
        "",
        "| part | prompts | recall sexual | recall minors (minors bar) | recall gore "
        "| false positives sexual | false positives gore |",
        "|---|---:|---:|---:|---:|---:|---:|",
        _row("as written", validation["as_written"]),
        _row("with copies", validation["with_copies"]),
        "",
        "Recall by kind (validation, with copies): "
        + ", ".join(
            f"{kind} {value:.2f}"
            for kind, value in validation["with_copies"]["recall_by_kind"].items()
            if value is not None
        ),
        "",
        "False positives by kind of trap (validation, with copies): "
        + ", ".join(
            f"{kind} {value:.3f}"
            for kind, value in validation["with_copies"]["false_positive_by_kind"].items()
            if value is not None
        ),
        "",
        "These figures are the classifier's alone, on prompts written by the corpus' own",
        "writers: they say how it reads new prompts in the corpus' style, not how sdbot does on",
        "a blind set. `sdbot bench moderation` measures the rules and the classifier together",
        "on the evaluation sets (see bench/README.md).",
        "",
    ]
    (output / "README.md").write_text("\n".join(lines), encoding="utf-8")
