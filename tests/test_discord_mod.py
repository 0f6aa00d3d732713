"""/mod on the fake Discord, with the real client, the real worker process and the embedded
model: what moderators can do, that members cannot, and that one guild never reaches another's."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import functools
import io
import time
import zipfile
from typing import Any

import pytest
from PIL import Image

from bot.discord.client import ImagineBot
from bot.imagine.outcomes import ImagineOutcome
from bot.imagine.service import ImagineService
from bot.imagine.types import Requester
from fake_discord import (
    Channel,
    FakeDiscord,
    Guild,
    Message,
    Overwrite,
    Permission,
    User,
)
from fake_discord.client import with_controls
from fake_discord.server import Interaction
from storage.models import JobKind, JobStatus, Verdict
from storage.records import NewImage, NewJob

World = tuple[Guild, Channel, User]


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
) -> Message:
    interaction = await fake.slash(member, channel, command, **options)
    answer = await fake.wait_for(lambda: _answer(interaction))  # 60 s ceiling
    return answer


async def _mod(
    fake: FakeDiscord, member: User, channel: Channel, command: str, /, **options: Any
) -> str:
    """A /mod subcommand's answer, which is always for the moderator alone."""
    answer = await _ask(fake, member, channel, f"mod {command}", **options)
    assert answer.ephemeral, answer.content
    return answer.content


async def _grid(fake: FakeDiscord, member: User, channel: Channel, **options: Any) -> Message:
    interaction = await fake.slash(member, channel, "imagine", **options)
    return await fake.wait_for(lambda: with_controls(interaction.original), within=120)


def _mod_commands(fake: FakeDiscord) -> list[tuple[str, dict[str, Any]]]:
    """Every /mod subcommand as synced, with its required options: a new one is covered too."""
    schema = next(command for (_, name), command in fake.commands.items() if name == "mod")
    found: list[tuple[str, dict[str, Any]]] = []

    def walk(prefix: str, options: list[dict[str, Any]]) -> None:
        for option in options:
            if option["type"] == 2:  # a subcommand group
                walk(f"{prefix} {option['name']}", option.get("options") or [])
            elif option["type"] == 1:
                required = {o["name"]: o["type"] for o in option.get("options") or []
                            if o.get("required")}  # fmt: skip
                found.append((f"{prefix} {option['name']}", required))

    walk("mod", schema["options"])
    return found


async def test_members_without_manage_server_cannot_use_any_mod_command(
    fake_discord: FakeDiscord, bot: ImagineBot, world: World
) -> None:
    guild, channel, ada = world
    helper = _join(fake_discord, guild, "helper", Permission.MANAGE_MESSAGES)
    commands = _mod_commands(fake_discord)
    names = {name for name, _ in commands}
    assert {"mod ban", "mod unban", "mod bans", "mod blocklist add", "mod allowlist list",
            "mod settings", "mod history", "mod review", "mod export", "mod purge",
            "mod pause", "mod resume"} <= names  # fmt: skip
    schema = next(c for (_, n), c in fake_discord.commands.items() if n == "mod")
    assert int(schema["default_member_permissions"]) == Permission.MANAGE_GUILD
    assert schema["dm_permission"] is False  # guilds only

    for member in (ada, helper):
        for name, required in commands:
            values: dict[str, Any] = {
                option: ada if kind == 6 else channel if kind == 7 else "castle"
                for option, kind in required.items()
            }
            with pytest.raises(PermissionError):  # Discord does not even show it to them
                await fake_discord.slash(member, channel, name, **values)
            # A modified client sends it anyway: the bot refuses it, for their eyes only.
            interaction = await fake_discord.slash(member, channel, name, checked=False, **values)
            answer = await fake_discord.wait_for(functools.partial(_answer, interaction))
            assert answer.ephemeral
            assert answer.content == f"⛔ `/{name}` is for members with Manage Server"

    service = bot.service
    assert await service.storage.bans.list(guild.id) == []
    assert await service.storage.terms.for_guild(guild.id) == []
    settings = await service.storage.guild_settings.get(guild.id)
    assert not settings.paused
    assert settings.channels is None
    denied = await service.storage.moderation.list(guild.id, limit=None)
    assert len(denied) == 2 * len(commands)
    assert {a.action for a in denied} == {"denied"}
    assert {a.actor_id for a in denied} == {ada.id, helper.id}
    assert {a.details["command"] for a in denied} == names


