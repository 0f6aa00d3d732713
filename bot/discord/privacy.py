"""`/privacy delete` and `/privacy info`: a member deletes their own prompts and images, in every
server and in direct messages, and reads what sdbot keeps.

A deletion takes down sdbot's own posts of the member's jobs first, as /mod purge does
(:meth:`bot.guild_admin.GuildAdmin.take_down_member`): they carry the prompts and pictures, and
are found through the jobs' member, which the deletion then drops. The deletion itself is
:func:`bot.ops.privacy.forget_member`'s (it records it). Here are the two steps, the
confirmation and the words, which `/mod forget` (``bot.discord.mod.forget``) shares.

Confirming is a ``confirm`` option with one choice that says what happens, not a Confirm
button: the command run without it only counts what would go (``preview_deletion``) and says how
to confirm; with it, it deletes. Nothing is deleted by a slip, each step is one interaction with
no view to time out or to outlive a restart, and it reads as the /mod commands do (everything in
options). A modified client can send another value: the bot checks it and deletes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot.discord.interactions import private
from bot.discord.text import capped, fit, plural
from bot.guild_admin import Deleted, DeletePost, GuildAdmin, PurgeOutcome
from bot.guild_admin.posts import deletion_posts
from bot.ops.privacy import ForgetReport, forget_member, forget_preview
from common.errors import ErrorKind, SdbotError
from storage.posts import MemberPost

if TYPE_CHECKING:
    from bot.discord.client import ImagineBot
    from bot.imagine.service import ImagineService

log = logging.getLogger(__name__)

CONFIRMED = "yes"  # the one value of a `confirm` option
CONFIRM_HELP = "leave it out to see what would go; choose it to delete (it cannot be undone)"
OWN_CHOICE = "yes, delete my prompts and images everywhere"
# What every deletion leaves, and why: the audit trail a watermark leads back to, and the rules.
KEPT = (
    "**kept**: each job's record (its id, the moderation verdict, the images' hashes and "
    "watermarks), marked as deleted, so that a watermarked image still traces to a record that "
    "says its prompt was deleted; bans and the moderators' own log stay too"
)
LATE_POST_WAIT_S = 60.0  # how long a job a deletion cancelled is given to post how it ended
WHY_LIMIT = 100  # characters of Discord's reason a post could not be deleted ("Missing Access")
MORE_CHANNELS = "… and {left} more channels where sdbot's posts could not be deleted"


class NotConfirmed(SdbotError):
    """A deletion sent without its confirmation (only a modified client can)."""

    kind = ErrorKind.BAD_INPUT


def check_confirmed(value: str, choice: str) -> None:
    """Raises :class:`NotConfirmed` unless ``value`` is the confirming choice's."""
    if value != CONFIRMED:
        raise NotConfirmed(
            f"nothing was deleted: `confirm` was {value!r}; choose “{choice}” to confirm"
        )


@dataclass(frozen=True)
class Deletion:
    """A confirmed deletion's two steps: sdbot's posts taken down, then the data forgotten."""

    posts: PurgeOutcome
    report: ForgetReport

    @property
    def nothing(self) -> bool:
        """Nothing was found to delete, neither posts nor data."""
        return self.report.nothing and not self.posts.posts


@dataclass(frozen=True)
class Preview:
    """What a deletion would do now: the posts it would take down and the data it would go."""

    posts: int
    report: ForgetReport

    @property
    def nothing(self) -> bool:
        return self.report.nothing and not self.posts


def deleter(client: discord.Client) -> DeletePost:
    """How GuildAdmin deletes one of sdbot's posts (/mod purge, and a deletion's first step):
    deleted, already gone, or why not. discord.py waits out rate limits itself."""

    async def delete(channel_id: int, message_id: int) -> Deleted:
        message = client.get_partial_messageable(channel_id).get_partial_message(message_id)
        try:
            await message.delete()
        except discord.NotFound:
            return Deleted(gone_before=True)
        except discord.HTTPException as error:
            return Deleted(failed=error.text or f"HTTP {error.status}")
        return Deleted()

    return delete


