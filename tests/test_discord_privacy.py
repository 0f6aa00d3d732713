"""/privacy delete and /mod forget on the fake Discord, with the real client, the real worker
process and the embedded model: a member's prompts and image files are really gone, only where
the command reaches, and what is left is said."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest

from bot.discord.client import ImagineBot
from bot.discord.privacy import Deletion, own_deletion_text
from bot.discord.render import REROLL
from bot.discord.text import MESSAGE_LIMIT, plural
from bot.guild_admin import PurgeOutcome
from bot.ops.privacy import ForgetReport
from fake_discord import Channel, FakeDiscord, Guild, Message, Permission, User
from fake_discord.client import with_controls
from fake_discord.server import Interaction
from storage.audit import AuditLog
from storage.engine import SessionFactory
from storage.posts import MemberPost, PostedMessages
from storage.records import JobRecord
from tests.test_discord_mod import _answer, _join
from tests.test_storage import GUILD, USER, new_job

World = tuple[Guild, Channel, User]
OWN = "yes"  # the confirming choice's value
DELETE_ROUTE = "DELETE /channels/{channel_id}/messages/{message_id}"


def _posts(fake: FakeDiscord, channel: Channel) -> list[int]:
    """The messages everyone sees in a channel (not the answers for one member)."""
    return [m.id for m in fake.channel_messages(channel) if not m.ephemeral]


def _refused(interaction: Interaction) -> Message | None:
    """An ephemeral answer: /imagine refused the request."""
    answer = _answer(interaction)
    return answer if answer is not None and answer.ephemeral else None


async def _ask(
    fake: FakeDiscord, member: User, channel: Channel, command: str, /, **options: Any
) -> str:
    """A command's answer, which here is always for the member alone."""
    checked = options.pop("checked", True)
    interaction = await fake.slash(member, channel, command, checked=checked, **options)
    answer = await fake.wait_for(functools.partial(_answer, interaction))  # 60 s ceiling
    assert answer.ephemeral, answer.content
    return answer.content


async def _drawn(bot: ImagineBot, fake: FakeDiscord, member: User, channel: Channel,
                 prompt: str) -> tuple[JobRecord, list[Path], Message]:  # fmt: skip
    """``member`` draws ``prompt`` with /imagine: its record, its image files and its post."""
    interaction = await fake.slash(member, channel, "imagine", prompt=prompt, seed=3, steps=2)
    shown = await fake.wait_for(
        lambda: with_controls(interaction.original) or _refused(interaction), within=120
    )
    assert not shown.ephemeral, shown.content  # a refusal says why
    post = shown
    [job] = [j for j in await bot.storage.audit.list_jobs() if j.prompt == prompt]
    paths = [Path(image.path) for image in job.images if image.path]
    assert paths
    assert all(path.is_file() for path in paths)
    return job, paths, post


async def _purged(bot: ImagineBot, job: JobRecord, prompt: str, paths: list[Path]) -> bool:
    """Whether the job's prompt and its image files are gone, its record kept."""
    record = await bot.storage.audit.get_job(job.id)
    assert record is not None  # the record stays: its id, verdict and hashes
    assert record.verdict == job.verdict
    assert [image.sha256 for image in record.images] == [image.sha256 for image in job.images]
    gone = prompt not in record.prompt and not any(path.exists() for path in paths)
    kept = record.prompt == prompt and all(path.is_file() for path in paths)
    assert gone or kept, "half purged"
    return gone


