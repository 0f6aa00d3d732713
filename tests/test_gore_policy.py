"""The guild's gore policy: the table (unit), the merge of a prompt's two readings, and the real
flow on the fake Discord (refused in a plain channel, drawn spoilered in an age-restricted one,
refused everywhere once a moderator says so), each request in the audit log; `sdbot moderate`
judges the same way."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from prometheus_client import REGISTRY

from bot.discord.client import ImagineBot
from bot.imagine import admission
from bot.imagine.admission import check_request, judge_request
from bot.settings import Settings
from fake_discord import Channel, FakeDiscord, Guild, Permission, User
from fake_discord.client import with_controls
from generation.options import GenerationOptions
from moderation import policy
from moderation.lists import PromptRules
from moderation.policy import GorePolicy, apply_gore_policy
from moderation.prompts import PromptVerdict
from moderation.reasons import GORE_EVERYWHERE, GORE_OUTSIDE_AGE_RESTRICTED
from storage import models
from storage.engine import SessionFactory
from storage.guild_settings import GuildSettingsRecord, GuildSettingsRepository
from storage.models import JobKind, JobStatus, Verdict
from tests.test_cli import migrated, sdbot  # noqa: F401  # migrated: a fixture used here
from tests.test_discord_mod import _ask, _join, _mod

GORE = "a decapitated soldier, entrails everywhere, hyperrealistic"
WHY = ("'entrails' reads as gore (default list)",)
GORY = PromptVerdict(True, gore=WHY)
ADA, MODS = GorePolicy.AGE_RESTRICTED, GorePolicy.BLOCK


def _gore_blocks(layer: str) -> float:
    found = REGISTRY.get_sample_value("sdbot_prompt_blocks_total", {"rule": "gore", "layer": layer})
    return found or 0.0


def _options(prompt: str) -> GenerationOptions:
    return GenerationOptions(prompt, "", (1,), 2, 7.0, 64, 64, "default")


@pytest.mark.parametrize(
    ("verdict", "gore_policy", "channel_nsfw", "expected"),
    [
        # Gore: refused outside age-restricted channels, and everywhere under "block".
        (GORY, ADA, False, PromptVerdict(False, (*WHY, GORE_OUTSIDE_AGE_RESTRICTED), gore=WHY)),
        (GORY, MODS, False, PromptVerdict(False, (*WHY, GORE_EVERYWHERE), gore=WHY)),
        (GORY, MODS, True, PromptVerdict(False, (*WHY, GORE_EVERYWHERE), gore=WHY)),
        # Inside one, under the default policy: drawn, force-safe (spoilered), reasons kept.
        (GORY, ADA, True, PromptVerdict(True, (), True, WHY, gore=WHY)),
        (
            PromptVerdict(True, (), True, ("'swimsuit' is force-safe",), gore=WHY),
            ADA,
            True,
            PromptVerdict(True, (), True, ("'swimsuit' is force-safe", *WHY), gore=WHY),
        ),
        # No gore: the policy changes nothing; a prompt blocked already keeps its own reasons.
        (PromptVerdict(True), MODS, False, PromptVerdict(True)),
        (PromptVerdict(False, ("'nude' is not allowed",), gore=WHY), ADA, True, None),
    ],
)
def test_the_gore_policy_table(
    verdict: PromptVerdict,
    gore_policy: GorePolicy,
    channel_nsfw: bool,
    expected: PromptVerdict | None,
) -> None:
    judged = apply_gore_policy(verdict, gore_policy, channel_nsfw)
    assert judged == (verdict if expected is None else expected)


def test_storage_keeps_the_gore_policys_values() -> None:
    assert [p.value for p in models.GorePolicy] == [p.value for p in policy.GorePolicy]
    assert GuildSettingsRecord(guild_id=1).gore_policy.value == "age_restricted"


def test_both_readings_of_a_prompt_carry_their_gore_and_scores(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Weights split a word ("(entr:1.1)ails"): the plain reading's gore counts as the written
    one's does, and each label keeps its higher score."""
    readings = {
        "(entr:1.1)ails, a (blade:1.2)": PromptVerdict(
            True, classifier_scores=(("gore", 0.4), ("sexual", 0.1))
        ),
        "entrails, a blade": PromptVerdict(
            True, gore=WHY, classifier_scores=(("gore", 0.9), ("sexual", 0.05))
        ),
    }
    monkeypatch.setattr(admission, "check_prompt", lambda prompt, *_, **__: readings[prompt])
    options = _options("(entr:1.1)ails, a (blade:1.2)")
    merged = check_request(options, PromptRules.default())
    assert (merged.allowed, merged.gore) == (True, WHY)
    assert merged.classifier_scores == (("gore", 0.9), ("sexual", 0.1))
    plain = judge_request(options, PromptRules.default(), None, channel_nsfw=False)
    assert plain.reasons == (*WHY, GORE_OUTSIDE_AGE_RESTRICTED)
    settings = GuildSettingsRecord(guild_id=1, gore_policy=models.GorePolicy.BLOCK)
    assert judge_request(options, PromptRules.default(), settings, True).reasons[-1] == (
        GORE_EVERYWHERE
    )


