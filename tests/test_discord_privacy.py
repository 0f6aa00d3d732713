"""/privacy delete and /mod forget on the fake Discord, with the real client, the real worker
process and the embedded model: a member's prompts and image files are really gone, only where
the command reaches, and what is left is said."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest

from bot.discord.client import ImagineBot
from bot.discord.text import plural
from fake_discord import Channel, FakeDiscord, Guild, Message, Permission, User
from fake_discord.client import with_controls
from fake_discord.server import Interaction
from storage.records import JobRecord

World = tuple[Guild, Channel, User]
OWN = "yes"  # the confirming choice's value


def _join(fake: FakeDiscord, guild: Guild, name: str, permissions: int = 0) -> User:
    user = fake.create_user(name)
    roles = [fake.create_role(guild, f"{name}'s role", permissions)] if permissions else []
    fake.add_member(guild, user, roles)
    return user


def _answer(interaction: Interaction) -> Message | None:
    """The bot's answer once it is there: the response, or the followup after a deferral."""
    if interaction.followups:
        return interaction.followups[-1]
    if interaction.response_type == 4 and interaction.original is not None:
        return interaction.original
    return None


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
                 prompt: str) -> tuple[JobRecord, list[Path]]:  # fmt: skip
    """``member`` draws ``prompt`` with /imagine: its record and its image files."""
    interaction = await fake.slash(member, channel, "imagine", prompt=prompt, seed=3, steps=2)
    await fake.wait_for(lambda: with_controls(interaction.original), within=120)
    [job] = [j for j in await bot.storage.audit.list_jobs() if j.prompt == prompt]
    paths = [Path(image.path) for image in job.images if image.path]
    assert paths
    assert all(path.is_file() for path in paths)
    return job, paths


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


async def test_a_member_deletes_their_own_prompts_and_images_everywhere(
    fake_discord: FakeDiscord, bot: ImagineBot, world: World
) -> None:
    guild, channel, ada = world
    other = fake_discord.create_guild("elsewhere")
    other_channel = fake_discord.create_channel(other, "images")
    fake_discord.add_member(other, ada)
    bea = _join(fake_discord, guild, "bea")
    here, here_files = await _drawn(bot, fake_discord, ada, channel, "a red circle")
    there, there_files = await _drawn(bot, fake_discord, ada, other_channel, "a green dot")
    hers, her_files = await _drawn(bot, fake_discord, bea, channel, "a blue square")

    # Without confirming: what would go, counted; nothing goes.
    files = len(here_files) + len(there_files)
    said = await _ask(fake_discord, ada, channel, "privacy delete")
    assert said.splitlines()[:4] == [
        "**`/privacy delete` would delete, in every server and in DMs:**",
        "- 2 prompts",
        f"- {plural(files, 'image file')}",
        "To delete it, run `/privacy delete` again with `confirm`: “yes, delete my prompts and "
        "images everywhere”.",
    ]
    assert not await _purged(bot, here, "a red circle", here_files)
    # Discord's client offers one choice; a modified client's other value deletes nothing.
    with pytest.raises(ValueError, match="the choices are"):
        await fake_discord.slash(ada, channel, "privacy delete", confirm="no")
    said = await _ask(fake_discord, ada, channel, "privacy delete", confirm="no", checked=False)
    assert said.startswith("⚠️ nothing was deleted: `confirm` was 'no'; choose “yes, delete")
    assert not await _purged(bot, here, "a red circle", here_files)

    said = await _ask(fake_discord, ada, channel, "privacy delete", confirm=OWN)
    lines = said.splitlines()
    assert lines[0] == "🗑️ **your prompts and images are deleted, in every server and in DMs**"
    assert "- 2 prompts deleted from sdbot's records" in lines
    assert f"- {plural(files, 'image file')} deleted" in lines
    assert any(line.startswith("**kept**: each job's record") for line in lines)
    assert await _purged(bot, here, "a red circle", here_files)
    assert await _purged(bot, there, "a green dot", there_files)
    assert not await _purged(bot, hers, "a blue square", her_files)  # bea's stay

    # Asked again, from a direct message: nothing is left to delete.
    said = await _ask(
        fake_discord, ada, fake_discord.dm_channel(ada), "privacy delete", confirm=OWN
    )
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
    other = fake_discord.create_guild("elsewhere")
    other_channel = fake_discord.create_channel(other, "images")
    fake_discord.add_member(other, ada)
    here, here_files = await _drawn(bot, fake_discord, ada, channel, "a red circle")
    there, there_files = await _drawn(bot, fake_discord, ada, other_channel, "a green dot")

    # A member without Manage Server: Discord hides the command; sent anyway, it is refused.
    with pytest.raises(PermissionError):
        await fake_discord.slash(bea, channel, "mod forget", user=ada, confirm=OWN)
    said = await _ask(
        fake_discord, bea, channel, "mod forget", user=ada, confirm=OWN, checked=False
    )
    assert said == "⛔ `/mod forget` is for members with Manage Server"
    assert not await _purged(bot, here, "a red circle", here_files)
    [denied] = await bot.storage.moderation.list(guild.id)
    assert (denied.action, denied.actor_id) == ("denied", bea.id)

    said = await _ask(fake_discord, mod, channel, "mod forget", user=ada)
    assert said.splitlines()[:3] == [
        f"**`/mod forget` would delete on this server, for <@{ada.id}>:**",
        "- 1 prompt",
        f"- {plural(len(here_files), 'image file')}",
    ]
    assert not await _purged(bot, here, "a red circle", here_files)

    said = await _mod_forget(fake_discord, mod, channel, ada, mod_log)
    lines = said.splitlines()
    assert lines[0] == f"🗑️ **<@{ada.id}>'s prompts and images on this server are deleted**"
    assert "- 1 prompt deleted from sdbot's records" in lines
    assert f"- {plural(len(here_files), 'image file')} deleted" in lines
    assert lines[-1] == "their posts stay in the channels: `/mod purge` deletes them"
    assert await _purged(bot, here, "a red circle", here_files)
    assert not await _purged(bot, there, "a green dot", there_files)  # the other server's stays

    forgot = [a for a in await bot.storage.moderation.list(guild.id) if a.action == "forget"]
    assert [(a.actor_id, a.target_user_id) for a in forgot] == [(mod.id, ada.id)]
    assert not await bot.storage.moderation.list(other.id)
    posted = await fake_discord.wait_for(
        lambda: [m for m in fake_discord.channel_messages(mod_log) if "deleted" in m.content]
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