async def test_a_member_deletes_their_own_prompts_images_and_posts_everywhere(
    fake_discord: FakeDiscord, bot: ImagineBot, world: World
) -> None:
    guild, channel, ada = world
    mod = _join(fake_discord, guild, "mod", Permission.MANAGE_GUILD)
    other = fake_discord.create_guild("elsewhere")
    other_channel = fake_discord.create_channel(other, "images")
    fake_discord.add_member(other, ada)
    dm = fake_discord.dm_channel(ada)
    bea = _join(fake_discord, guild, "bea")
    here, here_files, here_post = await _drawn(bot, fake_discord, ada, channel, "a red circle")
    there, there_files, there_post = await _drawn(
        bot, fake_discord, ada, other_channel, "a green dot"
    )
    _, gone_files, gone_post = await _drawn(bot, fake_discord, ada, channel, "a small square")
    hers, her_files, her_post = await _drawn(bot, fake_discord, bea, channel, "a blue square")
    # A moderator rerolls ada's grid: the reroll is the moderator's job, but it shows ada's
    # prompt and is drawn from it, so her deletion takes it too (the moderator keeps it as theirs).
    fake_discord.react(mod.id, here_post, REROLL)

    def rerolled() -> Message | None:
        for message in fake_discord.channel_messages(channel):
            reference = message.message_reference or {}
            if int(reference.get("message_id", 0)) == here_post.id and with_controls(message):
                return message
        return None

    await fake_discord.wait_for(rerolled, within=120)
    [reroll] = [j for j in await bot.storage.audit.list_jobs() if j.parent_job_id == here.id]
    reroll_files = [Path(image.path) for image in reroll.images if image.path]
    assert reroll.user_id == mod.id
    assert reroll_files

    # Without confirming: what would go, counted (sdbot's posts too); nothing goes.
    files = len(here_files) + len(there_files) + len(gone_files) + len(reroll_files)
    said = await _ask(fake_discord, ada, channel, "privacy delete")
    assert said.splitlines()[:5] == [
        "**`/privacy delete` would delete, in every server and in DMs:**",
        "- 4 of sdbot's posts, in their channels",  # the moderator's reroll of hers too
        "- 4 prompts",
        f"- {plural(files, 'image file')}",
        "To delete it, run `/privacy delete` again with `confirm`: “yes, delete my prompts and "
        "images everywhere”.",
    ]
    assert not await _purged(bot, here, "a red circle", here_files)
    assert not [post for post in (here_post, there_post, gone_post) if post.deleted]
    # Discord's client offers one choice; a modified client's other value deletes nothing.
    with pytest.raises(ValueError, match="the choices are"):
        await fake_discord.slash(ada, channel, "privacy delete", confirm="no")
    said = await _ask(fake_discord, ada, channel, "privacy delete", confirm="no", checked=False)
    assert said.startswith("⚠️ nothing was deleted: `confirm` was 'no'; choose “yes, delete")
    assert not await _purged(bot, here, "a red circle", here_files)
    assert not here_post.deleted

    # Someone deleted one post by hand already: it is skipped, counted as gone. A rate limit
    # on the way is waited out.
    fake_discord.delete_message(gone_post)
    fake_discord.rate_limit(DELETE_ROUTE, retry_after=0.1)
    said = await _ask(fake_discord, ada, channel, "privacy delete", confirm=OWN)
    lines = said.splitlines()
    assert lines[:3] == [
        "🗑️ **your prompts and images are deleted, in every server and in DMs**",
        "- 3 of sdbot's posts deleted from their channels",
        "- 1 of sdbot's posts was already gone",
    ]
    assert "- 4 prompts deleted from sdbot's records" in lines
    assert f"- {plural(files, 'image file')} deleted" in lines
    assert lines[-1].startswith("**kept**: each job's record")
    assert "/mod purge" not in said  # nothing is left for it
    # Gone in both servers (bea's stays, with her prompt).
    assert _posts(fake_discord, channel) == [her_post.id]
    assert not _posts(fake_discord, other_channel)
    assert await _purged(bot, here, "a red circle", here_files)
    assert await _purged(bot, there, "a green dot", there_files)
    assert not await _purged(bot, hers, "a blue square", her_files)
    assert await _purged(bot, reroll, "a red circle", reroll_files)
    rerolled_record = await bot.storage.audit.get_job(reroll.id)
    assert rerolled_record is not None
    assert rerolled_record.user_id == mod.id  # the moderator's job, emptied of ada's prompt
    for post in (here_post, there_post, gone_post):
        assert await bot.storage.posts.job_for_message(post.id) is None

    assert 429 in [call.status for call in fake_discord.calls_to(DELETE_ROUTE)]

    # Each server's moderators see why the posts went, in their own log.
    [purged] = [a for a in await bot.storage.moderation.list(guild.id) if a.action == "purge"]
    assert (purged.actor_id, purged.target_user_id) == (ada.id, ada.id)
    assert (purged.reason, purged.details) == (
        "/privacy delete",
        {"deleted": 2, "already_gone": 1, "failed": 0},
    )
    [purged] = await bot.storage.moderation.list(other.id)
    assert purged.details == {"deleted": 1, "already_gone": 0, "failed": 0}
    said = await _ask(fake_discord, mod, channel, "mod history", user=ada)
    assert f"<@{ada.id}> deleted 2 posts made for <@{ada.id}> · /privacy delete" in said

    # Asked again, from a direct message: nothing is left to delete.
    said = await _ask(fake_discord, ada, dm, "privacy delete", confirm=OWN)
    assert said.startswith("✅ nothing to delete: sdbot holds no prompts or images of yours")

    info = await _ask(fake_discord, bea, channel, "privacy info")
    assert info.splitlines()[0] == "**what sdbot keeps about you**"
    assert "`/privacy delete` deletes your prompts and images everywhere, now." in info