async def test_a_ban_refuses_commands_and_controls_until_it_is_lifted(
    fake_discord: FakeDiscord, bot: ImagineBot, world: World
) -> None:
    guild, channel, ada = world
    mod = _join(fake_discord, guild, "mod", Permission.MANAGE_GUILD)
    grid = await _grid(fake_discord, ada, channel, prompt="a red circle", seed=5, steps=4)
    [job] = await bot.service.storage.audit.list_jobs()

    # What a moderator cannot do, in words that name the problem.
    assert await _mod(fake_discord, mod, channel, "ban", user=mod) == "⚠️ you cannot ban yourself"
    boss = _join(fake_discord, guild, "boss", Permission.MANAGE_GUILD)
    said = await _mod(fake_discord, mod, channel, "ban", user=boss)
    assert said.startswith(f"⚠️ <@{boss.id}> has Manage Server")
    said = await _mod(fake_discord, mod, channel, "ban", user=ada, duration="forever")
    assert said == "⚠️ duration 'forever' is not a duration like 30m, 12h, 7d or 2w, or an ISO date"
    assert await bot.service.storage.bans.list(guild.id) == []

    said = await _mod(fake_discord, mod, channel, "ban", user=ada, reason="spam", duration="2h")
    assert said.startswith(f"🔨 <@{ada.id}> is banned from sdbot here until <t:")
    assert "reason: spam" in said

    refused = await _ask(fake_discord, ada, channel, "imagine", prompt="a blue square")
    assert refused.ephemeral
    assert refused.content.startswith("⛔ you are banned from sdbot on this server until ")
    assert refused.content.endswith("UTC (spam)")
    # A prompt the lists block gets the ban too: a banned member cannot probe the lists.
    probing = await _ask(fake_discord, ada, channel, "imagine", prompt="nude figure")
    assert probing.content.startswith("⛔ you are banned")
    shown = await _ask(fake_discord, ada, channel, "job", id=job.id)
    assert shown.ephemeral
    assert shown.content.startswith("⛔ you are banned")

    # A control: her reaction goes, nothing is drawn; the reason reaches her alone, in a DM,
    # and the channel reads a reply that names none (it goes away).
    await fake_discord.add_reaction(ada, grid, "🔄")
    notice = await fake_discord.wait_for(
        lambda: next(
            (
                m
                for m in fake_discord.channel_messages(channel)
                if m.message_reference and "not open to you" in m.content
            ),
            None,
        )
    )
    assert notice.content == (
        f"<@{ada.id}> this control is not open to you now; sdbot sent you why in a direct message"
    )
    dm = fake_discord.dm_channel(ada)
    told = await fake_discord.wait_for(lambda: next(iter(fake_discord.channel_messages(dm)), None))
    assert told.content.startswith("⛔ you are banned")
    assert "(spam)" in told.content
    public = [m for m in fake_discord.channel_messages(channel) if not m.ephemeral]
    assert not any("spam" in m.content for m in public)
    await fake_discord.wait_for(lambda: ada.id not in grid.reactions.get("🔄", []))
    jobs = await bot.service.storage.audit.list_jobs()
    assert [j.status for j in jobs[1:]] == [JobStatus.REFUSED] * 3
    assert all(j.error and j.error.startswith("you are banned") for j in jobs[1:])
    assert [j.verdict for j in jobs[1:]] == ["allowed", "blocked", "allowed"]  # still recorded

    listed = await _mod(fake_discord, mod, channel, "bans")
    assert listed.splitlines()[0] == "**1 banned from sdbot here**"
    assert f"<@{ada.id}> until <t:" in listed
    assert f"by <@{mod.id}>" in listed

    assert await _mod(fake_discord, mod, channel, "unban", user=ada) == (
        f"✅ <@{ada.id}> may use sdbot here again"
    )
    assert await _mod(fake_discord, mod, channel, "unban", user=ada) == (
        f"⚠️ <@{ada.id}> is not banned here"
    )
    again = await _ask(fake_discord, ada, channel, "imagine", prompt="a blue square", steps=2)
    assert not again.ephemeral
    assert again.content.endswith("queued")

    actions = await bot.service.storage.moderation.list(guild.id)
    assert [(a.action, a.actor_id, a.target_user_id) for a in reversed(actions)] == [
        ("ban", mod.id, ada.id),
        ("unban", mod.id, ada.id),
    ]
    assert actions[-1].reason == "spam"


async def test_a_ban_and_a_pause_cancel_the_jobs_they_stop(
    fake_discord: FakeDiscord, bot: ImagineBot, world: World
) -> None:
    guild, channel, ada = world
    mod = _join(fake_discord, guild, "mod", Permission.MANAGE_GUILD)
    bea = _join(fake_discord, guild, "bea")
    first = await _ask(fake_discord, ada, channel, "imagine", prompt="a long one", steps=50)
    second = await _ask(fake_discord, bea, channel, "imagine", prompt="another", steps=50)
    assert not first.ephemeral
    assert not second.ephemeral
    ada_job, bea_job = await bot.service.storage.audit.list_jobs()

    said = await _mod(fake_discord, mod, channel, "ban", user=ada)
    assert said.splitlines()[-1] == f"cancelled their 1 queued or running job: {ada_job.id}"
    said = await _mod(fake_discord, mod, channel, "pause", reason="a raid")
    paused, stopped = said.splitlines()[:2]
    assert paused == "⏸️ image generation is paused here"
    # Every open job here: bea's, and ada's if its stop is still on the way.
    assert stopped.startswith("cancelled ")
    assert stopped.endswith(f"jobs: {bea_job.id}") or stopped.endswith(f", {bea_job.id}")

    # Each member sees their job end, where its status was shown.
    await fake_discord.wait_for(
        lambda: "❌ cancelled" in first.content and "❌ cancelled" in second.content, within=60
    )
    statuses = {job.id: job.status for job in await bot.service.storage.audit.list_jobs()}
    assert statuses == {ada_job.id: JobStatus.CANCELLED, bea_job.id: JobStatus.CANCELLED}

    refused = await _ask(fake_discord, bea, channel, "imagine", prompt="now?")
    assert refused.ephemeral
    assert refused.content == "⏸️ the moderators paused image generation here: a raid"
    help_text = (await _ask(fake_discord, bea, channel, "help")).content
    assert "⏸️ the moderators paused image generation here: a raid" in help_text
    assert await _mod(fake_discord, mod, channel, "pause") == (
        "⏸️ it was paused already\n`/mod resume` starts it again"
    )
    assert await _mod(fake_discord, mod, channel, "resume") == "▶️ image generation goes on here"
    assert await _mod(fake_discord, mod, channel, "resume") == (
        "⚠️ image generation was not paused here"
    )
    accepted = await _ask(fake_discord, bea, channel, "imagine", prompt="now", steps=2)
    assert accepted.content.endswith("queued")

    history = await _mod(fake_discord, mod, channel, "history")
    lines = [line.split(" · ", 1)[1] for line in history.splitlines()[1:]]
    assert f"<@{mod.id}> resumed generation" in lines
    banned = f"<@{mod.id}> banned <@{ada.id}> permanently"
    assert f"{banned}, cancelling 1 queued or running job: {ada_job.id}" in lines
    assert any(
        line.startswith(f"<@{mod.id}> paused generation, cancelling ")
        and line.endswith(" · a raid")
        for line in lines
    )


