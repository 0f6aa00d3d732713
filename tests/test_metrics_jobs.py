"""The bot process's job metrics on real SQLite and PostgreSQL: every terminal path of the audit
log counts its job once (a second ending raises and counts nothing), the queued jobs' wait and
end-to-end times, prompt blocks by rule and layer as ``check_prompt`` words them, and refusals
by reason, through the real admission.

Counters are read before and after (other tests in this process move them too)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from bot.app import open_service, open_storage
from bot.imagine.outcomes import Refusal
from bot.imagine.service import ImagineService
from bot.imagine.types import Requester
from bot.settings import Settings
from generation.options import RequestedOptions
from moderation.lists import GuildRule, PromptRules, RuleAction
from moderation.policy import GorePolicy, apply_gore_policy
from moderation.prompts import PromptVerdict, check_prompt
from moderation.reasons import LAYERS, RULES, reason_labels
from storage import migrations
from storage.audit import AuditLog
from storage.engine import SessionFactory
from storage.errors import JobAlreadyFinished
from storage.models import JobKind, JobStatus, TermKind, Verdict
from storage.records import NewJob

GUILD = 1_100_000_000_000_000_001
DEFAULT_RULES = PromptRules.default()


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def jobs(kind: str, outcome: str) -> float:
    return value("sdbot_jobs_total", kind=kind, outcome=outcome)


def stage_count(stage: str) -> float:
    return value("sdbot_stage_seconds_count", stage=stage)


def all_jobs() -> float:
    return sum(
        jobs(kind.value, status.value)
        for kind in JobKind
        for status in JobStatus
        if status.is_terminal
    )


def new_job(kind: JobKind = JobKind.IMAGINE, verdict: Verdict = Verdict.ALLOWED) -> NewJob:
    return NewJob(
        source="test",
        prompt="a red circle",
        negative_prompt="",
        steps=4,
        guidance_scale=3.0,
        width=64,
        height=64,
        variants=1,
        scheduler="dpmpp",
        model="embedded",
        seeds=(1,),
        verdict=verdict,
        verdict_reasons=()
        if verdict is Verdict.ALLOWED
        else ("'x' is not allowed (default list)",),
        kind=kind,
    )


async def test_every_terminal_path_counts_its_job_once(sessions: SessionFactory) -> None:
    audit = AuditLog(sessions)
    before_all = all_jobs()

    # Terminal as recorded: refused, blocked, and a description finished at once.
    before = jobs("imagine", "refused")
    await audit.create_job(new_job(), refused="over your limit")
    assert jobs("imagine", "refused") - before == 1
    before = jobs("imagine", "blocked")
    await audit.create_job(new_job(verdict=Verdict.BLOCKED))
    assert jobs("imagine", "blocked") - before == 1
    before = jobs("describe", "succeeded")
    await audit.create_job(new_job(JobKind.DESCRIBE), finished=JobStatus.SUCCEEDED)
    assert jobs("describe", "succeeded") - before == 1
    assert all_jobs() - before_all == 3

    # Queued: nothing yet; its first start is its queue wait, a retry's is not.
    waits, ends = stage_count("queue_wait"), stage_count("end_to_end")
    queued = await audit.create_job(new_job())
    assert all_jobs() - before_all == 3
    await audit.mark_running(queued)
    await audit.mark_running(queued, attempt=2)
    assert stage_count("queue_wait") - waits == 1

    # Its one ending counts once; a second ending raises and counts nothing.
    succeeded, failed = jobs("imagine", "succeeded"), jobs("imagine", "failed")
    await audit.record_outcome(queued, JobStatus.SUCCEEDED, generation_ms=10.0)
    with pytest.raises(JobAlreadyFinished):
        await audit.record_outcome(queued, JobStatus.FAILED, error="too late")
    assert (jobs("imagine", "succeeded") - succeeded, jobs("imagine", "failed") - failed) == (1, 0)
    assert stage_count("end_to_end") - ends == 1

    # Another kind, ended while still queued (never started: no queue wait).
    cancelled = jobs("upscale", "cancelled")
    upscale = await audit.create_job(new_job(JobKind.UPSCALE))
    await audit.record_outcome(upscale, JobStatus.CANCELLED, error="cancelled")
    assert jobs("upscale", "cancelled") - cancelled == 1
    assert stage_count("queue_wait") - waits == 1
    assert stage_count("end_to_end") - ends == 2
    assert all_jobs() - before_all == 5


@dataclasses.dataclass(frozen=True)
class _Reading:
    scores: dict[str, float]
    cues: dict[str, tuple[str, ...]]

    def over(self, label: str) -> bool:
        return self.scores[label] >= 0.8


class _SpicyClassifier:
    """A stand-in for the shipped classifier: "spicy" reads as sexual, nothing as gore."""

    def __init__(self) -> None:
        self.thresholds = {"sexual": 0.8, "gore": 0.8, "minors": 0.5}

    def read(self, prompt: str) -> _Reading:
        score = 0.9 if "spicy" in prompt else 0.0
        return _Reading({"sexual": score, "gore": 0.0}, {"sexual": ("spicy",), "gore": ()})


def test_reason_labels_read_the_reasons_check_prompt_really_gives() -> None:
    """Each rule and layer from a real verdict: this breaks when prompts.py rewords one."""
    rules_alone = dataclasses.replace(DEFAULT_RULES, classifier=None)
    with_classifier = dataclasses.replace(DEFAULT_RULES, classifier=_SpicyClassifier())

    def gore(prompt: str, policy: GorePolicy) -> PromptVerdict:
        verdict = check_prompt(prompt, rules_alone)
        assert verdict.allowed  # the rules say why it is gore; the policy refuses it
        assert verdict.gore
        return apply_gore_policy(verdict, policy, channel_nsfw=False)

    server = DEFAULT_RULES.with_guild(
        [
            GuildRule(RuleAction.BLOCK, "clown*"),
            GuildRule(RuleAction.BLOCK, r"\bclowns?\b.*\bcars?\b", is_regex=True),
        ]
    )
    cases = [
        (check_prompt("a nude woman", DEFAULT_RULES), ("term", "default")),
        (check_prompt("a woman with great tits", DEFAULT_RULES), ("term", "profanity")),
        (check_prompt("a clownish parade", server), ("term", "guild")),
        (check_prompt("Clowns in a tiny car", server), ("pattern", "guild")),
        (check_prompt("lolicon", DEFAULT_RULES), ("minors", "always")),
        (
            check_prompt("portrait of a woman on a bed", DEFAULT_RULES, "c1othes, dress"),
            ("negative_clothing", "default"),
        ),
        (
            check_prompt("a woman on a bed, no clothes", rules_alone),
            ("clothing_removed", "default"),
        ),
        (
            gore("a mangled corpse, entrails everywhere", GorePolicy.AGE_RESTRICTED),
            ("gore", "default"),
        ),
        (gore("a mangled corpse, entrails everywhere", GorePolicy.BLOCK), ("gore", "guild")),
        (check_prompt("a spicy picture", with_classifier), ("classifier", "default")),
    ]
    for verdict, expected in cases:
        assert not verdict.allowed
        labels = [reason_labels(reason) for reason in verdict.reasons]
        assert expected in labels, (verdict.reasons, labels)
        assert all(rule in RULES and layer in LAYERS for rule, layer in labels)
    # A quote or parenthesis inside the quoted text does not confuse the layer.
    assert reason_labels("'it's (odd)' is not allowed (profanity list)") == ("term", "profanity")
    assert reason_labels("something new") == ("other", "default")


@pytest.fixture
async def service(
    database_url: str, tmp_path: Path, model_dir: Path
) -> AsyncIterator[ImagineService]:
    """The real service on each database; a member may hold one job at a time. Nothing here
    reaches the worker (blocked and refused requests are never queued)."""
    settings = Settings(
        _env_file=None,
        model=str(model_dir),
        data_dir=tmp_path / "data",
        database_url=database_url,
        device="cpu",
        max_jobs_per_user=1,
    )
    await asyncio.to_thread(migrations.upgrade, settings.effective_database_url())
    async with open_storage(settings) as storage, open_service(settings, storage) as service:
        yield service


async def test_blocked_prompts_count_each_reason_by_rule_and_layer(service: ImagineService) -> None:
    await service.storage.terms.add(GUILD, TermKind.BLOCK, "clown")
    await service.storage.terms.add(GUILD, TermKind.BLOCK, r"\bjugglers?\b", is_regex=True)
    requester = Requester(source="test", guild_id=GUILD, user_id=7)
    requests = [
        RequestedOptions(prompt="a nude woman"),
        RequestedOptions(prompt="a woman with great tits"),
        RequestedOptions(prompt="a clown and a juggler"),
        RequestedOptions(prompt="lolicon"),
        RequestedOptions(prompt="portrait of a woman on a bed", negative_prompt="c1othes, dress"),
    ]
    pairs = [(rule, layer) for rule in RULES for layer in LAYERS]
    before = {
        pair: value("sdbot_prompt_blocks_total", rule=pair[0], layer=pair[1]) for pair in pairs
    }
    blocked_before = jobs("imagine", "blocked")
    expected: Counter[tuple[str, str]] = Counter()
    for requested in requests:
        outcome = await service.imagine(requested, requester)
        assert outcome.status is JobStatus.BLOCKED, outcome
        expected.update(reason_labels(reason) for reason in outcome.verdict.reasons)
    moved = {
        pair: value("sdbot_prompt_blocks_total", rule=pair[0], layer=pair[1]) - before[pair]
        for pair in pairs
    }
    assert {pair: n for pair, n in moved.items() if n} == dict(expected)
    for pair in [
        ("term", "default"),
        ("term", "profanity"),
        ("term", "guild"),
        ("pattern", "guild"),
        ("minors", "always"),
        ("negative_clothing", "default"),
    ]:
        assert moved[pair] >= 1, pair
    assert jobs("imagine", "blocked") - blocked_before == len(requests)


async def test_refusals_count_by_reason(service: ImagineService) -> None:
    before = {refusal: value("sdbot_refusals_total", reason=refusal.value) for refusal in Refusal}
    refused_jobs = jobs("imagine", "refused")

    # A direct message, where no guild's rules apply.
    direct = await service.imagine(RequestedOptions(prompt="a red circle"), Requester("discord"))
    assert direct.refusal is Refusal.DIRECT
    # A member holding a job already (at most one): over a limit.
    cli = Requester("test")
    here = await service.admission.limits_here(None)
    await service.queue.admit(None, None, 0.01, here.rates)
    over = await service.imagine(RequestedOptions(prompt="a red circle"), cli)
    assert over.refusal is Refusal.RATE, over
    await service.queue.release(None, None)

    moved = {
        refusal: value("sdbot_refusals_total", reason=refusal.value) - before[refusal]
        for refusal in Refusal
    }
    assert {refusal: n for refusal, n in moved.items() if n} == {
        Refusal.DIRECT: 1,
        Refusal.RATE: 1,
    }
    assert jobs("imagine", "refused") - refused_jobs == 2