def test_the_shipped_rules_read_the_test_prompt_as_gore() -> None:
    """The flows below stand on this: if it fails, the gore words changed, not the policy."""
    verdict = check_request(_options(GORE), PromptRules.default())
    assert verdict.allowed
    assert verdict.gore


async def test_gore_on_discord_follows_the_channel_and_the_guilds_policy(
    fake_discord: FakeDiscord, bot: ImagineBot, world: tuple[Guild, Channel, User]
) -> None:
    guild, channel, ada = world
    lounge = fake_discord.create_channel(guild, "lounge", nsfw=True)
    before = {layer: _gore_blocks(layer) for layer in ("default", "guild")}
    mod = _join(fake_discord, guild, "mod", Permission.MANAGE_GUILD)

    help_text = (await _ask(fake_discord, ada, channel, "help")).content
    assert "- gore prompts are drawn only in age-restricted channels, spoilered\n" in help_text

    # 1. A channel that is not age-restricted: refused, for the member alone, naming gore.
    refused = await _ask(fake_discord, ada, channel, "imagine", prompt=GORE, steps=2)
    assert refused.ephemeral
    assert refused.content.startswith("🚫 This prompt was not accepted: ")
    assert refused.content.endswith(GORE_OUTSIDE_AGE_RESTRICTED)
    assert "reads as gore" in refused.content

    # 2. An age-restricted channel under the default policy: drawn, and spoilered.
    interaction = await fake_discord.slash(ada, lounge, "imagine", prompt=GORE, steps=2)
    grid = await fake_discord.wait_for(lambda: with_controls(interaction.original), within=120)
    [attachment] = grid.attachments
    assert attachment.filename.startswith("SPOILER_"), attachment.filename

    # 3. The guild refuses gore everywhere: the same prompt in the same channel is refused.
    said = await _mod(fake_discord, mod, channel, "settings", gore_policy="block")
    assert said.splitlines()[0] == "✅ gore_policy: age_restricted → block"
    assert "- gore_policy: block (gore prompts are refused everywhere)" in said
    help_text = (await _ask(fake_discord, ada, lounge, "help")).content
    assert "- gore prompts are refused\n" in help_text
    again = await _ask(fake_discord, ada, lounge, "imagine", prompt=GORE, steps=2)
    assert again.ephemeral
    assert again.content.endswith(GORE_EVERYWHERE)
    # A control re-checks the prompt under the policy of now: the reroll is refused too.
    await fake_discord.add_reaction(ada, grid, "🔄")
    notice = await fake_discord.wait_for(
        lambda: next(
            (
                m
                for m in fake_discord.channel_messages(lounge, deleted=True)
                if m.message_reference and GORE_EVERYWHERE in m.content
            ),
            None,
        )
    )
    assert notice.content.startswith(f"<@{ada.id}> 🚫 This prompt was not accepted: ")

    # Each request is in the audit log with its verdict and reasons; the change in the mod log.
    jobs = sorted(await bot.service.storage.audit.list_jobs(), key=lambda job: job.id)
    seen: list[tuple[Any, ...]] = [
        (job.status, job.verdict, job.channel_nsfw, job.verdict_reasons[-1]) for job in jobs
    ]
    assert [row[:3] for row in seen] == [
        (JobStatus.BLOCKED, Verdict.BLOCKED.value, False),
        (JobStatus.SUCCEEDED, Verdict.FORCE_SAFE.value, True),
        (JobStatus.BLOCKED, Verdict.BLOCKED.value, True),
        (JobStatus.BLOCKED, Verdict.BLOCKED.value, True),
    ]
    assert seen[0][3] == GORE_OUTSIDE_AGE_RESTRICTED
    assert "as gore" in seen[1][3]  # a gore term, or the classifier
    assert seen[2][3] == seen[3][3] == GORE_EVERYWHERE
    # The classifier's scores are kept with each record, whatever its verdict.
    assert all(set(job.classifier_scores or {}) >= {"gore", "sexual"} for job in jobs)
    assert (jobs[3].kind, jobs[3].parent_job_id) == (JobKind.REROLL.value, jobs[1].id)
    # Every reason of the three blocks is counted as the gore rule (the guild's word as its).
    blocked = [reason for job in jobs if job.verdict == "blocked" for reason in job.verdict_reasons]
    assert _gore_blocks("guild") - before["guild"] == 2
    assert _gore_blocks("default") - before["default"] == len(blocked) - 2
    [change] = await bot.service.storage.moderation.list(guild.id)
    assert change.details["gore_policy"] == {"from": "age_restricted", "to": "block"}


