"""`/mod`: a guild's moderators run sdbot from Discord.

Discord shows the group only to members with Manage Server (``default_permissions``), and the
bot checks it again on every call (a channel override or a modified client cannot get past it);
a refused attempt is recorded. Every answer is ephemeral: what moderators see stays with them.
The rules live in :class:`bot.guild_admin.GuildAdmin`; this module renders them.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
import zipfile
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

from bot.discord_text import NO_PINGS, capped, channel_nsfw, code, fit, plural, quoted
from bot.durations import parse_expiry
from bot.guild_admin import GuildAdmin, HistoryEntry
from moderation.policy import NsfwPolicy
from moderation.prompts import InvalidTerm
from storage.admin import BanRecord, GuildSettingsRecord, ModerationActionRecord
from storage.audit import JobRecord
from storage.models import Controls, Disposition, JobStatus, TermKind

if TYPE_CHECKING:
    from bot.discord_bot import ImagineBot

log = logging.getLogger(__name__)

MOD_PERMISSION = "Manage Server"
# A setting's name in storage → its option's name in /mod settings (what moderators read).
OPTION_NAMES = {
    "nsfw_policy": "nsfw_policy",
    "nsfw_threshold": "nsfw_threshold",
    "user_images_per_hour": "member_images_per_hour",
    "guild_images_per_hour": "server_images_per_hour",
    "max_jobs_per_user": "jobs_per_member",
    "max_steps": "max_steps",
    "max_side": "max_size",
    "controls": "controls",
    "channels": "channels",
    "audit_channel_id": "log_channel",
}
_RESETTABLE = {
    "nsfw_policy": "NSFW policy",
    "nsfw_threshold": "NSFW threshold",
    "user_images_per_hour": "member images an hour",
    "guild_images_per_hour": "server images an hour",
    "max_jobs_per_user": "jobs per member",
    "max_steps": "maximum steps",
    "max_side": "maximum size",
    "controls": "who may use the controls",
    "channels": "channels (every channel)",
    "audit_channel_id": "log channel (none)",
}


def may_administer(permissions: discord.Permissions) -> bool:
    """Who may use /mod: Manage Server (administrators have it)."""
    return permissions.manage_guild


def _mention(user_id: int | None) -> str:
    return "the operator" if not user_id else f"<@{user_id}>"


def _when(moment: datetime, style: Any = "f") -> str:
    return discord.utils.format_dt(moment, style)


def _until(expires_at: datetime | None) -> str:
    return " permanently" if expires_at is None else f" until {_when(expires_at)}"


async def _say(interaction: discord.Interaction, text: str, **extra: Any) -> None:
    """The ephemeral answer within Discord's limits, or its followup once the command
    deferred (as every command that uploads files does first)."""
    text = capped(text)
    if interaction.response.is_done():
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_PINGS, **extra)
    else:
        await interaction.response.send_message(
            text, ephemeral=True, allowed_mentions=NO_PINGS, **extra
        )


class ModGroup(app_commands.Group):
    """The ``/mod`` group, checked on the bot's side for every subcommand."""

    def __init__(self, admin: GuildAdmin) -> None:
        super().__init__(
            name="mod",
            description="Moderate sdbot on this server (Manage Server)",
            guild_only=True,
            default_permissions=discord.Permissions(manage_guild=True),
        )
        self.admin = admin

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if interaction.guild_id is not None and may_administer(interaction.permissions):
            return True
        command = interaction.command.qualified_name if interaction.command else "mod"
        if interaction.guild_id is not None:  # who tried, for the moderators to see
            await self.admin.record(
                interaction.guild_id, interaction.user.id, "denied", command=command
            )
        await _say(interaction, f"⛔ `/{command}` is for members with {MOD_PERMISSION}")
        log.info("refused /%s ◆ user %d ◆ no %s", command, interaction.user.id, MOD_PERMISSION)
        return False