async def test_only_moderators_forget_a_member_and_only_on_their_server(
    fake_discord: FakeDiscord, bot: ImagineBot, world: World
) -> None:
    guild, channel, ada = world
    mod = _join(fake_discord, guild, "mod", Permission.MANAGE_GUILD)
    bea = _join(fake_discord, guild, "bea")
    mod_log = fake_discord.create_channel(guild, "mod-log")
    side = fake_discord.create_channel(guild, "side")
    other = fake_discord.create_guild("elsewhere")
    other_channel = fake_discord.create_channel(other, "images")
    fake_discord.add_member(other, ada)
    here, here_files, here_post = await _drawn(bot, fake_discord, ada, channel, "a red circle")
    side_job, side_files, side_post = await _drawn(bot, fake_discord, ada, side, "a tree")
    there, there_files, there_post = await _drawn(
        bot, fake_discord, ada, other_channel, "a green dot"
    )

    # A member without Manage Server: Discord hides the command; sent anyway, it is refused.
    with pytest.raises(PermissionError):
        await fake_discord.slash(bea, channel, "mod forget", user=ada, confirm=OWN)
    said = await _ask(
        fake_discord, bea, channel, "mod forget", user=ada, confirm=OWN, checked=False
    )
    assert said == "⛔ `/mod forget` is for members with Manage Server"
    assert not await _purged(bot, here, "a red circle", here_files)
    assert not here_post.deleted
    [denied] = await bot.storage.moderation.list(guild.id)
    assert (denied.action, denied.actor_id) == ("denied", bea.id)

    files = len(here_files) + len(side_files)
    said = await _ask(fake_discord, mod, channel, "mod forget", user=ada)
    assert said.splitlines()[:4] == [
        f"**`/mod forget` would delete on this server, for <@{ada.id}>:**",
        "- 2 of sdbot's posts, in their channels",
        "- 2 prompts",
        f"- {plural(files, 'image file')}",
    ]
    assert not await _purged(bot, here, "a red circle", here_files)

    # One channel's delete fails on Discord's side: the post there stays, and where is said.
    fake_discord.fail(DELETE_ROUTE, status=403)
    said = await _mod_forget(fake_discord, mod, channel, ada, mod_log)
    lines = said.splitlines()
    assert lines[:2] == [
        f"🗑️ **<@{ada.id}>'s prompts and images on this server are deleted**",
        "- 1 of sdbot's posts deleted from their channels",
    ]
    assert "- 2 prompts deleted from sdbot's records" in lines
    assert f"- {plural(files, 'image file')} deleted" in lines
    [failed] = [post for post in (here_post, side_post) if not post.deleted]
    assert lines[-1] == (
        f"⚠️ sdbot's posts in <#{failed.channel_id}> could not be deleted: "
        "upstream error (fault injected)"
    )
    assert "/mod purge" not in said
    assert await _purged(bot, here, "a red circle", here_files)
    assert await _purged(bot, side_job, "a tree", side_files)
    # The other server's post and data stay.
    assert not there_post.deleted
    assert _posts(fake_discord, other_channel) == [there_post.id]
    assert not await _purged(bot, there, "a green dot", there_files)

    recorded = await bot.storage.moderation.list(guild.id)
    forgot = [a for a in recorded if a.action == "forget"]
    assert [(a.actor_id, a.target_user_id) for a in forgot] == [(mod.id, ada.id)]
    [purged] = [a for a in recorded if a.action == "purge"]
    assert (purged.actor_id, purged.target_user_id, purged.reason) == (
        mod.id, ada.id, "/mod forget",
    )  # fmt: skip
    assert purged.details == {"deleted": 1, "already_gone": 0, "failed": 1}
    assert not await bot.storage.moderation.list(other.id)
    posted = await fake_discord.wait_for(
        lambda: [m for m in fake_discord.channel_messages(mod_log) if "prompts and" in m.content]
    )
    assert posted[0].content.startswith(f"🛡️ <@{mod.id}> deleted <@{ada.id}>'s prompts and images")

    said = await _ask(fake_discord, mod, channel, "mod forget", user=ada, confirm=OWN)
    assert said == f"✅ nothing to delete: sdbot holds no prompts or images of <@{ada.id}> here"


async def _mod_forget(
    fake: FakeDiscord, mod: User, channel: Channel, member: User, log_channel: Channel
) -> str:
    """The moderator names a log channel, then forgets ``member`` here."""
    said = await _ask(fake, mod, channel, "mod settings", log_channel=log_channel)
    assert said.startswith("✅ log_channel: none → ")
    return await _ask(fake, mod, channel, "mod forget", user=member, confirm=OWN)


