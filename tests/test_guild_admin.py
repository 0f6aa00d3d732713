"""GuildAdmin on a real database with neither Discord nor a queue: its rules are typed refusals
that name what is wrong, and stopping jobs or deleting posts goes through what it is given."""

from __future__ import annotations

import pytest

from bot.guild_admin import (
    BanRefused,
    ChannelEdit,
    ChannelRefused,
    Deleted,
    GuildAdmin,
    InvalidDuration,
    LogChannelRefused,
    Member,
    SettingsConflict,
    expiry,
    requested_changes,
)
from bot.guild_limits import BotLimits
from bot.guild_settings import InvalidSetting, Naming, render
from common.errors import ErrorKind
from generation.limits import Limits
from generation.options import ModelDefaults, OptionLimits
from moderation.errors import InvalidTerm
from storage.engine import SessionFactory
from storage.errors import InvalidValue
from storage.guild_settings import GuildSettingsRecord
from storage.models import JobStatus, TermKind, Verdict
from storage.records import NewJob
from storage.repositories import Storage, repositories

GUILD, MOD, ADA = 10, 9, 5
BOT = BotLimits(
    options=OptionLimits(max_steps=50, max_side=1024),
    defaults=ModelDefaults(),
    rates=Limits(),
    nsfw_threshold=0.5,
)


def _job(user_id: int = ADA) -> NewJob:
    return NewJob(
        source="discord", prompt="a red circle", negative_prompt="", steps=4,
        guidance_scale=7.0, width=64, height=64, variants=1, scheduler="default",
        model="embedded", seeds=(1,), verdict=Verdict.ALLOWED, guild_id=GUILD, channel_id=3,
        user_id=user_id,
    )  # fmt: skip


@pytest.fixture
def storage(sessions: SessionFactory) -> Storage:
    return repositories(sessions)


async def test_who_may_be_banned_and_what_a_ban_stops(storage: Storage) -> None:
    stopped: list[tuple[int, str]] = []

    async def stop(job_id: int, why: str) -> str:
        stopped.append((job_id, why))
        return "dequeued"

    admin = GuildAdmin(storage, BOT, stop=stop)
    for member, refusal in [
        (Member(MOD), "you cannot ban yourself"),
        (Member(ADA, is_bot=True), f"<@{ADA}> is a bot; bots do not use sdbot"),
        (Member(ADA, manages_guild=True), f"<@{ADA}> has Manage Server and could lift a ban"),
    ]:
        with pytest.raises(BanRefused, match=refusal) as refused:
            await admin.ban(GUILD, MOD, member)
        assert refused.value.kind is ErrorKind.BAD_INPUT
    assert await storage.moderation.list(GUILD) == []  # a refusal changes and records nothing

    job_id = await storage.audit.create_job(_job())
    await storage.audit.create_job(_job(user_id=ADA + 1))  # someone else's: left alone
    done = await admin.ban(GUILD, MOD, ADA, reason="spam")
    assert done.stopped == (job_id,)
    assert stopped == [(job_id, "its requester was banned from sdbot here")]
    assert [b.user_id for b in await admin.active_bans(GUILD)] == [ADA]
    [action] = await storage.moderation.list(GUILD)
    assert action.details["cancelled_jobs"] == [job_id]


async def test_without_a_queue_nothing_is_stopped(storage: Storage) -> None:
    admin = GuildAdmin(storage)  # the CLI's: no bot limits, no way to stop jobs
    await storage.audit.create_job(_job())
    assert (await admin.ban(GUILD, MOD, ADA)).stopped == ()
    assert await admin.pause(GUILD, MOD, "raid") == (True, ())
    assert (await admin.settings(GUILD)).paused
    assert await admin.resume(GUILD, MOD)
    [job] = await storage.audit.open_jobs(guild_id=GUILD)
    assert job.status is JobStatus.QUEUED


async def test_settings_are_never_laxer_than_the_bot_and_name_the_bad_value(
    storage: Storage,
) -> None:
    admin = GuildAdmin(storage, BOT)
    with pytest.raises(InvalidSetting, match=r"^max_steps 400 is above the bot's limit of 50$"):
        await admin.change_settings(GUILD, MOD, {"max_steps": 400})
    with pytest.raises(InvalidSetting, match=r"^max_size must be a multiple of 8 from 64 to 4096"):
        await admin.change_settings(GUILD, MOD, {"max_side": 100}, naming=Naming.OPTION)
    with pytest.raises(LogChannelRefused, match="sdbot cannot post in <#7>"):
        await admin.change_settings(
            GUILD, MOD, {"audit_channel_id": 7}, can_post=lambda channel: channel != 7
        )
    assert await storage.moderation.list(GUILD) == []

    change = await admin.change_settings(
        GUILD, MOD, {"max_steps": 12, "channels": [3, 1, 3], "controls": "everyone"}, "quieter"
    )
    assert change.changed == {
        "max_steps": (None, 12),
        "channels": (None, [1, 3]),
        "controls": ("requester", "everyone"),
    }
    here = admin.limits_for(change.after)
    assert (here.options.max_steps, here.defaults.steps) == (12, 12)
    [action] = await storage.moderation.list(GUILD)
    assert (action.action, action.reason) == ("settings", "quieter")
    again = await admin.change_settings(GUILD, MOD, {"max_steps": 12})
    assert again.changed == {}
    assert len(await storage.moderation.list(GUILD)) == 1  # nothing changed, nothing recorded


