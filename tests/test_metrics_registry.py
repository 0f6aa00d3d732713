"""The metrics' fixed label sets: each list in ``common.metrics`` is the one its owner defines
(common imports nothing of ours, so it names them again), and a fresh process's ``/metrics``
carries every one of them at 0 before any event, so that rate() and increase() see the first
failure after a restart and a failure ratio has its denominator."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from bot.imagine.outcomes import Refusal
from common import metrics
from moderation import reasons
from storage.models import TERMINAL_STATUSES, JobKind, PurgeReason

ROOT = Path(__file__).resolve().parent.parent
FRESH = (
    "from prometheus_client import REGISTRY, generate_latest\n"
    "import common.metrics\n"
    "print(generate_latest(REGISTRY).decode())\n"
)


def test_the_label_lists_are_their_owners_values() -> None:
    assert set(metrics.KINDS) == {kind.value for kind in JobKind}
    assert set(metrics.OUTCOMES) == {status.value for status in TERMINAL_STATUSES}
    assert set(metrics.REFUSAL_REASONS) == {refusal.value for refusal in Refusal}
    assert metrics.BLOCK_RULES == reasons.RULES
    assert metrics.BLOCK_LAYERS == reasons.LAYERS
    assert set(metrics.PURGE_REASONS) == {reason.value for reason in PurgeReason}


def fresh_samples() -> dict[str, list[dict[str, str]]]:
    """Each sample's labels by sample name, as a process that has done nothing exposes them;
    every value is 0."""
    text = subprocess.run(
        [sys.executable, "-c", FRESH], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    samples: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("sdbot_") and sample.name != "sdbot_build_info":
                assert sample.value == 0, sample
                samples.setdefault(sample.name, []).append(sample.labels)
    return samples


def test_a_fresh_process_exposes_every_fixed_label_set_at_zero() -> None:
    samples = fresh_samples()
    jobs = {(s["kind"], s["outcome"]) for s in samples["sdbot_jobs_total"]}
    assert jobs == {(kind, outcome) for kind in metrics.KINDS for outcome in metrics.OUTCOMES}
    refusals = {s["reason"] for s in samples["sdbot_refusals_total"]}
    assert refusals == set(metrics.REFUSAL_REASONS)
    blocks = {(s["rule"], s["layer"]) for s in samples["sdbot_prompt_blocks_total"]}
    rules, layers = metrics.BLOCK_RULES, metrics.BLOCK_LAYERS
    assert blocks == {(rule, layer) for rule in rules for layer in layers}
    stages = {s["stage"] for s in samples["sdbot_stage_seconds_count"]}
    assert stages == set(metrics.STAGES)
    purged = {s["reason"] for s in samples["sdbot_purged_jobs_total"]}
    assert purged == set(metrics.PURGE_REASONS)
    assert samples["sdbot_discord_acks_expired_total"] == [{}]