class _ModSubgroup(app_commands.Group):
    """A group under /mod: discord.py runs only a command's direct parent's check, so this one
    passes it on to /mod's."""

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        assert self.parent is not None
        return await self.parent.interaction_check(interaction)


def mod_commands(bot: ImagineBot) -> ModGroup:
    admin = GuildAdmin(bot.service)
    mod = ModGroup(admin)

    def guild_of(interaction: discord.Interaction) -> int:
        assert interaction.guild_id is not None  # the group's check saw to it
        return interaction.guild_id

    # --- bans ----------------------------------------------------------------------------------

    @mod.command(name="ban", description="Stop a member from using sdbot on this server")
    @app_commands.describe(
        user="the member",
        reason="why (they are told)",
        duration="how long: 30m, 12h, 7d, 2w (default: until unbanned)",
    )
    async def ban(
        interaction: discord.Interaction,
        user: discord.User,
        reason: app_commands.Range[str, 0, 300] = "",
        duration: app_commands.Range[str, 1, 40] | None = None,
    ) -> None:
        if user.id == interaction.user.id:
            await _say(interaction, "⚠️ you cannot ban yourself")
            return
        if user.bot:
            await _say(interaction, f"⚠️ {user.mention} is a bot; bots do not use sdbot")
            return
        if isinstance(user, discord.Member) and may_administer(
            user.resolved_permissions or user.guild_permissions
        ):
            await _say(
                interaction,
                f"⚠️ {user.mention} has {MOD_PERMISSION} and could lift a ban at once; "
                "take that permission away first",
            )
            return
        try:
            expires_at = None if duration is None else parse_expiry(duration)
        except ValueError as error:
            await _say(interaction, f"⚠️ duration {error}")
            return
        done = await admin.ban(
            guild_of(interaction),
            interaction.user.id,
            user.id,
            reason=reason,
            expires_at=expires_at,
        )
        lines = [f"🔨 {user.mention} is banned from sdbot here{_until(expires_at)}"]
        if reason:
            lines.append(f"reason: {quoted(reason)}")
        if done.replaced is not None:
            lines.append(f"(this replaces the ban by {_mention(done.replaced.banned_by)})")
        if done.stopped:
            lines.append(f"cancelled their {_jobs(done.stopped)}")
        await _say(interaction, "\n".join(lines))

    @mod.command(name="unban", description="Let a banned member use sdbot again")
    @app_commands.describe(user="the member", reason="why (recorded)")
    async def unban(
        interaction: discord.Interaction,
        user: discord.User,
        reason: app_commands.Range[str, 0, 300] = "",
    ) -> None:
        if await admin.unban(guild_of(interaction), interaction.user.id, user.id, reason):
            await _say(interaction, f"✅ {user.mention} may use sdbot here again")
        else:
            await _say(interaction, f"⚠️ {user.mention} is not banned here")

    @mod.command(name="bans", description="Who is banned from sdbot here")
    async def bans(interaction: discord.Interaction) -> None:
        records = await admin.bans.list(guild_of(interaction), active=True)
        if not records:
            await _say(interaction, "nobody is banned from sdbot here")
            return
        lines = [f"**{len(records)} banned from sdbot here**"]
        lines += [_ban_line(record) for record in records]
        await _say(interaction, fit(lines, "… and {left} more"))

    # --- block and allow lists -----------------------------------------------------------------

    def term_group(kind: TermKind, name: str, what: str) -> None:
        group = _ModSubgroup(name=name, description=what, parent=mod)
        label = f"this server's {name}"

        @group.command(name="add", description=f"Add an entry to {label}")
        @app_commands.describe(
            term="words ('*' at an end widens one word: porn*), or a pattern with regex",
            regex="the entry is a regular expression, matched on the normalised prompt",
            duration="how long: 30m, 12h, 7d, 2w (default: until removed)",
        )
        async def add(
            interaction: discord.Interaction,
            term: app_commands.Range[str, 1, 200],
            regex: bool = False,
            duration: app_commands.Range[str, 1, 40] | None = None,
        ) -> None:
            try:
                expires_at = None if duration is None else parse_expiry(duration)
            except ValueError as error:
                await _say(interaction, f"⚠️ duration {error}")
                return
            try:
                added = await admin.add_term(
                    guild_of(interaction),
                    interaction.user.id,
                    kind,
                    term,
                    is_regex=regex,
                    expires_at=expires_at,
                )
            except InvalidTerm as error:
                await _say(interaction, f"⚠️ {error}")
                return
            shown = _entry(term, regex)
            until = "" if expires_at is None else f" until {_when(expires_at)}"
            if added:
                await _say(interaction, f"✅ {shown} added to {label}{until}")
            else:
                await _say(interaction, f"✅ {shown} was on {label} already; expiry set{until}")

        @group.command(name="remove", description=f"Remove an entry from {label}")
        @app_commands.describe(term="the entry as listed")
        async def remove(
            interaction: discord.Interaction, term: app_commands.Range[str, 1, 200]
        ) -> None:
            guild_id = guild_of(interaction)
            if len(term) > 2 and term.startswith("/") and term.endswith("/"):
                term = term[1:-1]  # a pattern as `list` shows it
            if await admin.remove_term(guild_id, interaction.user.id, kind, term):
                await _say(interaction, f"✅ {code(term)} removed from {label}")
                return
            _, shared = await admin.terms(guild_id, kind)
            hint = " (the bot's operator sets the global entries)" if shared else ""
            await _say(interaction, f"⚠️ {code(term)} is not on {label}{hint}")

        @group.command(name="list", description=f"The entries on {label}")
        async def listing(interaction: discord.Interaction) -> None:
            own, shared = await admin.terms(guild_of(interaction), kind)
            lines = [f"**{label}: {len(own)} {'entry' if len(own) == 1 else 'entries'}**"]
            for entry in own:
                until = "" if entry.expires_at is None else f" · until {_when(entry.expires_at)}"
                lines.append(f"- {_entry(entry.term, entry.is_regex)}{until}")
            if shared:
                entries = plural(shared, "global entry", "global entries")
                lines.append(f"and {entries} set by the bot's operator")
            if kind is TermKind.BLOCK:
                lines.append("(the lists sdbot ships with apply too)")
            await _say(interaction, fit(lines, "… and {left} more"))

    term_group(TermKind.BLOCK, "blocklist", "Words and patterns that block a prompt here")
    term_group(
        TermKind.ALLOW,
        "allowlist",
        "Words a shipped list blocks that this server allows (never the rule on minors)",
    )

    # --- settings ------------------------------------------------------------------------------

    @mod.command(name="settings", description="Show or change sdbot's settings on this server")
    @app_commands.describe(
        nsfw_policy="flagged images: block everywhere, or spoiler them in age-restricted channels",
        nsfw_threshold="a stricter safety threshold for this server (lower flags more)",
        member_images_per_hour="each member's rate, in standard images (512², 20 steps)",
        server_images_per_hour="the whole server's rate, in standard images",
        jobs_per_member="jobs a member may have queued and running at once",
        max_steps="the most denoising steps a member may ask for",
        max_size="the largest width or height a member may ask for, in pixels",
        controls="who may upscale and reroll a grid",
        answer_in="a channel to answer in (once any is set, only those)",
        stop_answering_in="a channel to stop answering in",
        every_channel="answer in every channel again",
        log_channel="a channel where every moderator's action here is posted as it happens",
        reset="put one setting back to the bot's default",
        reason="why (recorded)",
    )
    @app_commands.choices(
        nsfw_policy=[app_commands.Choice(name=p.value, value=p.value) for p in NsfwPolicy],
        controls=[app_commands.Choice(name=c.value, value=c.value) for c in Controls],
        reset=[app_commands.Choice(name=label, value=name) for name, label in _RESETTABLE.items()],
    )
    async def settings(
        interaction: discord.Interaction,
        nsfw_policy: str | None = None,
        nsfw_threshold: app_commands.Range[float, 0.01, 1.0] | None = None,
        member_images_per_hour: app_commands.Range[float, 0.1, 100000.0] | None = None,
        server_images_per_hour: app_commands.Range[float, 0.1, 1000000.0] | None = None,
        jobs_per_member: app_commands.Range[int, 1, 100] | None = None,
        max_steps: app_commands.Range[int, 1, 500] | None = None,
        max_size: app_commands.Range[int, 64, 4096] | None = None,
        controls: str | None = None,
        answer_in: discord.TextChannel | None = None,
        stop_answering_in: discord.TextChannel | None = None,
        every_channel: bool | None = None,
        log_channel: discord.TextChannel | None = None,
        reset: str | None = None,
        reason: app_commands.Range[str, 0, 300] = "",
    ) -> None:
        guild_id = guild_of(interaction)
        before = await bot.service.guild_settings.get(guild_id)
        changes: dict[str, Any] = {
            name: value
            for name, value in (
                ("nsfw_policy", nsfw_policy),
                ("nsfw_threshold", nsfw_threshold),
                ("user_images_per_hour", member_images_per_hour),
                ("guild_images_per_hour", server_images_per_hour),
                ("max_jobs_per_user", jobs_per_member),
                ("max_steps", max_steps),
                ("max_side", max_size),
                ("controls", controls),
                ("audit_channel_id", log_channel.id if log_channel else None),
            )
            if value is not None
        }
        if answer_in or stop_answering_in or every_channel:
            channels = set() if every_channel else set(before.channels or ())
            if answer_in:
                channels.add(answer_in.id)
            if stop_answering_in:
                if stop_answering_in.id not in channels:
                    where = "every channel" if not channels else "only its channels"
                    await _say(
                        interaction,
                        f"⚠️ sdbot does not answer in {stop_answering_in.mention} by a channel "
                        f"setting (it answers in {where}); `answer_in` limits it to the "
                        "channels you name",
                    )
                    return
                channels.discard(stop_answering_in.id)
                if not channels:
                    await _say(
                        interaction,
                        f"⚠️ {stop_answering_in.mention} is the only channel sdbot answers in; "
                        "name another with `answer_in` first, or stop generation with "
                        "`/mod pause`",
                    )
                    return
            changes["channels"] = sorted(channels) or None
        if reset is not None:
            if reset in changes:
                name = OPTION_NAMES[reset]
                await _say(interaction, f"⚠️ `{name}` is both set and reset; choose one")
                return
            changes[reset] = _DEFAULTS.get(reset)
        if not changes:
            await _say(interaction, await _settings_text(bot, guild_id, before))
            return
        if log_channel is not None and not _can_post(interaction, log_channel.id):
            await _say(
                interaction,
                f"⚠️ sdbot cannot post in {log_channel.mention}: give it View Channel and Send "
                "Messages there first",
            )
            return
        laxer = _laxer_than_the_bot(bot, changes)
        if laxer:
            await _say(interaction, f"⚠️ {laxer}")
            return
        try:
            change = await admin.change_settings(guild_id, interaction.user.id, changes, reason)
        except ValueError as error:
            await _say(interaction, f"⚠️ {_in_option_names(str(error))}")
            return
        if change.changed:
            lines = [
                f"✅ {OPTION_NAMES[name]}: {_setting(old, name)} → {_setting(new, name)}"
                for name, (old, new) in change.changed.items()
            ]
        else:
            lines = ["nothing changed: those are the settings already"]
        lines += (await _settings_text(bot, guild_id, change.after)).splitlines()
        await _say(interaction, fit(lines))

    # --- the record ----------------------------------------------------------------------------

    @mod.command(name="history", description="Recent prompts and moderators' actions here")
    @app_commands.describe(
        user="only this member's prompts, and actions by or on them",
        limit="how many entries (default 15)",
    )
    async def history(
        interaction: discord.Interaction,
        user: discord.User | None = None,
        limit: app_commands.Range[int, 1, 50] = 15,
    ) -> None:
        entries = await admin.history(
            guild_of(interaction), user_id=None if user is None else user.id, limit=limit
        )
        who = f" of {user.mention}" if user else ""
        if not entries:
            await _say(interaction, f"no prompts or actions{who} recorded here")
            return
        lines = [f"**history{who}, newest first**"] + [_history_line(e) for e in entries]
        await _say(interaction, fit(lines, "… {left} more: `/mod export` has everything"))

    @mod.command(name="review", description="Recent blocked prompts and flagged images")
    @app_commands.describe(limit="how many of each (default 5)")
    async def review(
        interaction: discord.Interaction, limit: app_commands.Range[int, 1, 10] = 5
    ) -> None:
        # Pictures may be attached: the answer goes first, within Discord's 3 s.
        await interaction.response.defer(ephemeral=True, thinking=True)
        found = await admin.review(guild_of(interaction), limit=limit)
        lines = [_recent("blocked prompts", len(found.blocked), limit)]
        for job in found.blocked:
            reasons = "; ".join(job.verdict_reasons) or "blocked"
            lines.append(
                f"- job {job.id} · {_mention(job.user_id)} · {_when(job.created_at)} · "
                f"“{quoted(job.prompt, 120)}” — {quoted(reasons, 150)}"
            )
        lines.append(_recent("flagged images", len(found.flagged), limit))
        nsfw_here = channel_nsfw(interaction.channel)
        files: list[discord.File] = []
        budget = interaction.filesize_limit
        for job, image in found.flagged:
            threshold = (
                ""
                if image.safety_threshold is None
                else f" (flags at ≥ {image.safety_threshold:g})"
            )
            model = " · the model's own checker flagged it" if image.model_flagged else ""
            lines.append(
                f"- job {job.id} #{image.variant} · {_mention(job.user_id)} · score "
                f"{image.safety_score:.2f}{threshold}{model} · {image.disposition} · "
                f"“{quoted(job.prompt, 80)}”"
            )
            if nsfw_here and image.path is not None and len(files) < 10:
                data = await asyncio.to_thread(_stored, image.path)
                if data is not None and len(data) <= budget:
                    name = f"SPOILER_sdbot-{job.id}-{image.variant}.png"
                    files.append(discord.File(io.BytesIO(data), filename=name))
        if found.flagged and not nsfw_here:
            lines.append("*the pictures are attached only in an age-restricted channel*")
        elif found.flagged:
            withheld = sum(1 for _, i in found.flagged if i.disposition == Disposition.WITHHELD)
            if withheld:
                were = "was" if withheld == 1 else "were"
                lines.append(f"*{plural(withheld, 'withheld picture')} {were} never stored*")
        await _say(interaction, fit(lines, "… {left} more lines"), files=files)

    @mod.command(name="export", description="This server's audit log as CSV files")
    @app_commands.describe(days="only the last this many days (default: everything)")
    async def export(
        interaction: discord.Interaction, days: app_commands.Range[int, 1, 3650] | None = None
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        guild_id = guild_of(interaction)
        jobs, actions, job_count, action_count = await admin.export(
            guild_id, interaction.user.id, days=days
        )
        limit = interaction.filesize_limit
        span = {None: "everything", 1: "the last day"}.get(days, f"the last {days} days")
        said = (
            f"📄 {plural(job_count, 'prompt')} and {plural(action_count, 'moderator’s action')}"
            f" ({span})"
        )
        names = (f"sdbot-{guild_id}-prompts.csv", f"sdbot-{guild_id}-actions.csv")
        if len(jobs) + len(actions) <= limit:  # Discord's limit: the whole upload
            files = [
                discord.File(io.BytesIO(data), filename=name)
                for name, data in zip(names, (jobs, actions), strict=True)
            ]
            await _say(interaction, said, files=files)
            return
        packed = await asyncio.to_thread(_zipped, dict(zip(names, (jobs, actions), strict=True)))
        if len(packed) > limit:
            await _say(
                interaction,
                f"⚠️ the export is {_size(len(packed))} even zipped, over this server's upload "
                f"limit of {_size(limit)}: give `days` for a shorter span, or "
                f"ask the bot's operator for `sdbot audit export --guild {guild_id}`",
            )
            return
        archive = discord.File(io.BytesIO(packed), filename=f"sdbot-{guild_id}-audit.zip")
        await _say(interaction, f"{said}, zipped to fit", files=[archive])

    # --- actions -------------------------------------------------------------------------------

    @mod.command(name="purge", description="Delete every post sdbot made for a member here")
    @app_commands.describe(user="the member", reason="why (recorded)")
    async def purge(
        interaction: discord.Interaction,
        user: discord.User,
        reason: app_commands.Range[str, 0, 300] = "",
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        guild_id = guild_of(interaction)
        posts = await bot.service.audit.posts_for_user(guild_id, user.id)
        deleted = gone = 0
        failed: dict[int, str] = {}  # channel → why
        for channel_id, message_id, _ in posts:
            message = bot.get_partial_messageable(channel_id).get_partial_message(message_id)
            try:
                await message.delete()
                deleted += 1
            except discord.NotFound:
                gone += 1
            except discord.HTTPException as error:
                failed[channel_id] = error.text or f"HTTP {error.status}"
                continue
            await bot.service.audit.unlink_message(message_id)
        await admin.record(
            guild_id,
            interaction.user.id,
            "purge",
            target_user_id=user.id,
            reason=reason,
            deleted=deleted,
            already_gone=gone,
            failed=len(posts) - deleted - gone,
        )
        lines = [f"🧹 deleted {plural(deleted, 'post')} sdbot made for {user.mention}"]
        if gone:
            lines.append(f"{gone} {'was' if gone == 1 else 'were'} already gone")
        for channel_id, why in failed.items():
            lines.append(f"⚠️ could not delete in <#{channel_id}>: {why}")
        await _say(interaction, fit(lines, "… and {left} more channels"))

    @mod.command(name="pause", description="Stop image generation here (queued jobs too)")
    @app_commands.describe(reason="what members are told")
    async def pause(
        interaction: discord.Interaction, reason: app_commands.Range[str, 0, 300] = ""
    ) -> None:
        started, stopped = await admin.pause(guild_of(interaction), interaction.user.id, reason)
        lines = ["⏸️ image generation is paused here" if started else "⏸️ it was paused already"]
        if stopped:
            lines.append(f"cancelled {_jobs(stopped)}")

        lines.append("`/mod resume` starts it again")
        await _say(interaction, "\n".join(lines))

    @mod.command(name="resume", description="Start image generation here again")
    @app_commands.describe(reason="why (recorded)")
    async def resume(
        interaction: discord.Interaction, reason: app_commands.Range[str, 0, 300] = ""
    ) -> None:
        if await admin.resume(guild_of(interaction), interaction.user.id, reason):
            await _say(interaction, "▶️ image generation goes on here")
        else:
            await _say(interaction, "⚠️ image generation was not paused here")

    return mod


# --- rendering ---------------------------------------------------------------------------------


def _jobs(job_ids: tuple[int, ...], shown: int = 10) -> str:
    """``3 queued or running jobs: 4, 5, 9`` (``1 queued or running job: 4``), the ids cut
    after ``shown``."""
    ids = ", ".join(map(str, job_ids[:shown]))
    more = f" and {len(job_ids) - shown} more" if len(job_ids) > shown else ""
    return f"{plural(len(job_ids), 'queued or running job')}: {ids}{more}"


def _recent(what: str, found: int, limit: int) -> str:
    """A section's heading: ``**blocked prompts**: none``, ``… the 5 most recent``."""
    if found == 0:
        return f"**{what}**: none"
    if found < limit:
        return f"**{what}**: {'the only one' if found == 1 else f'all {found}'}"
    return f"**{what}**: {'the most recent' if found == 1 else f'the {found} most recent'}"


def _size(size: int) -> str:
    if size < 2**10:
        return f"{size} bytes"
    return f"{size / 2**10:.0f} KiB" if size < 2**20 else f"{size / 2**20:.1f} MiB"


def _zipped(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return out.getvalue()


def _stored(path: str) -> bytes | None:
    """A stored picture's bytes; None when it is no longer there."""
    try:
        return Path(path).read_bytes()
    except OSError:
        return None


_DEFAULTS = {"nsfw_policy": NsfwPolicy.BLOCK.value, "controls": Controls.REQUESTER.value}


def _can_post(interaction: discord.Interaction, channel_id: int) -> bool:
    guild = interaction.guild
    channel = guild.get_channel(channel_id) if guild else None
    if guild is None or channel is None or guild.me is None:
        return False
    permissions = channel.permissions_for(guild.me)
    return permissions.view_channel and permissions.send_messages


def _laxer_than_the_bot(bot: ImagineBot, changes: dict[str, Any]) -> str:
    """Why a change would not take effect: a server can be stricter than the bot, never laxer
    ("" when it would)."""
    service = bot.service
    threshold = changes.get("nsfw_threshold")
    if threshold is not None and threshold > service.nsfw_threshold:
        return (
            f"nsfw_threshold {threshold:g} is laxer than the bot's {service.nsfw_threshold:g}; "
            "a server can only be stricter (lower)"
        )
    for name, most in (
        ("max_steps", service.limits.max_steps),
        ("max_side", service.limits.max_side),
    ):
        value = changes.get(name)
        if value is not None and value > most:
            return f"{OPTION_NAMES[name]} {value} is above the bot's limit of {most}"
    return ""


def _in_option_names(text: str) -> str:
    """A storage message with the settings named as moderators type them."""
    for stored, option in OPTION_NAMES.items():
        if stored != option:
            text = re.sub(rf"\b{stored}\b", option, text)
    return text


def _entry(term: str, is_regex: bool) -> str:
    return code(f"/{term}/" if is_regex else term)


def _setting(value: Any, name: str = "") -> str:
    if value is None:
        return {"channels": "every channel", "audit_channel_id": "none"}.get(name, "default")
    if name == "audit_channel_id":
        return f"<#{value}>"
    if isinstance(value, list):
        return ", ".join(f"<#{channel}>" for channel in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _ban_line(record: BanRecord) -> str:
    reason = f" · {quoted(record.reason, 150)}" if record.reason else ""
    return (
        f"- {_mention(record.user_id)}{_until(record.expires_at)} · by "
        f"{_mention(record.banned_by)} {_when(record.created_at, 'R')}{reason}"
    )


def _history_line(entry: HistoryEntry) -> str:
    when = _when(entry.created_at, "f")
    if isinstance(entry, JobRecord):
        why = f" ({quoted(entry.error, 100)})" if entry.error else ""
        if entry.status is JobStatus.BLOCKED:
            why = f" ({quoted('; '.join(entry.verdict_reasons), 100)})"
        return (
            f"- {when} · job {entry.id} · {_mention(entry.user_id)} · {entry.status.value}{why} · "
            f"“{quoted(entry.prompt, 100)}”"
        )
    return f"- {when} · {action_text(entry)}"


def action_text(action: ModerationActionRecord) -> str:
    actor = _mention(action.actor_id)
    target = f" {_mention(action.target_user_id)}" if action.target_user_id else ""
    details = action.details
    if action.action == "settings":
        what = "; ".join(
            f"{OPTION_NAMES.get(name, name)} {_setting(change.get('from'), name)} → "
            f"{_setting(change.get('to'), name)}"
            for name, change in details.items()
        )
        text = f"{actor} changed settings: {what}"
    elif action.action.endswith(("_term_add", "_term_remove")):
        kind, _, verb = action.action.partition("_term_")
        listed = "blocklist" if kind == TermKind.BLOCK.value else f"{kind} list"
        verb = "added" if verb == "add" else "removed"
        term = _entry(str(details.get("term", "")), bool(details.get("regex")))
        text = f"{actor} {verb} {term} {'to' if verb == 'added' else 'from'} the {listed}"
    elif action.action == "denied":
        text = f"{actor} tried `/{details.get('command', 'mod')}` without {MOD_PERMISSION}"
    elif action.action == "ban":
        expires = details.get("expires_at")
        until = (
            " permanently" if not expires else f" until {_when(datetime.fromisoformat(expires))}"
        )
        text = f"{actor} banned{target}{until}"
    elif action.action == "purge":
        text = f"{actor} deleted {details.get('deleted', 0)} posts made for{target}"
    elif action.action == "export":
        text = f"{actor} exported the audit log ({plural(details.get('jobs', 0), 'prompt')})"
    else:
        done = {"unban": "unbanned", "pause": "paused generation", "resume": "resumed generation"}
        text = f"{actor} {done.get(action.action, action.action)}{target}"
    if details.get("cancelled_jobs"):
        text += f", cancelling {_jobs(tuple(details['cancelled_jobs']))}"
    return text + (f" · {quoted(action.reason, 150)}" if action.reason else "")


async def _settings_text(bot: ImagineBot, guild_id: int, settings: GuildSettingsRecord) -> str:
    service = bot.service
    here = await service.limits_here(guild_id)
    rates, options = here.rates, here.options

    def own(value: object) -> str:
        return " (the bot's default)" if value is None else ""

    threshold = service.nsfw_threshold
    if settings.nsfw_threshold is not None:
        threshold = min(threshold, settings.nsfw_threshold)
    nsfw = (
        "spoilered in age-restricted channels, withheld elsewhere"
        if settings.nsfw_policy is NsfwPolicy.SPOILER
        else "withheld everywhere"
    )
    channels = (
        "every channel"
        if settings.channels is None
        else ", ".join(f"<#{channel}>" for channel in settings.channels)
    )
    if settings.paused_at is not None:
        why = f": {quoted(settings.pause_reason)}" if settings.pause_reason else ""
        state = f"⏸️ paused since {_when(settings.paused_at)}{why}"
    else:
        state = "running"
    return "\n".join(
        [
            "**sdbot on this server**",
            f"- generation: {state}",
            f"- nsfw_policy: {settings.nsfw_policy.value} (flagged images are {nsfw})",
            f"- nsfw_threshold: {threshold:g}{own(settings.nsfw_threshold)}",
            f"- member_images_per_hour: {rates.user_units_per_hour:g} standard images"
            f"{own(settings.user_images_per_hour)}",
            f"- server_images_per_hour: {rates.guild_units_per_hour:g} standard images"
            f"{own(settings.guild_images_per_hour)}",
            f"- jobs_per_member: {rates.max_jobs_per_user}{own(settings.max_jobs_per_user)}",
            f"- max_steps: {options.max_steps}{own(settings.max_steps)}",
            f"- max_size: {options.max_side} px{own(settings.max_side)}",
            f"- controls: {settings.controls.value} (who may upscale and reroll)",
            f"- channels: {channels}",
            f"- log_channel: {_setting(settings.audit_channel_id, 'audit_channel_id')}",
        ]
    )