def test_channel_edits_and_resets_refuse_what_would_not_do_as_asked() -> None:
    only_one = GuildSettingsRecord(guild_id=GUILD, channels=(3,))
    with pytest.raises(ChannelRefused, match=r"^<#3> is the only channel sdbot answers in"):
        requested_changes(only_one, {}, channels=ChannelEdit(stop_answering_in=3))
    with pytest.raises(ChannelRefused, match=r"^sdbot does not answer in <#4> by a channel"):
        requested_changes(only_one, {}, channels=ChannelEdit(stop_answering_in=4))
    with pytest.raises(SettingsConflict, match=r"^`max_size` is both set and reset; choose one$"):
        requested_changes(only_one, {"max_side": 96}, reset="max_side")
    assert requested_changes(only_one, {}, channels=ChannelEdit(answer_in=4)) == {
        "channels": [3, 4]
    }
    assert requested_changes(only_one, {}, channels=ChannelEdit(every_channel=True)) == {
        "channels": None
    }
    assert requested_changes(only_one, {"max_steps": None}, reset="controls") == {
        "controls": "requester"
    }
    assert requested_changes(only_one, {}) == {}


def test_a_duration_is_refused_with_the_forms_allowed() -> None:
    assert expiry(None) is None
    with pytest.raises(InvalidDuration, match=r"^duration 'forever' is not a duration like 30m"):
        expiry("forever")
    with pytest.raises(InvalidDuration, match=r"^--expires 'soon' is not"):
        expiry("soon", "--expires")


async def test_terms_are_checked_before_they_are_stored(storage: Storage) -> None:
    admin = GuildAdmin(storage)
    with pytest.raises(InvalidTerm, match="can take too long"):
        await admin.add_term(GUILD, MOD, TermKind.BLOCK, "(a+)+$", is_regex=True)
    assert await admin.add_term(None, 0, TermKind.BLOCK, "clown*")  # every guild's, by the CLI
    assert not await admin.add_term(None, 0, TermKind.BLOCK, "clown*")
    assert await admin.add_term(GUILD, MOD, TermKind.BLOCK, "castle")
    own, shared = await admin.terms(GUILD, TermKind.BLOCK)
    assert ([entry.term for entry in own], shared) == (["castle"], 1)
    assert await admin.remove_term(None, 0, TermKind.BLOCK, "clown*")
    assert [a.action for a in await storage.moderation.list(GUILD)] == ["block_term_add"]


async def test_purge_deletes_through_what_it_is_given_and_keeps_what_failed(
    storage: Storage,
) -> None:
    admin = GuildAdmin(storage)
    job_id = await storage.audit.create_job(_job())
    for message_id, channel_id in [(101, 3), (102, 3), (103, 4)]:
        await storage.posts.link_message(message_id, job_id, channel_id=channel_id, guild_id=GUILD)
    results = {101: Deleted(), 102: Deleted(gone_before=True), 103: Deleted(failed="Forbidden")}

    async def delete(channel_id: int, message_id: int) -> Deleted:
        return results[message_id]

    done = await admin.purge(GUILD, MOD, ADA, delete, "asked to")
    assert (done.deleted, done.already_gone, done.failed, done.posts) == (1, 1, {4: "Forbidden"}, 3)
    assert [m for _, m in await storage.posts.messages_for_job(job_id)] == [103]
    [action] = await storage.moderation.list(GUILD)
    assert action.details == {"deleted": 1, "already_gone": 1, "failed": 1}


async def test_a_guilds_vary_is_subtle_or_strong_and_changing_it_is_logged(
    storage: Storage,
) -> None:
    admin = GuildAdmin(storage, BOT)
    assert (await admin.settings(GUILD)).vary is None  # subtle
    with pytest.raises(InvalidSetting, match=r"^vary must be one of subtle, strong, got 'wild'$"):
        await admin.change_settings(GUILD, MOD, {"vary": "wild"}, naming=Naming.OPTION)
    with pytest.raises(InvalidValue, match="vary"):  # storage keeps nothing else either
        await storage.guild_settings.update(GUILD, vary="wild")
    assert await storage.moderation.list(GUILD) == []

    change = await admin.change_settings(GUILD, MOD, {"vary": "strong"}, "bolder")
    assert change.changed == {"vary": (None, "strong")}
    assert (await admin.settings(GUILD)).vary == "strong"
    [action] = await storage.moderation.list(GUILD)
    assert (action.action, action.reason) == ("settings", "bolder")
    assert action.details == {"vary": {"from": None, "to": "strong"}}
    assert render("vary", None) == "subtle"

    reset = requested_changes(change.after, {}, reset="vary")
    assert reset == {"vary": None}
    back = await admin.change_settings(GUILD, MOD, reset)
    assert (back.changed, back.after.vary) == ({"vary": ("strong", None)}, None)