async def test_block_and_allow_lists_are_kept_from_discord(
    fake_discord: FakeDiscord, bot: ImagineBot, world: World
) -> None:
    guild, channel, ada = world
    mod = _join(fake_discord, guild, "mod", Permission.MANAGE_GUILD)

    said = await _mod(fake_discord, mod, channel, "blocklist add", term="lighthouse")
    assert said == "✅ `lighthouse` added to this server's blocklist"
    said = await _mod(fake_discord, mod, channel, "blocklist add", term=r"tow(er|n)\b", regex=True,
                      duration="7d")  # fmt: skip
    assert said.startswith(r"✅ `/tow(er|n)\b/` added to this server's blocklist until <t:")
    blocked = await _ask(fake_discord, ada, channel, "imagine", prompt="a Lighthouse at dusk")
    assert blocked.ephemeral
    assert blocked.content.startswith("🚫 This prompt was not accepted")
    assert "lighthouse" in blocked.content
    blocked = await _ask(fake_discord, ada, channel, "imagine", prompt="an old tower")
    assert blocked.ephemeral
    assert r"tow(er\|n)" in blocked.content  # escaped: shown as written, not as markdown

    # Patterns that do not compile, or that could run away, never reach the list.
    said = await _mod(fake_discord, mod, channel, "blocklist add", term="([", regex=True)
    assert said.startswith("⚠️ ")
    assert "is not a valid regular expression" in said
    said = await _mod(fake_discord, mod, channel, "blocklist add", term="(a+)+$", regex=True)
    assert said.startswith("⚠️ ")
    assert "(a+)+$" in said
    said = await _mod(fake_discord, mod, channel, "allowlist add", term="x+", regex=True)
    assert said.startswith("⚠️ ")
    assert "an allow entry is a term" in said
    # Counted repeats are bounded before anything compiles: this one never finished (126 s).
    started = time.monotonic()
    said = await _mod(fake_discord, mod, channel, "blocklist add", term="a{1000000000}",
                      regex=True)  # fmt: skip
    assert time.monotonic() - started < 10  # a generous ceiling on what took minutes
    assert said == (
        "⚠️ the pattern 'a{1000000000}' repeats 1000000000 times; a count may be at most 1000 "
        "(no prompt is longer)"
    )
    said = await _mod(fake_discord, mod, channel, "blocklist add", term="(ab{100}){1000}",
                      regex=True)  # fmt: skip
    assert said.startswith("⚠️ the pattern '(ab{100}){1000}' expands to over 10000 items")

    listed = await _mod(fake_discord, mod, channel, "blocklist list")
    assert listed.splitlines()[:3] == [
        "**this server's blocklist: 2 entries**",
        "- `lighthouse`",
        listed.splitlines()[2],
    ]
    assert listed.splitlines()[2].startswith(r"- `/tow(er|n)\b/` · until <t:")

    said = await _mod(fake_discord, mod, channel, "blocklist remove", term="lighthouse")
    assert said == "✅ `lighthouse` removed from this server's blocklist"
    said = await _mod(fake_discord, mod, channel, "blocklist remove", term=r"/tow(er|n)\b/")
    assert said == r"✅ `tow(er|n)\b` removed from this server's blocklist"  # as listed
    said = await _mod(fake_discord, mod, channel, "blocklist remove", term="lighthouse")
    assert said == "⚠️ `lighthouse` is not on this server's blocklist"
    accepted = await _ask(fake_discord, ada, channel, "imagine", prompt="a lighthouse", steps=2)
    assert not accepted.ephemeral

    said = await _mod(fake_discord, mod, channel, "allowlist add", term="bikini")
    assert said == "✅ `bikini` added to this server's allowlist"
    listed = await _mod(fake_discord, mod, channel, "allowlist list")
    assert listed.splitlines()[:2] == ["**this server's allowlist: 1 entry**", "- `bikini`"]

    history = await _mod(fake_discord, mod, channel, "history", limit=50)
    assert f"<@{mod.id}> added `lighthouse` to the blocklist" in history
    assert f"<@{mod.id}> removed `lighthouse` from the blocklist" in history
    assert f"<@{mod.id}> added `bikini` to the allow list" in history