def report_lines(report: ForgetReport, *, done: bool = True) -> list[str]:
    """What a deletion did (``done``) or would do, a line each, only what it found."""
    counts = [  # how many, what, what became of it, what would (after "would delete")
        (report.jobs, "prompt", "prompts", " deleted from sdbot's records", ""),
        (report.images, "image file", "image files", " deleted", ""),
        (report.inputs, "picture given to sdbot", "pictures given to sdbot", " deleted", ""),
        (report.redis_entries, "queue entry", "queue entries", " removed", ""),
        (report.cancelled, "queued or running job", "queued or running jobs", " cancelled first",
         ", cancelled first"),
    ]  # fmt: skip
    return [
        f"- {plural(n, one, many)}{did if done else would}"
        for n, one, many, did, would in counts
        if n
    ]


def taken_down_lines(done: PurgeOutcome) -> tuple[list[str], list[str]]:
    """sdbot's posts taken down: the counts, and a warning for each channel where some could
    not be (where and why; a moderator there can delete them by hand)."""
    counts = []
    if done.deleted:
        counts.append(f"- {done.deleted} of sdbot's posts deleted from their channels")
    if done.already_gone:
        were = "was" if done.already_gone == 1 else "were"
        counts.append(f"- {done.already_gone} of sdbot's posts {were} already gone")
    warnings = [
        f"⚠️ sdbot's posts in <#{channel_id}> could not be deleted: {capped(why, WHY_LIMIT)}"
        for channel_id, why in done.failed.items()
    ]
    return counts, warnings


def preview_text(preview: Preview, heading: str, command: str, choice: str) -> str:
    """What ``command`` would delete now, and how to confirm it."""
    lines = [heading]
    if preview.posts:
        lines.append(f"- {preview.posts} of sdbot's posts, in their channels")
    lines += report_lines(preview.report, done=False)
    lines.append(f"To delete it, run `/{command}` again with `confirm`: “{choice}”.")
    return "\n".join([*lines, KEPT])


def deletion_text(deletion: Deletion, heading: str) -> str:
    """A confirmed deletion's answer: what went, what is kept, and where posts stayed."""
    counts, warnings = taken_down_lines(deletion.posts)
    lines = [heading, *counts, *report_lines(deletion.report), KEPT, *warnings]
    return fit(lines, MORE_CHANNELS)


async def preview_deletion(
    service: ImagineService, *, user_id: int, guild_id: int | None
) -> Preview:
    """What a deletion would do now, counted (nothing changes)."""
    storage = service.storage
    posts = await deletion_posts(storage.posts, storage.retention, user_id, guild_id)
    report = await forget_preview(service, user_id=user_id, guild_id=guild_id)
    return Preview(len(posts), report)


async def forget_safely(
    bot: ImagineBot,
    admin: GuildAdmin,
    interaction: discord.Interaction,
    *,
    user_id: int,
    guild_id: int | None,
    via: str,
) -> Deletion | None:
    """sdbot's posts of the member taken down (while their jobs still name them), then
    forget_member, then the posts of the jobs it cancelled; a failure answered rather than
    raised: a deletion cut short on sdbot's side is worth saying so precisely, since running
    it again finishes it (it is idempotent). Our own refusals still go to the tree's
    ``on_error``."""
    command = interaction.command.qualified_name if interaction.command else "privacy delete"
    actor_id = interaction.user.id
    delete = deleter(interaction.client)
    try:
        open_jobs = await bot.storage.audit.open_jobs(guild_id=guild_id, user_id=user_id)
        posts = await admin.take_down_member(
            user_id, delete, guild_id=guild_id, actor_id=actor_id, reason=f"/{command}"
        )
        report = await forget_member(
            bot.service, user_id=user_id, guild_id=guild_id, actor_id=actor_id, via=via
        )
        if open_jobs:
            late = await _late_posts(bot, {job.id for job in open_jobs})
            done = await admin.take_down_posts(
                late, delete, actor_id=actor_id, user_id=user_id, reason=f"/{command}"
            )
            posts = PurgeOutcome.total([posts, done])
    except SdbotError:
        raise
    except Exception:
        log.exception("forget (%s) failed ◆ user %d ◆ guild %s ◆ by %d",
                      via, user_id, guild_id, actor_id)  # fmt: skip
        await private(
            interaction,
            "⚠️ the deletion broke off on sdbot's side; some data may already be gone. Run "
            f"`/{command}` again with `confirm`: it deletes what is left. If it fails again, "
            "tell the bot's operator.",
        )
        return None
    return Deletion(posts, report)