async def test_a_deletion_that_breaks_is_answered_and_the_bot_goes_on(
    fake_discord: FakeDiscord,
    bot: ImagineBot,
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, channel, ada = world

    async def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr("bot.discord.privacy.forget_member", broken)
    said = await _ask(fake_discord, ada, channel, "privacy delete", confirm=OWN)
    assert said == (
        "⚠️ the deletion broke off on sdbot's side; some data may already be gone. Run "
        "`/privacy delete` again with `confirm`: it deletes what is left. If it fails again, "
        "tell the bot's operator."
    )
    [logged] = [r for r in caplog.records if r.getMessage().startswith("forget (privacy) failed")]
    assert logged.exc_info is not None  # with its traceback, for the operator
    monkeypatch.undo()
    said = await _ask(fake_discord, ada, channel, "privacy delete", confirm=OWN)
    assert said.startswith("✅ nothing to delete")


def test_a_deletion_that_left_posts_in_many_channels_fits_one_message() -> None:
    """Every channel where posts stayed is named while they fit; the rest are counted."""
    report = ForgetReport(1, None, jobs=900, images=3600, inputs=9, redis_entries=9, cancelled=3)
    why = "Missing Access, " * 20
    failed = {channel_id: why for channel_id in range(10**18, 10**18 + 200)}
    done = PurgeOutcome(deleted=500, already_gone=7, failed=failed, posts=707)
    text = own_deletion_text(Deletion(done, report))
    lines = text.splitlines()
    assert len(text) <= MESSAGE_LIMIT
    assert lines[1:3] == [
        "- 500 of sdbot's posts deleted from their channels",
        "- 7 of sdbot's posts were already gone",
    ]
    named = len(lines) - 10  # less the heading, 2 post lines, 5 counts, kept, "… and more"
    assert named >= 5
    assert lines[-2] == (
        f"⚠️ sdbot's posts in <#{10**18 + named - 1}> could not be deleted: {why[:99]}…"
    )
    assert lines[-1] == (
        f"… and {200 - named} more channels where sdbot's posts could not be deleted"
    )


async def test_a_job_the_deletion_cancels_leaves_no_post_behind(
    fake_discord: FakeDiscord, bot: ImagineBot, world: World
) -> None:
    """Ada's job waits behind Bea's when Ada deletes her data: it is cancelled, and the post
    that says so (its status message taken down already, a new one) is taken down too."""
    guild, channel, ada = world
    bea = _join(fake_discord, guild, "bea")
    hers = await fake_discord.slash(bea, channel, "imagine", prompt="a blue square", steps=50)
    await fake_discord.wait_for(
        lambda: hers.original is not None and "drawing" in hers.original.content, within=120
    )
    mine = await fake_discord.slash(ada, channel, "imagine", prompt="a red circle", steps=2)
    await fake_discord.wait_for(
        lambda: mine.original is not None and "queued" in mine.original.content
    )
    [job] = await bot.storage.audit.open_jobs(user_id=ada.id)

    said = await _ask(fake_discord, ada, channel, "privacy delete", confirm=OWN)
    assert "- 1 queued or running job cancelled first" in said.splitlines()
    record = await bot.storage.audit.get_job(job.id)
    assert record is not None
    assert record.status.value == "cancelled"
    assert "a red circle" not in record.prompt
    left = [m for m in fake_discord.channel_messages(channel) if not m.ephemeral]
    assert hers.original in left
    assert not [m for m in left if "a red circle" in m.content or f"<@{ada.id}>" in m.content]


async def test_a_members_posts_are_found_in_one_guild_or_everywhere(
    sessions: SessionFactory,
) -> None:
    """On SQLite and PostgreSQL: the posts a deletion takes down, by member (a guild, or every
    guild and DMs) and by job (whoever the job names now)."""
    audit, posts = AuditLog(sessions), PostedMessages(sessions)
    here = await audit.create_job(new_job())
    there = await audit.create_job(new_job(guild_id=GUILD + 1))
    in_dm = await audit.create_job(new_job(guild_id=None))
    theirs = await audit.create_job(new_job(user_id=USER + 1))
    for message_id, job_id, guild_id in ((10, here, GUILD), (11, there, GUILD + 1),
                                         (12, in_dm, None), (13, theirs, GUILD)):  # fmt: skip
        await posts.link_message(message_id, job_id, channel_id=message_id, guild_id=guild_id)

    everywhere = await posts.member_posts(USER, guild_id=None)
    assert everywhere == [
        MemberPost(10, 10, here, GUILD),
        MemberPost(11, 11, there, GUILD + 1),
        MemberPost(12, 12, in_dm, None),
    ]
    assert await posts.member_posts(USER, guild_id=GUILD) == everywhere[:1]
    assert await posts.posts_for_jobs({in_dm, theirs}) == [
        MemberPost(12, 12, in_dm, None),
        MemberPost(13, 13, theirs, GUILD),
    ]
    assert await posts.posts_for_jobs(set()) == []