async def test_settings_are_shown_changed_recorded_and_in_force(
    fake_discord: FakeDiscord, bot: ImagineBot, world: World
) -> None:
    guild, channel, ada = world
    mod = _join(fake_discord, guild, "mod", Permission.MANAGE_GUILD)
    studio = fake_discord.create_channel(guild, "studio")

    shown = await _mod(fake_discord, mod, channel, "settings")
    assert "- generation: running" in shown
    assert "- max_steps: 50 (the bot's default)" in shown
    assert "- channels: every channel" in shown

    said = await _mod(
        fake_discord, mod, channel, "settings",
        max_steps=12, max_size=96, controls="everyone", nsfw_policy="spoiler",
        member_images_per_hour=30.0, answer_in=studio, reason="a quieter server",
    )  # fmt: skip
    assert said.splitlines()[:6] == [
        "✅ nsfw_policy: block → spoiler",
        "✅ member_images_per_hour: default → 30",
        "✅ max_steps: default → 12",
        "✅ max_size: default → 96",
        "✅ controls: requester → everyone",
        f"✅ channels: every channel → <#{studio.id}>",
    ]
    assert "- max_steps: 12\n" in said
    assert "- max_size: 96 px\n" in said
    assert "- member_images_per_hour: 30 standard images\n" in said
    assert f"- channels: <#{studio.id}>" in said

    # In force at once: the limits, and the channel the bot answers in.
    elsewhere = await _ask(fake_discord, ada, channel, "imagine", prompt="a cat", steps=4)
    assert elsewhere.ephemeral
    assert elsewhere.content == f"📍 sdbot answers only in <#{studio.id}> on this server"
    too_many = await _ask(fake_discord, ada, studio, "imagine", prompt="a cat", steps=20)
    assert too_many.ephemeral
    assert "steps" in too_many.content
    assert "12" in too_many.content
    # The embedded model's one size (64 px) is within the guild's 96 (test_options: a guild's
    # max_side leaves out the model's larger sizes).
    help_text = (await _ask(fake_discord, ada, studio, "help")).content
    assert "steps 1–12" in help_text
    assert "`/privacy delete` deletes your prompts" in help_text
    assert "`embedded` (default): 1:1 64×64" in help_text

    # Bad values name themselves, as the option is called; nothing changes.
    said = await _mod(fake_discord, mod, channel, "settings", max_size=100)
    assert said == "⚠️ max_size must be a multiple of 8 from 64 to 4096, got 100"
    said = await _mod(fake_discord, mod, channel, "settings", max_steps=5, reset="max_steps")
    assert said == "⚠️ `max_steps` is both set and reset; choose one"
    said = await _mod(fake_discord, mod, channel, "settings", nsfw_threshold=0.99)
    assert said.startswith("⚠️ nsfw_threshold 0.99 is laxer than the bot's ")
    said = await _mod(fake_discord, mod, channel, "settings", max_steps=400)
    assert said == "⚠️ max_steps 400 is above the bot's limit of 50"
    # The last channel cannot be taken away (that would open every channel).
    said = await _mod(fake_discord, mod, channel, "settings", stop_answering_in=studio)
    assert said.startswith(f"⚠️ <#{studio.id}> is the only channel sdbot answers in")
    said = await _mod(fake_discord, mod, channel, "settings", stop_answering_in=channel)
    assert said.startswith(f"⚠️ sdbot does not answer in <#{channel.id}> by a channel setting")
    assert (await bot.service.storage.guild_settings.get(guild.id)).channels == (studio.id,)

    said = await _mod(fake_discord, mod, channel, "settings", answer_in=channel)
    both = f"<#{channel.id}>, <#{studio.id}>"  # in the order they were made
    assert said.splitlines()[0] == f"✅ channels: <#{studio.id}> → {both}"
    said = await _mod(fake_discord, mod, channel, "settings", stop_answering_in=studio)
    assert said.splitlines()[0] == f"✅ channels: {both} → <#{channel.id}>"
    assert (await bot.service.storage.guild_settings.get(guild.id)).channels == (channel.id,)
    said = await _mod(fake_discord, mod, channel, "settings", reset="max_steps")
    assert said.splitlines()[0] == "✅ max_steps: 12 → default"
    said = await _mod(fake_discord, mod, channel, "settings", reset="controls")
    assert said.splitlines()[0] == "✅ controls: everyone → requester"
    said = await _mod(fake_discord, mod, channel, "settings", every_channel=True)
    assert said.splitlines()[0] == f"✅ channels: <#{channel.id}> → every channel"
    said = await _mod(fake_discord, mod, channel, "settings", nsfw_policy="spoiler")
    assert said.startswith("nothing changed")

    actions = await bot.service.storage.moderation.list(guild.id)
    assert [a.action for a in actions] == ["settings"] * 6
    assert actions[-1].reason == "a quieter server"
    assert actions[-1].details["max_steps"] == {"from": None, "to": 12}
    assert actions[-1].details["channels"] == {"from": None, "to": [studio.id]}
    history = await _mod(fake_discord, mod, channel, "history")
    assert f"<@{mod.id}> changed settings: max_steps 12 → default" in history
    assert f"<@{mod.id}> changed settings: controls everyone → requester" in history
    assert "a quieter server" in history