def test_sdbot_moderate_and_guild_set_apply_the_gore_policy(
    migrated: Settings,  # noqa: F811
) -> None:
    plain = sdbot(migrated, "moderate", GORE, "--json")
    assert plain.returncode == 3
    assert json.loads(plain.stdout)["reasons"][-1] == GORE_OUTSIDE_AGE_RESTRICTED
    nsfw = sdbot(migrated, "moderate", GORE, "--nsfw-channel", "--json")
    assert nsfw.returncode == 0, nsfw.stdout
    judged = json.loads(nsfw.stdout)
    assert (judged["allowed"], judged["force_safe"]) == (True, True)
    assert judged["gore"]
    assert judged["force_safe_reasons"] == judged["gore"]
    assert set(judged["classifier_scores"]) <= {"sexual", "gore"}
    shown = sdbot(migrated, "guild", "set", "5", "--gore-policy", "block")
    assert shown.returncode == 0, shown.stderr
    assert "  gore policy     block (gore prompts refused everywhere)\n" in shown.stdout
    blocked = sdbot(migrated, "moderate", GORE, "--nsfw-channel", "--guild", "5")
    assert blocked.returncode == 3
    assert blocked.stdout.rstrip().endswith(GORE_EVERYWHERE)
    assert sdbot(migrated, "moderate", GORE, "--nsfw-channel", "--guild", "6").returncode == 0
    refused = sdbot(migrated, "guild", "set", "5", "--gore-policy", "allow")
    assert refused.returncode == 2

    # `sdbot imagine` has no channel: judged as one that is not age-restricted, and recorded
    # with the classifier's scores.
    drawn = sdbot(migrated, "imagine", GORE, "--json")
    assert drawn.returncode == 3
    assert json.loads(drawn.stdout)["verdict"]["reasons"][-1] == GORE_OUTSIDE_AGE_RESTRICTED
    [line] = sdbot(migrated, "audit", "export").stdout.splitlines()
    recorded = json.loads(line)
    assert (recorded["status"], recorded["verdict_reasons"][-1]) == (
        "blocked",
        GORE_OUTSIDE_AGE_RESTRICTED,
    )
    assert set(recorded["classifier_scores"]) >= {"gore", "sexual"}


@pytest.mark.parametrize(
    ("guild_policy", "channel_nsfw", "verdict", "last_reason"),
    [
        (None, False, Verdict.BLOCKED, GORE_OUTSIDE_AGE_RESTRICTED),
        (None, True, Verdict.FORCE_SAFE, None),
        ("block", True, Verdict.BLOCKED, GORE_EVERYWHERE),
    ],
)
async def test_a_refusal_at_the_edge_is_recorded_with_the_verdict_admission_would_give(
    migrated: Settings,  # noqa: F811
    guild_policy: str | None,
    channel_nsfw: bool,
    verdict: Verdict,
    last_reason: str | None,
) -> None:
    """A gore prompt the database cannot hold (a NUL) is judged under the guild's gore policy in
    the channel it names, as admission would judge it: force-safe in an age-restricted one."""
    from bot.app import open_storage
    from bot.cli.refusals import record_refusal
    from generation.options import RequestedOptions

    guild = 5
    if guild_policy is not None:
        async with open_storage(migrated) as storage:
            await storage.guild_settings.update(guild, gore_policy=guild_policy)
    requested = RequestedOptions(prompt=GORE + "\x00", steps=2, variants=1)
    job_id = await record_refusal(
        migrated, requested, "has a NUL", guild_id=guild, channel_nsfw=channel_nsfw
    )
    async with open_storage(migrated) as storage:
        record = await storage.audit.get_job(job_id)
    assert record is not None
    assert (record.status, record.verdict, record.channel_nsfw) == (
        JobStatus.REFUSED,
        verdict.value,
        channel_nsfw,
    )
    assert "as gore" in record.verdict_reasons[0]
    if last_reason is not None:
        assert record.verdict_reasons[-1] == last_reason


@pytest.mark.parametrize(
    ("stored", "read", "warned"),
    [
        (None, "age_restricted", False),  # never set: the default
        ("block", "block", False),
        ("", "block", True),  # written by hand: the stricter policy, with a warning
        ("allow", "block", True),
    ],
)
async def test_a_stored_gore_policy_reads_as_the_default_or_the_stricter_one(
    sessions: SessionFactory,
    caplog: pytest.LogCaptureFixture,
    stored: str | None,
    read: str,
    warned: bool,
) -> None:
    async with sessions.begin() as session:
        session.add(models.GuildSettings(guild_id=7, gore_policy=stored))
    with caplog.at_level(logging.WARNING, logger="storage.guild_settings"):
        record = await GuildSettingsRepository(sessions).get(7)
    assert record.gore_policy.value == read
    assert bool(caplog.records) == warned
    assert all(f"gore_policy {stored!r}; using block" in r.getMessage() for r in caplog.records)


def test_a_recorded_gore_verdict_is_judged_again_under_the_policy_of_now() -> None:
    """What a recovered job is judged by: the force-safe verdict admission gave a gore prompt
    stands while the policy lets it through, and is refused once it does not."""
    drawn = apply_gore_policy(GORY, ADA, channel_nsfw=True)
    assert policy.recheck_gore_policy(drawn, ADA, channel_nsfw=True) == drawn
    assert policy.recheck_gore_policy(drawn, MODS, channel_nsfw=True).reasons == (
        *WHY,
        GORE_EVERYWHERE,
    )
    assert not policy.recheck_gore_policy(drawn, ADA, channel_nsfw=False).allowed
    assert policy.recheck_gore_policy(PromptVerdict(True), MODS, False) == PromptVerdict(True)
