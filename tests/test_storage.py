"""Repositories against real SQLite and PostgreSQL databases migrated by Alembic."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from common.errors import ErrorKind, SdbotError
from storage.audit import AuditLog
from storage.bans import BanList
from storage.claims import ActionClaim, ActionClaims
from storage.engine import SessionFactory
from storage.errors import (
    EmptyTerm,
    InvalidValue,
    JobAlreadyFinished,
    JobNotFound,
    StorageError,
    UnknownSettings,
)
from storage.guild_settings import GuildSettingsRepository
from storage.leases import JobLeases
from storage.models import (
    Controls,
    Disposition,
    GuildSettings,
    JobStatus,
    NsfwPolicy,
    TermKind,
    Verdict,
)
from storage.moderation_log import ModerationLog
from storage.posts import PostedMessages
from storage.records import Lease, NewImage, NewJob
from storage.terms import TermList

GUILD = 1_100_000_000_000_000_001
USER = 2_200_000_000_000_000_002


def new_job(verdict: Verdict = Verdict.ALLOWED, **overrides: object) -> NewJob:
    values: dict[str, object] = {
        "source": "discord",
        "guild_id": GUILD,
        "channel_id": 3,
        "user_id": USER,
        "prompt": "a red circle",
        "negative_prompt": "blurry",
        "steps": 20,
        "guidance_scale": 5.0,
        "width": 64,
        "height": 64,
        "variants": 2,
        "scheduler": "dpmpp",
        "model": "embedded",
        "seeds": (7, 8),
        "verdict": verdict,
        "verdict_reasons": () if verdict is Verdict.ALLOWED else ("contains the blocked term 'x'",),
    }
    values.update(overrides)
    return NewJob(**values)  # type: ignore[arg-type]


def image(variant: int, watermark_id: int) -> NewImage:
    return NewImage(
        variant=variant,
        seed=7 + variant,
        sha256=f"{variant:064x}",
        watermark_id=watermark_id,
        watermark_verified=True,
        safety_score=0.01,
        safety_verdict="safe",
        width=256,
        height=256,
        path=f"/tmp/{variant}.png",
    )


async def test_a_job_goes_from_queued_to_one_terminal_status(sessions: SessionFactory) -> None:
    audit = AuditLog(sessions)
    job_id = await audit.create_job(new_job())
    job = await audit.get_job(job_id)
    assert job is not None
    assert job.status is JobStatus.QUEUED
    assert job.seeds == (7, 8)
    assert job.user_id == USER  # 64-bit snowflakes survive

    await audit.mark_running(job_id)
    await audit.record_outcome(
        job_id, JobStatus.SUCCEEDED, images=[image(1, 17), image(2, 18)], generation_ms=12.5
    )
    job = await audit.get_job(job_id)
    assert job is not None
    assert job.status is JobStatus.SUCCEEDED
    assert [i.variant for i in job.images] == [1, 2]
    assert job.started_at is not None
    assert job.finished_at is not None
    assert job.finished_at >= job.started_at >= job.created_at
    assert job.created_at.tzinfo is UTC
    assert job.total_ms is not None
    assert job.generation_ms == 12.5

    with pytest.raises(JobAlreadyFinished, match="already finished with status 'succeeded'"):
        await audit.record_outcome(job_id, JobStatus.FAILED, error="late")
    job = await audit.get_job(job_id)
    assert job is not None
    assert job.status is JobStatus.SUCCEEDED
    assert job.error is None


async def test_a_blocked_request_is_recorded_finished(sessions: SessionFactory) -> None:
    audit = AuditLog(sessions)
    job_id = await audit.create_job(new_job(Verdict.BLOCKED))
    job = await audit.get_job(job_id)
    assert job is not None
    assert job.status is JobStatus.BLOCKED
    assert job.verdict == "blocked"
    assert job.verdict_reasons == ("contains the blocked term 'x'",)
    assert job.finished_at is not None
    with pytest.raises(JobAlreadyFinished):
        await audit.mark_running(job_id)


async def test_outcome_rules(sessions: SessionFactory) -> None:
    audit = AuditLog(sessions)
    with pytest.raises(ValueError, match="'running' is not a terminal status"):
        await audit.record_outcome(1, JobStatus.RUNNING)
    with pytest.raises(JobNotFound):
        await audit.record_outcome(999, JobStatus.FAILED)


async def test_open_jobs_count_their_attempts_and_go_back_to_the_queue(
    sessions: SessionFactory,
) -> None:
    audit = AuditLog(sessions)
    queued = await audit.create_job(new_job())
    running = await audit.create_job(new_job())
    assert await audit.mark_running(running) == 1
    done = await audit.create_job(new_job())
    await audit.record_outcome(done, JobStatus.CANCELLED, error="user cancelled")
    refused = await audit.create_job(new_job(), refused="the queue is full")

    assert [job.id for job in await audit.open_jobs()] == [queued, running]
    first = await audit.get_job(running)
    assert first is not None
    await audit.requeue(running)  # its worker went away: queued again, the first start kept
    assert await audit.mark_running(running) == 2
    again = await audit.get_job(running)
    assert again is not None
    assert (again.status, again.attempts, again.started_at) == (
        JobStatus.RUNNING,
        2,
        first.started_at,
    )
    # A replayed start of a known attempt (a restarted bot reading a job's events) counts once.
    assert await audit.mark_running(running, 2) == 2
    assert await audit.mark_running(running, 1) == 2
    record = await audit.get_job(refused)
    assert record is not None
    assert (record.status, record.error) == (JobStatus.REFUSED, "the queue is full")
    assert record.finished_at is not None


async def test_images_are_found_by_watermark(sessions: SessionFactory) -> None:
    audit = AuditLog(sessions)
    job_id = await audit.create_job(new_job())
    await audit.record_outcome(job_id, JobStatus.SUCCEEDED, images=[image(0, 4242), image(1, 4243)])
    found = await audit.find_by_watermark(4243)
    assert found is not None
    job, variant = found
    assert (job.id, variant.variant, variant.seed) == (job_id, 1, 8)
    assert await audit.find_by_watermark(1) is None


async def test_listing_filters_by_guild_and_date(sessions: SessionFactory) -> None:
    audit = AuditLog(sessions)
    mine = await audit.create_job(new_job())
    other = await audit.create_job(new_job(guild_id=5))
    assert [j.id for j in await audit.list_jobs()] == [mine, other]
    assert [j.id for j in await audit.list_jobs(guild_id=GUILD)] == [mine]
    assert await audit.list_jobs(since=datetime.now(UTC) + timedelta(minutes=1)) == []
    assert len(await audit.list_jobs(since=datetime.now(UTC) - timedelta(minutes=1))) == 2


async def test_posted_messages_lead_back_to_their_job(sessions: SessionFactory) -> None:
    job_id = await AuditLog(sessions).create_job(new_job())
    posts = PostedMessages(sessions)
    message_id = 1_300_000_000_000_000_003
    await posts.link_message(message_id, job_id, channel_id=3, guild_id=GUILD, variant=2)
    found = await posts.job_for_message(message_id)
    assert found is not None
    assert (found[0].id, found[1]) == (job_id, 2)
    assert await posts.job_for_message(1) is None
    await posts.link_message(message_id, job_id, channel_id=4, guild_id=GUILD)  # now the result
    assert await posts.messages_for_job(job_id) == [(4, message_id)]
    await posts.unlink_message(message_id)
    assert await posts.job_for_message(message_id) is None
    assert await posts.messages_for_job(job_id) == []


async def test_an_open_job_is_held_by_one_live_lease_at_a_time(sessions: SessionFactory) -> None:
    audit, leases = AuditLog(sessions), JobLeases(sessions)
    mine, theirs = Lease("host:1:a", 60), Lease("host:2:b", 60)
    job_id = await audit.create_job(new_job(), lease=mine)
    held = await audit.get_job(job_id)
    assert held is not None
    assert held.lease_owner == mine.owner
    assert await leases.take_lease(job_id, theirs) is None  # mine is alive
    taken = await leases.take_lease(job_id, theirs, dead=lambda owner: owner == mine.owner)
    assert taken is not None
    assert taken.id == job_id
    assert await leases.renew_leases(theirs) == 1
    assert await leases.renew_leases(mine) == 0
    await leases.release_leases(theirs.owner)
    assert await leases.take_lease(job_id, mine) is not None  # free again at once
    await audit.record_outcome(job_id, JobStatus.CANCELLED)
    assert await leases.take_lease(job_id, mine) is None  # finished: nothing to follow
    expired = await audit.create_job(new_job(), lease=Lease(mine.owner, -1))
    assert await leases.take_lease(expired, theirs) is not None  # its lease ran out


async def test_a_control_starts_one_job_until_that_job_ends_without_images(
    sessions: SessionFactory,
) -> None:
    audit, claims = AuditLog(sessions), ActionClaims(sessions)
    parent = await audit.create_job(new_job())
    first = await claims.claim_action(parent, "upscale-2", 7)
    assert first.claimed
    assert first.claimed_at is not None
    assert await claims.claim_action(parent, "upscale-2", 8) == ActionClaim(False, None)
    assert (await claims.claim_action(parent, "reroll", 8)).claimed  # another control is free
    child = await audit.create_job(new_job())
    assert await claims.action_started(parent, "upscale-2", child, first.claimed_at)
    again = await claims.claim_action(parent, "upscale-2", 7)
    assert not again.claimed
    assert again.existing is not None
    assert again.existing.id == child
    await audit.record_outcome(child, JobStatus.REFUSED, error="over the limit")
    assert (await claims.claim_action(parent, "upscale-2", 7)).claimed  # it can be used again
    await claims.release_action(parent, "upscale-2")  # it started nothing after all
    assert (await claims.claim_action(parent, "upscale-2", 8)).claimed


async def test_guild_settings_default_then_update(sessions: SessionFactory) -> None:
    repo = GuildSettingsRepository(sessions)
    default = await repo.get(GUILD)
    assert (default.nsfw_policy, default.nsfw_threshold) == (NsfwPolicy.BLOCK, None)
    updated = await repo.update(
        GUILD, nsfw_policy="spoiler", nsfw_threshold=0.3, user_images_per_hour=5
    )
    assert (updated.nsfw_policy, updated.nsfw_threshold) == (NsfwPolicy.SPOILER, 0.3)
    assert (await repo.get(GUILD)).user_images_per_hour == 5
    with pytest.raises(UnknownSettings, match="unknown guild settings \\['colour'\\]"):
        await repo.update(GUILD, colour="red")
    with pytest.raises(InvalidValue, match="nsfw_policy must be one of block, spoiler, got 'sh"):
        await repo.update(GUILD, nsfw_policy="show")
    async with sessions.begin() as session:  # written by hand: the safe policy stands
        row = await session.get(GuildSettings, GUILD)
        assert row is not None
        row.nsfw_policy = "show"
    assert (await repo.get(GUILD)).nsfw_policy is NsfwPolicy.BLOCK
    with pytest.raises(InvalidValue, match=r"nsfw_threshold must be in \(0, 1\], got 1.5"):
        await repo.update(GUILD, nsfw_threshold=1.5)
    assert default.controls is Controls.REQUESTER
    assert (
        await repo.update(GUILD, controls="everyone", max_steps=30)
    ).controls is Controls.EVERYONE
    with pytest.raises(InvalidValue, match="controls must be one of requester, everyone, got 'a"):
        await repo.update(GUILD, controls="all")
    with pytest.raises(InvalidValue, match="max_steps must be a whole number from 1 to 500, got 0"):
        await repo.update(GUILD, max_steps=0)


async def test_bans_expire_and_lift(sessions: SessionFactory) -> None:
    bans = BanList(sessions)
    await bans.ban(GUILD, USER, banned_by=1, reason="spam")
    active = await bans.active_ban(GUILD, USER)
    assert active is not None
    assert active.reason == "spam"
    assert await bans.active_ban(GUILD + 1, USER) is None

    await bans.ban(GUILD, USER, banned_by=1, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert await bans.active_ban(GUILD, USER) is None
    assert len(await bans.list(GUILD)) == 1
    assert await bans.unban(GUILD, USER) is True
    assert await bans.unban(GUILD, USER) is False


async def test_terms_are_scoped_to_guild_plus_global(sessions: SessionFactory) -> None:
    terms = TermList(sessions)
    assert await terms.add(GUILD, TermKind.BLOCK, "  Clown ") is True
    assert await terms.add(GUILD, TermKind.BLOCK, "clown") is False
    assert await terms.add(None, TermKind.BLOCK, "spider") is True
    assert await terms.add(7, TermKind.ALLOW, "clown") is True
    seen = {(t.guild_id, t.kind, t.term) for t in await terms.for_guild(GUILD)}
    assert seen == {(GUILD, TermKind.BLOCK, "clown"), (None, TermKind.BLOCK, "spider")}
    assert await terms.remove(GUILD, TermKind.BLOCK, "CLOWN") is True
    assert [t.term for t in await terms.for_guild(GUILD)] == ["spider"]
    with pytest.raises(EmptyTerm, match="a term must not be empty"):
        await terms.add(GUILD, TermKind.BLOCK, "   ")


async def test_force_safe_and_pattern_entries_expire(sessions: SessionFactory) -> None:
    terms = TermList(sessions)
    now = datetime.now(UTC)
    await terms.add(GUILD, TermKind.FORCE_SAFE, "Swimsuit", added_by=USER)
    await terms.add(GUILD, TermKind.BLOCK, r"\bClowns?\b", is_regex=True)  # kept as written
    await terms.add(GUILD, TermKind.BLOCK, "spiders", expires_at=now - timedelta(seconds=1))
    await terms.add(GUILD, TermKind.BLOCK, "bats", expires_at=now + timedelta(hours=1))
    seen = {(t.kind, t.term, t.is_regex) for t in await terms.for_guild(GUILD)}
    assert seen == {
        (TermKind.FORCE_SAFE, "swimsuit", False),
        (TermKind.BLOCK, r"\bClowns?\b", True),
        (TermKind.BLOCK, "bats", False),
    }
    # Adding an entry again renews its expiry.
    assert await terms.add(GUILD, TermKind.BLOCK, "spiders") is False
    assert "spiders" in {t.term for t in await terms.for_guild(GUILD)}
    assert await terms.remove(GUILD, TermKind.BLOCK, r"\bClowns?\b") is True


async def test_moderation_actions_are_logged_newest_first(sessions: SessionFactory) -> None:
    log = ModerationLog(sessions)
    first = await log.record(guild_id=GUILD, actor_id=1, action="ban", target_user_id=USER)
    second = await log.record(
        guild_id=GUILD, actor_id=1, action="block_term", details={"term": "clown"}, reason="r"
    )
    actions = await log.list(GUILD)
    assert [a.id for a in actions] == [second, first]
    assert actions[0].details == {"term": "clown"}
    assert await log.list(GUILD + 1) == []

    heard: list[str] = []

    def broken(_: object) -> None:
        raise RuntimeError("a listener that fails")

    log.listeners += [broken, lambda action: heard.append(action.action)]
    third = await log.record(guild_id=GUILD, actor_id=1, action="pause", reason="raid")
    assert heard == ["pause"]  # the failing listener neither stops the others nor the record
    assert (await log.list(GUILD))[0].id == third


async def test_guild_admin_settings_hold_size_channels_and_pause(sessions: SessionFactory) -> None:
    repo = GuildSettingsRepository(sessions)
    default = await repo.get(GUILD)
    assert (default.max_side, default.channels, default.paused) == (None, None, False)
    assert default.answers_in(12345)

    channel = 1_300_000_000_000_000_003  # a snowflake: survives JSON on both databases
    paused_at = datetime.now(UTC)
    record = await repo.update(
        GUILD, max_side=256, channels=[channel, 5, channel], paused_at=paused_at, pause_reason="r"
    )
    assert record.max_side == 256
    assert record.channels == (5, channel)  # sorted, once each
    assert record.answers_in(channel)
    assert not record.answers_in(6)
    assert record.paused
    assert record.paused_at is not None
    assert abs((record.paused_at - paused_at).total_seconds()) < 1
    assert (await repo.get(GUILD + 1)).channels is None  # another guild is untouched

    with pytest.raises(
        InvalidValue, match="max_side must be a multiple of 8 from 64 to 4096, got 100"
    ) as too_big:
        await repo.update(GUILD, max_side=100)
    # a front end that calls the setting something else says it in its own words
    assert (too_big.value.name, too_big.value.value) == ("max_side", 100)
    assert too_big.value.message_for("max_size") == (
        "max_size must be a multiple of 8 from 64 to 4096, got 100"
    )
    assert isinstance(too_big.value, StorageError)
    assert isinstance(too_big.value, SdbotError)
    assert too_big.value.kind is ErrorKind.BAD_INPUT
    with pytest.raises(InvalidValue, match="channels must name 1 to 50 channels"):
        await repo.update(GUILD, channels=[])
    with pytest.raises(InvalidValue, match="got 51"):
        await repo.update(GUILD, channels=list(range(1, 52)))
    cleared = await repo.update(GUILD, channels=None, paused_at=None, max_side=None)
    assert (cleared.channels, cleared.paused, cleared.max_side) == (None, False, None)


async def test_a_job_keeps_its_loras_and_embeddings(sessions: SessionFactory) -> None:
    audit = AuditLog(sessions)
    plain_id = await audit.create_job(new_job())
    styled_id = await audit.create_job(
        new_job(model="sd15", loras=("outline:0.8", "stripes:-1.5"), embeddings=("sdbot-noise",))
    )
    plain, styled = await audit.get_job(plain_id), await audit.get_job(styled_id)
    assert plain is not None
    assert styled is not None
    assert (plain.loras, plain.embeddings) == ((), ())
    assert (styled.model, styled.loras, styled.embeddings) == (
        "sd15",
        ("outline:0.8", "stripes:-1.5"),
        ("sdbot-noise",),
    )
    assert styled.to_dict()["loras"] == ["outline:0.8", "stripes:-1.5"]
    assert [job.loras for job in await audit.list_jobs()] == [(), ("outline:0.8", "stripes:-1.5")]


async def test_a_guild_limits_the_models_and_loras_by_name(sessions: SessionFactory) -> None:
    repo = GuildSettingsRepository(sessions)
    default = await repo.get(GUILD)
    assert (default.allowed_models, default.allowed_loras) == (None, None)
    assert default.allows_model("sd15")
    assert default.allows_lora("outline")

    record = await repo.update(
        GUILD, allowed_models=["sd15", "embedded", "sd15"], allowed_loras=["outline"]
    )
    assert record.allowed_models == ("embedded", "sd15")  # sorted, once each
    assert record.allowed_loras == ("outline",)
    assert record.allows_model("embedded")
    assert not record.allows_model("sdxl")
    assert not record.allows_lora("stripes")
    assert (await repo.get(GUILD + 1)).allowed_models is None  # another guild is untouched

    none = await repo.update(GUILD, allowed_loras=[])  # no LoRA at all
    assert none.allowed_loras == ()
    assert not none.allows_lora("outline")
    with pytest.raises(InvalidValue, match="allowed_models must name 1 to 50"):
        await repo.update(GUILD, allowed_models=[])  # no model at all: that is /mod pause
    with pytest.raises(InvalidValue, match="allowed_loras must be a list of names"):
        await repo.update(GUILD, allowed_loras="outline")
    with pytest.raises(InvalidValue, match="allowed_models must be names of 1 to 64"):
        await repo.update(GUILD, allowed_models=["x" * 65])
    cleared = await repo.update(GUILD, allowed_models=None, allowed_loras=None)
    assert (cleared.allowed_models, cleared.allowed_loras) == (None, None)


async def test_moderation_reads_by_member_and_state(sessions: SessionFactory) -> None:
    bans = BanList(sessions)
    await bans.ban(GUILD, USER, banned_by=1)
    await bans.ban(GUILD, USER + 1, banned_by=1, expires_at=datetime.now(UTC) - timedelta(1))
    assert [b.user_id for b in await bans.list(GUILD)] == [USER, USER + 1]
    assert [b.user_id for b in await bans.list(GUILD, active=True)] == [USER]

    log = ModerationLog(sessions)
    on_user = await log.record(guild_id=GUILD, actor_id=1, action="ban", target_user_id=USER)
    by_user = await log.record(guild_id=GUILD, actor_id=USER, action="denied")
    await log.record(guild_id=GUILD, actor_id=1, action="ban", target_user_id=USER + 1)
    await log.record(guild_id=GUILD + 1, actor_id=USER, action="denied")
    assert [a.id for a in await log.list(GUILD, user_id=USER)] == [by_user, on_user]
    assert len(await log.list(GUILD, limit=None)) == 3

    audit = AuditLog(sessions)
    mine = await audit.create_job(new_job())
    theirs = await audit.create_job(new_job(user_id=USER + 1))
    elsewhere = await audit.create_job(new_job(guild_id=GUILD + 1))
    blocked = await audit.create_job(new_job(Verdict.BLOCKED))
    assert [j.id for j in await audit.open_jobs(guild_id=GUILD)] == [mine, theirs]
    assert [j.id for j in await audit.open_jobs(guild_id=GUILD, user_id=USER)] == [mine]
    listed = await audit.list_jobs(
        guild_id=GUILD, user_id=USER, statuses=[JobStatus.BLOCKED], newest_first=True
    )
    assert [j.id for j in listed] == [blocked]
    assert [j.id for j in await audit.list_jobs(guild_id=GUILD, newest_first=True, limit=2)] == [
        blocked,
        theirs,
    ]

    posts = PostedMessages(sessions)
    for message_id, job_id in ((10, mine), (11, theirs), (12, elsewhere), (13, mine)):
        await posts.link_message(message_id, job_id, channel_id=3, guild_id=GUILD)
    assert await posts.posts_for_user(GUILD, USER) == [(3, 10, mine), (3, 13, mine)]
    assert await posts.posts_for_user(GUILD + 1, USER) == [(3, 12, elsewhere)]

    flagged = dataclasses.replace(image(1, 101), safety_score=0.9, safety_verdict="flagged")
    await audit.record_outcome(mine, JobStatus.SUCCEEDED, images=[flagged, image(2, 102)])
    await audit.record_outcome(
        elsewhere, JobStatus.SUCCEEDED, images=[dataclasses.replace(flagged, watermark_id=103)]
    )
    [(job, found)] = await audit.flagged_images(GUILD)
    assert (job.id, found.variant, found.safety_score) == (mine, 1, 0.9)


def test_storage_keeps_the_moderation_policy_values() -> None:
    """Storage has its own enums (it imports nothing of sdbot's); the bot converts by value."""
    from moderation import policy

    assert [p.value for p in NsfwPolicy] == [p.value for p in policy.NsfwPolicy]
    assert [d.value for d in Disposition] == [d.value for d in policy.Disposition]