def _flagged_job(guild_id: int, channel_id: int, user_id: int) -> NewJob:
    return NewJob(
        source="discord",
        guild_id=guild_id,
        channel_id=channel_id,
        user_id=user_id,
        channel_nsfw=True,
        kind=JobKind.IMAGINE,
        prompt="a flagged picture",
        negative_prompt="",
        steps=4,
        guidance_scale=7.0,
        width=256,
        height=256,
        variants=1,
        scheduler="default",
        model="embedded",
        seeds=(1,),
        verdict=Verdict.ALLOWED,
        verdict_reasons=(),
    )


async def _record_flagged(service: ImagineService, guild: Guild, channel: Channel, user: User,
                          png: bytes, folder: Any) -> int:  # fmt: skip
    """A job whose picture the checker flagged and spoilered, as the worker records one (the
    embedded model draws nothing open_nsfw flags, so the record is written directly)."""
    job_id = await service.storage.audit.create_job(_flagged_job(guild.id, channel.id, user.id))
    path = folder / f"flagged-{job_id}.png"
    path.write_bytes(png)
    image = NewImage(
        variant=1, seed=1, sha256="0" * 64, watermark_id=job_id * 10 + 1,
        watermark_verified=True, safety_score=0.91, safety_verdict="flagged", width=256,
        height=256, path=str(path), safety_threshold=0.6, model_flagged=None,
        disposition="spoiler",
    )  # fmt: skip
    await service.storage.audit.record_outcome(job_id, JobStatus.SUCCEEDED, images=[image])
    return job_id


async def test_review_history_and_export_show_this_guild_only(
    fake_discord: FakeDiscord, bot: ImagineBot, world: World, tmp_path: Any
) -> None:
    guild, channel, ada = world
    mod = _join(fake_discord, guild, "mod", Permission.MANAGE_GUILD)
    lounge = fake_discord.create_channel(guild, "lounge", nsfw=True)
    other = fake_discord.create_guild("elsewhere")
    other_channel = fake_discord.create_channel(other, "images")
    other_mod = _join(fake_discord, other, "other mod", Permission.MANAGE_GUILD)
    fake_discord.add_member(other, ada)

    blocked = await _ask(fake_discord, ada, channel, "imagine", prompt="nude figure")
    assert blocked.ephemeral
    elsewhere = await _ask(fake_discord, ada, other_channel, "imagine", prompt="naked elsewhere")
    assert elsewhere.ephemeral
    png = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(png, "PNG")
    flagged = await _record_flagged(bot.service, guild, lounge, ada, png.getvalue(), tmp_path)

    review = await _mod(fake_discord, mod, channel, "review")
    assert "**blocked prompts**: the only one" in review
    assert "“nude figure”" in review
    assert "naked elsewhere" not in review
    assert f"- job {flagged} #1 · <@{ada.id}> · score 0.91 (flags at ≥ 0.6) · spoiler" in review
    assert "*the pictures are attached only in an age-restricted channel*" in review
    answer = await _ask(fake_discord, mod, channel, "mod review")
    assert answer.attachments == []
    in_lounge = await _ask(fake_discord, mod, lounge, "mod review")
    [attached] = in_lounge.attachments
    assert attached.filename == f"SPOILER_sdbot-{flagged}-1.png"
    assert attached.image().size == (8, 8)

    other_review = await _mod(fake_discord, other_mod, other_channel, "review")
    assert "naked elsewhere" in other_review
    assert "nude figure" not in other_review
    assert "**flagged images**: none" in other_review

    history = await _mod(fake_discord, mod, channel, "history", user=ada)
    assert "“nude figure”" in history
    assert "elsewhere" not in history
    assert history.splitlines()[0] == f"**history of <@{ada.id}>, newest first**"

    await _mod(fake_discord, mod, channel, "blocklist add", term="castle")
    await _mod(fake_discord, other_mod, other_channel, "ban", user=ada, reason="there")
    export = await _ask(fake_discord, mod, channel, "mod export")
    assert export.ephemeral
    assert export.content.startswith("📄 2 prompts and ")
    files = {a.filename: a for a in export.attachments}
    prompts = list(
        csv.DictReader(io.StringIO(files[f"sdbot-{guild.id}-prompts.csv"].data.decode()))
    )
    assert [row["prompt"] for row in prompts] == ["nude figure", "a flagged picture"]
    assert {row["guild_id"] for row in prompts} == {str(guild.id)}
    actions = list(
        csv.DictReader(io.StringIO(files[f"sdbot-{guild.id}-actions.csv"].data.decode()))
    )
    assert [(row["action"], row["actor_id"], row["details"]) for row in actions] == [
        ("block_term_add", str(mod.id), '{"existed": false, "expires_at": null, "regex": false, '
         '"term": "castle"}'),
    ]  # fmt: skip
    recorded = await bot.service.storage.moderation.list(guild.id)
    assert [a.action for a in recorded] == ["export", "block_term_add"]
    assert recorded[0].details == {"days": None, "jobs": 2}