async def _late_posts(bot: ImagineBot, job_ids: set[int]) -> list[MemberPost]:
    """The posts of jobs that were open when the deletion began: it cancelled them, and their
    followers then post how they ended, in a new message when the status message was taken
    down already. Those followers are given ``LATE_POST_WAIT_S`` to finish."""
    following = bot.delivery.following
    tasks = [task for job_id, task in following.items() if job_id in job_ids]
    tasks += bot.service.recovered_deliveries(job_ids)
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=LATE_POST_WAIT_S)
        if pending:
            log.warning("%d cancelled jobs not posted within %.0f s; their posts may stay",
                        len(pending), LATE_POST_WAIT_S)  # fmt: skip
    return await bot.storage.posts.posts_for_jobs(job_ids)


NOTHING_OF_YOURS = "✅ nothing to delete: sdbot holds no prompts or images of yours"


def own_preview_text(preview: Preview) -> str:
    """/privacy delete's answer without ``confirm``."""
    if preview.nothing:
        return NOTHING_OF_YOURS
    heading = "**`/privacy delete` would delete, in every server and in DMs:**"
    return preview_text(preview, heading, "privacy delete", OWN_CHOICE)


def own_deletion_text(deletion: Deletion) -> str:
    """/privacy delete's answer."""
    if deletion.nothing:
        return f"{NOTHING_OF_YOURS}\n{KEPT}"
    heading = "🗑️ **your prompts and images are deleted, in every server and in DMs**"
    return deletion_text(deletion, heading)


def retention_line(config: object) -> str | None:
    """How long prompts and image files are kept (SDBOT_RETENTION_DAYS), as the service's
    config says; None when this config does not carry the setting (then nothing is claimed)."""
    if not hasattr(config, "retention_days"):
        return None
    days = config.retention_days
    if days is None:
        return "- prompts and image files are kept until you or a moderator delete them"
    return f"- prompts and image files are deleted {days:g} days after their job ended"


def info_text(retention: str | None) -> str:
    """/privacy info's answer: what sdbot keeps, for how long, and how to have it deleted."""
    lines = [
        "**what sdbot keeps about you**",
        "- each request: its prompt and options, where and when, the moderation verdict",
        "- the images drawn (files on the bot's machine), their hashes and watermarks",
        "- bans and moderators' actions, in each server's moderation log",
    ]
    if retention is not None:
        lines.append(retention)
    lines += ["`/privacy delete` deletes your prompts and images everywhere, now.", KEPT]
    return "\n".join(lines)


def privacy_commands(bot: ImagineBot) -> app_commands.Group:
    """/privacy (delete, info) over the bot's service: open to everyone, in DMs too."""
    group = app_commands.Group(name="privacy", description="Your data on sdbot: what it keeps")
    admin = GuildAdmin.for_service(bot.service)  # takes down the member's posts, as /mod purge

    @group.command(name="delete", description="Delete your prompts and images everywhere")
    @app_commands.describe(confirm=CONFIRM_HELP)
    @app_commands.choices(confirm=[app_commands.Choice(name=OWN_CHOICE, value=CONFIRMED)])
    async def delete(interaction: discord.Interaction, confirm: str | None = None) -> None:
        user_id = interaction.user.id
        if confirm is not None:
            check_confirmed(confirm, OWN_CHOICE)
        await interaction.response.defer(ephemeral=True, thinking=True)
        if confirm is None:
            preview = await preview_deletion(bot.service, user_id=user_id, guild_id=None)
            await private(interaction, own_preview_text(preview))
            return
        deletion = await forget_safely(
            bot, admin, interaction, user_id=user_id, guild_id=None, via="privacy"
        )
        if deletion is not None:
            await private(interaction, own_deletion_text(deletion))

    @group.command(name="info", description="What sdbot keeps about you, and for how long")
    async def info(interaction: discord.Interaction) -> None:
        await private(interaction, info_text(retention_line(bot.service.config)))

    return group