async def test_purge_deletes_the_posts_made_for_one_member_in_this_guild(
    fake_discord: FakeDiscord, bot: ImagineBot, world: World
) -> None:
    guild, channel, ada = world
    mod = _join(fake_discord, guild, "mod", Permission.MANAGE_GUILD)
    bea = _join(fake_discord, guild, "bea")
    hers = await _grid(fake_discord, ada, channel, prompt="a red circle", seed=1, steps=2)
    theirs = await _grid(fake_discord, bea, channel, prompt="a blue square", seed=2, steps=2)
    other = fake_discord.create_guild("elsewhere")
    other_channel = fake_discord.create_channel(other, "images")
    fake_discord.add_member(other, ada)
    other_mod = _join(fake_discord, other, "other mod", Permission.MANAGE_GUILD)
    hers_elsewhere = await _grid(fake_discord, ada, other_channel, prompt="a dot", seed=3, steps=2)

    said = await _mod(fake_discord, other_mod, other_channel, "purge", user=bea)
    assert said == f"🧹 deleted 0 posts sdbot made for <@{bea.id}>"
    assert not theirs.deleted

    said = await _mod(fake_discord, mod, channel, "purge", user=ada, reason="asked to")
    assert said == f"🧹 deleted 1 post sdbot made for <@{ada.id}>"
    assert hers.deleted
    assert not theirs.deleted
    assert not hers_elsewhere.deleted
    assert await bot.service.storage.posts.job_for_message(hers.id) is None
    [action] = await bot.service.storage.moderation.list(guild.id)
    assert (action.action, action.target_user_id, action.reason) == ("purge", ada.id, "asked to")
    assert action.details == {"deleted": 1, "already_gone": 0, "failed": 0}
    said = await _mod(fake_discord, mod, channel, "purge", user=ada)
    assert said == f"🧹 deleted 0 posts sdbot made for <@{ada.id}>"


async def test_each_guild_sees_and_changes_only_its_own(
    fake_discord: FakeDiscord, bot: ImagineBot, world: World
) -> None:
    guild, channel, ada = world
    mod = _join(fake_discord, guild, "mod", Permission.MANAGE_GUILD)
    other = fake_discord.create_guild("elsewhere")
    other_channel = fake_discord.create_channel(other, "images")
    fake_discord.add_member(other, ada)
    other_mod = _join(fake_discord, other, "other mod", Permission.MANAGE_GUILD)
    fake_discord.add_member(other, mod)  # a moderator here is a plain member there

    await _mod(fake_discord, mod, channel, "ban", user=ada, reason="here only")
    await _mod(fake_discord, mod, channel, "blocklist add", term="castle")
    await _mod(fake_discord, mod, channel, "settings", max_steps=3)
    await _mod(fake_discord, mod, channel, "pause")

    assert await _mod(fake_discord, other_mod, other_channel, "bans") == (
        "nobody is banned from sdbot here"
    )
    assert await _mod(fake_discord, other_mod, other_channel, "unban", user=ada) == (
        f"⚠️ <@{ada.id}> is not banned here"
    )
    listed = await _mod(fake_discord, other_mod, other_channel, "blocklist list")
    assert listed.splitlines()[0] == "**this server's blocklist: 0 entries**"
    said = await _mod(fake_discord, other_mod, other_channel, "blocklist remove", term="castle")
    assert said.startswith("⚠️ `castle` is not on")
    shown = await _mod(fake_discord, other_mod, other_channel, "settings")
    assert "- max_steps: 50 (the bot's default)" in shown
    assert "- generation: running" in shown
    assert await _mod(fake_discord, other_mod, other_channel, "history") == (
        "no prompts or actions recorded here"
    )
    with pytest.raises(PermissionError):
        await fake_discord.slash(mod, other_channel, "mod bans")
    # Sent anyway, the bot refuses it: a moderator here is a member there.
    sneaked = await fake_discord.slash(mod, other_channel, "mod unban", checked=False, user=ada)
    answer = await fake_discord.wait_for(lambda: _answer(sneaked))
    assert answer.content == "⛔ `/mod unban` is for members with Manage Server"
    assert await bot.service.storage.bans.active_ban(guild.id, ada.id) is not None

    # Ada, banned here with a paused generation and a blocked word, draws there as before.
    there = await _ask(fake_discord, ada, other_channel, "imagine", prompt="a castle", steps=5)
    assert not there.ephemeral
    assert there.content.endswith("queued")
    here = bot.service
    assert (await here.storage.bans.active_ban(guild.id, ada.id)) is not None
    assert (await here.storage.guild_settings.get(guild.id)).max_steps == 3
    gate = await here.gate(
        Requester("discord", other.id, other_channel.id, ada.id),
        await here.storage.guild_settings.get(other.id),
    )
    assert gate is None
    assert [a.action for a in await here.storage.moderation.list(other.id)] == ["denied"]

    # Where the channels are limited, a thread in an allowed channel is allowed too.
    await _mod(fake_discord, other_mod, other_channel, "settings", answer_in=other_channel)
    limited = await here.storage.guild_settings.get(other.id)
    thread = Requester("discord", other.id, 99, ada.id, parent_channel_id=other_channel.id)
    assert await here.gate(thread, limited) is None
    stray = Requester("discord", other.id, 99, ada.id, parent_channel_id=98)
    assert await here.gate(stray, limited) is not None


async def test_an_export_over_the_upload_limit_is_zipped_or_refused_with_a_way_out(
    fake_discord: FakeDiscord, bot: ImagineBot, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    guild, channel, ada = world
    monkeypatch.setattr("bot.guild_admin.record.EXPORT_PAGE", 128)  # read in three pages
    mod = _join(fake_discord, guild, "mod", Permission.MANAGE_GUILD)
    for number in range(300):
        job = dataclasses.replace(
            _flagged_job(guild.id, channel.id, ada.id), prompt=f"a lighthouse, number {number}"
        )
        await bot.service.storage.audit.create_job(job, refused="over the limit")

    plain = await _ask(fake_discord, mod, channel, "mod export")
    sizes = {a.filename: len(a.data) for a in plain.attachments}
    prompts_size = sizes[f"sdbot-{guild.id}-prompts.csv"]
    assert prompts_size > 60_000

    zipped = await fake_discord.slash(mod, channel, "mod export", attachment_size_limit=60_000)
    answer = await fake_discord.wait_for(lambda: _answer(zipped))
    assert answer.content == "📄 300 prompts and 1 moderator’s action (everything), zipped to fit"
    [archive] = answer.attachments
    assert archive.filename == f"sdbot-{guild.id}-audit.zip"
    with zipfile.ZipFile(io.BytesIO(archive.data)) as opened:
        assert sorted(opened.namelist()) == [
            f"sdbot-{guild.id}-actions.csv",
            f"sdbot-{guild.id}-prompts.csv",
        ]
        rows = list(
            csv.DictReader(io.StringIO(opened.read(f"sdbot-{guild.id}-prompts.csv").decode()))
        )
    assert len(rows) == 300  # one header, every page once, in order
    assert [int(row["id"]) for row in rows] == sorted({int(row["id"]) for row in rows})
    assert rows[-1]["status"] == "refused"

    refused = await fake_discord.slash(mod, channel, "mod export", attachment_size_limit=1000)
    answer = await fake_discord.wait_for(lambda: _answer(refused))
    assert answer.attachments == []
    assert answer.content.startswith("⚠️ the export is ")
    assert answer.content.endswith(
        f"even zipped, over this server's upload limit of 1000 bytes: give `days` for a shorter "
        f"span, or ask the bot's operator for `sdbot audit export --guild {guild.id}`"
    )


async def test_a_log_channel_shows_every_moderators_action_as_it_happens(
    fake_discord: FakeDiscord, bot: ImagineBot, world: World
) -> None:
    guild, channel, ada = world
    mod = _join(fake_discord, guild, "mod", Permission.MANAGE_GUILD)
    mod_log = fake_discord.create_channel(guild, "mod-log")
    # @everyone, the bot included, may not write in #read-only.
    read_only = fake_discord.create_channel(
        guild, "read-only", overwrites=[Overwrite(guild.id, 0, deny=Permission.SEND_MESSAGES)]
    )
    said = await _mod(fake_discord, mod, channel, "settings", log_channel=read_only)
    assert said == (
        f"⚠️ sdbot cannot post in <#{read_only.id}>: give it View Channel and Send Messages "
        "there first"
    )

    said = await _mod(fake_discord, mod, channel, "settings", log_channel=mod_log)
    assert said.splitlines()[0] == f"✅ log_channel: none → <#{mod_log.id}>"
    await _mod(fake_discord, mod, channel, "ban", user=ada, reason="spam")
    denied = await fake_discord.slash(ada, channel, "mod pause", checked=False)
    await fake_discord.wait_for(lambda: _answer(denied))

    def posted() -> list[str] | None:
        texts = [m.content for m in fake_discord.channel_messages(mod_log)]
        return texts if len(texts) == 3 else None

    texts = await fake_discord.wait_for(posted)
    assert texts == [
        f"🛡️ <@{mod.id}> changed settings: log_channel none → <#{mod_log.id}>",
        f"🛡️ <@{mod.id}> banned <@{ada.id}> permanently · spam",
        f"🛡️ <@{ada.id}> tried `/mod pause` without Manage Server",
    ]
    assert all(m.allowed_mentions == {"parse": []} for m in fake_discord.channel_messages(mod_log))

    said = await _mod(fake_discord, mod, channel, "settings", reset="audit_channel_id")
    assert said.splitlines()[0] == f"✅ log_channel: <#{mod_log.id}> → none"
    await _mod(fake_discord, mod, channel, "unban", user=ada)
    await asyncio.gather(*bot._posting)  # whatever was on its way has arrived
    assert len(fake_discord.channel_messages(mod_log)) == 3  # the log channel is off again


async def test_a_request_that_passed_the_gate_as_the_ban_landed_is_stopped_too(
    service: ImagineService, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.guild_admin import GuildAdmin
    from generation.options import RequestedOptions

    monkeypatch.setattr("bot.guild_admin.admin.SWEEP_AGAIN_S", 0.2)
    admin = GuildAdmin.for_service(service)
    ada = Requester("discord", guild_id=1, channel_id=2, user_id=3)
    await admin.ban(1, 9, 3, reason="raid")

    async def passed(*_: object) -> None:  # it was checked a moment before the ban was written
        return None

    monkeypatch.setattr(service.gatekeeper, "check", passed)
    submitted = await service.submit(RequestedOptions(prompt="a late one", steps=50), ada)
    assert not isinstance(submitted, ImagineOutcome)
    outcome = await service.follow_submitted(submitted)
    assert outcome.status is JobStatus.CANCELLED
    record = await service.storage.audit.get_job(outcome.job_id)
    assert record is not None
    assert record.status is JobStatus.CANCELLED


def _notices(fake: FakeDiscord, channel: Channel) -> list[Message]:
    """The bot's replies to controls in the channel (they delete themselves later)."""
    return [
        m
        for m in fake.channel_messages(channel, deleted=True)
        if m.message_reference and "not open to you" in m.content
    ]


def _notice(fake: FakeDiscord, channel: Channel, number: int) -> Message | None:
    """The ``number``-th reply to a control, once it is there."""
    notices = _notices(fake, channel)
    return notices[number - 1] if len(notices) >= number else None


async def test_a_paused_or_banned_members_control_gets_its_reason_in_private_only(
    fake_discord: FakeDiscord, bot: ImagineBot, world: World
) -> None:
    guild, channel, ada = world
    mod = _join(fake_discord, guild, "mod", Permission.MANAGE_GUILD)
    grid = await _grid(fake_discord, ada, channel, prompt="a red circle", seed=5, steps=4)
    dm = fake_discord.dm_channel(ada)
    await _mod(fake_discord, mod, channel, "pause", reason="swapping the model tonight")

    # An upscale while paused: the reason by DM, the channel reads none.
    await fake_discord.add_reaction(ada, grid, "1️⃣")
    [notice] = await fake_discord.wait_for(lambda: _notices(fake_discord, channel))
    assert notice.content == (
        f"<@{ada.id}> this control is not open to you now; sdbot sent you why in a direct message"
    )
    [told] = await fake_discord.wait_for(lambda: fake_discord.channel_messages(dm))
    assert told.content.startswith(
        "⏸️ the moderators paused image generation here: swapping the model tonight\n"
    )
    assert told.content.endswith(f"/{guild.id}/{channel.id}/{grid.id})")  # the grid's link

    # Her DMs closed: the channel says the control is not hers and where to learn why, no more.
    ada.dms_open = False
    await fake_discord.add_reaction(ada, grid, "🔄")
    closed = await fake_discord.wait_for(lambda: _notice(fake_discord, channel, 2))
    assert closed.content == (
        f"<@{ada.id}> this control is not open to you now; `/imagine` here tells you why, "
        "for your eyes only"
    )
    assert len(fake_discord.channel_messages(dm)) == 1  # nothing more reached her DMs
    assert any(call.code == 50007 for call in fake_discord.calls)  # the DM was tried
    asked = await _ask(fake_discord, ada, channel, "imagine", prompt="a blue square")
    assert asked.ephemeral  # ... and /imagine does tell her, for her eyes only
    assert asked.content.endswith("paused image generation here: swapping the model tonight")

    # Banned, DMs still closed: the same, without the ban's reason.
    await _mod(fake_discord, mod, channel, "resume")
    await _mod(fake_discord, mod, channel, "ban", user=ada, reason="posted gore")
    await fake_discord.add_reaction(ada, grid, "2️⃣")
    banned = await fake_discord.wait_for(lambda: _notice(fake_discord, channel, 3))
    assert banned.content == closed.content
    public = [m for m in fake_discord.channel_messages(channel, deleted=True) if not m.ephemeral]
    assert not any("swapping" in m.content or "gore" in m.content for m in public)
    jobs = await bot.service.storage.audit.list_jobs()
    assert [j.status for j in jobs[1:]] == [JobStatus.REFUSED] * 4  # nothing was drawn
    await fake_discord.wait_for(
        lambda: not any(ada.id in users for users in grid.reactions.values())
    )


def _uploads(fake: FakeDiscord, interaction: Interaction) -> tuple[Any, list[Any]]:
    """The interaction's first response (its callback call) and the follow-up calls."""
    [callback] = [
        call
        for call in fake.calls
        if call.route == "POST /interactions/{interaction_id}/{token}/callback"
        and call.params.get("interaction_id") == str(interaction.id)
    ]
    followups = [
        call
        for call in fake.calls
        if call.route == "POST /webhooks/{application_id}/{token}"
        and call.params.get("token") == interaction.token
    ]
    return callback, followups


async def test_review_and_export_answer_first_and_upload_as_a_follow_up(
    fake_discord: FakeDiscord, bot: ImagineBot, world: World, tmp_path: Any
) -> None:
    guild, _, ada = world
    mod = _join(fake_discord, guild, "mod", Permission.MANAGE_GUILD)
    lounge = fake_discord.create_channel(guild, "lounge", nsfw=True)
    png = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(png, "PNG")
    await _record_flagged(bot.service, guild, lounge, ada, png.getvalue(), tmp_path)

    for command in ("mod review", "mod export"):
        interaction = await fake_discord.slash(mod, lounge, command)
        answer = await fake_discord.wait_for(functools.partial(_answer, interaction))
        assert interaction.response_type == 5, command  # deferred: no upload inside the 3 s
        assert interaction.ephemeral
        assert answer.attachments, command
        callback, followups = _uploads(fake_discord, interaction)
        assert callback.json["type"] == 5
        assert callback.files == []
        assert [len(call.files) > 0 for call in followups] == [True], command
