"""The controls under a grid: 1️⃣–4️⃣ upscale a picture, ↖️ ↗️ ↙️ ↘️ vary one (the tile in that
corner of the 2×2 grid), 🔄 rerolls; under an upscale 🔍 zooms out (each posted as a reply to
the post); ❌ deletes a post. Which job a message shows lives in the database, so the controls
work across restarts, and each control starts one job however often it is used.

Glue only: who may use a control is :func:`bot.access.control_use`, starting its job is
``ImagineService.use_control``. A reaction is no interaction, so the command tree's ``on_error``
never sees it: :func:`bot.discord.render.explain` words its refusals in a short reply instead.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord

from bot import access
from bot.access import Control, Use
from bot.discord import render
from bot.discord.delivery import Status
from bot.discord.interactions import is_moderator, requester_in
from bot.discord.retries import DISCORD_ERRORS, best_effort, describe
from bot.discord.text import NO_PINGS, capped
from bot.imagine.outcomes import AlreadyStarted, ImagineOutcome, Refusal, Submitted
from common.errors import SdbotError
from storage.models import Controls, JobKind

if TYPE_CHECKING:
    from bot.discord.client import ImagineBot
    from storage.records import JobRecord

log = logging.getLogger(__name__)

NOTICE_SECONDS = 30.0  # a reply to a control (already done, not allowed now) then goes away


KINDS = {
    Control.UPSCALE: JobKind.UPSCALE,
    Control.VARY: JobKind.VARY,
    Control.REROLL: JobKind.REROLL,
    Control.ZOOM: JobKind.ZOOM,
}


def control_of(emoji: str) -> tuple[Control, int | None] | None:
    """The control an emoji is, with the variant it names (1–4 for an upscale or a vary)."""
    if emoji in render.UPSCALES:
        return Control.UPSCALE, render.UPSCALES.index(emoji) + 1
    if emoji in render.VARIES:
        return Control.VARY, render.VARIES.index(emoji) + 1
    single = {
        render.REROLL: Control.REROLL,
        render.ZOOM: Control.ZOOM,
        render.DELETE: Control.DELETE,
    }
    return (single[emoji], None) if emoji in single else None


class ReactionControls:
    """Turns reactions on the bot's posts into jobs and deletions."""

    def __init__(self, client: ImagineBot) -> None:
        self.client = client

    async def on_reaction(self, payload: discord.RawReactionActionEvent) -> None:
        client, emoji = self.client, str(payload.emoji)
        named = control_of(emoji)
        if client.user is None or payload.user_id == client.user.id or named is None:
            return
        control, variant = named
        linked = await client.storage.posts.job_for_message(payload.message_id)
        if linked is None:  # not a post of ours (or one deleted since)
            return
        record, _ = linked
        try:
            channel = client.get_channel(payload.channel_id) or await client.fetch_channel(
                payload.channel_id
            )
        except discord.HTTPException as error:
            log.warning("a control in channel %d we cannot see ◆ %s", payload.channel_id, error)
            return
        if not isinstance(channel, discord.abc.Messageable):
            return
        message = channel.get_partial_message(payload.message_id)
        use = access.control_use(
            control,
            record,
            user_id=payload.user_id,
            moderator=is_moderator(payload.member, channel),
            open_to_everyone=control is not Control.DELETE
            and await self._open_to_everyone(payload.guild_id),
        )
        if use is Use.IGNORE:  # an upscale has only ❌: others are just emoji
            return
        if control is Control.DELETE and use is Use.ALLOW:
            await self._delete(message, record, payload.user_id)
            return
        # The member's reaction goes, so the control reads as a button; a repeat is answered.
        await self._unreact(message, emoji, payload.user_id)
        if use is Use.REFUSE:
            return
        requester = requester_in(channel, payload.guild_id, payload.channel_id, payload.user_id)
        try:
            started = await client.service.use_control(
                record.id, variant, requester, control=control
            )
        except SdbotError as error:  # the guild's limits changed, nothing to upscale, …
            await self._notice(message, payload.user_id, render.explain(error) or f"⚠️ {error}")
            return
        if isinstance(started, AlreadyStarted):
            await self._notice(
                message, payload.user_id, await self._already(started, control, variant)
            )
            return
        if isinstance(started, ImagineOutcome):  # banned, paused, blocked by today's lists, …
            if started.refusal in (Refusal.BANNED, Refusal.PAUSED):
                await self._private_notice(message, payload.user_id, render.refusal(started))
            else:
                await self._notice(message, payload.user_id, render.refusal(started))
            return
        await self._reply_and_deliver(message, record, started, control, variant, payload)

    async def _reply_and_deliver(
        self,
        message: discord.PartialMessage,
        record: JobRecord,
        started: Submitted,
        control: Control,
        variant: int | None,
        payload: discord.RawReactionActionEvent,
    ) -> None:
        job_id, options = started.job.job_id, started.job.request.options
        kind = KINDS[control]
        title = render.title_of(
            record.prompt,
            job_id,
            kind,
            record.id,
            record.parent_variant if kind is JobKind.ZOOM else variant,
            start=options.start,
            strength=options.strength if kind is JobKind.VARY else None,
        )
        status = Status(payload.channel_id, payload.guild_id, payload.user_id)
        delivery = self.client.delivery
        try:
            reply = await message.reply(
                capped(f"{title}\nqueued"), mention_author=False, allowed_mentions=NO_PINGS
            )
        except DISCORD_ERRORS as error:  # the job is queued: it is followed all the same
            log.warning("could not post the status of job %d ◆ %s", job_id, error)
        else:
            status.message_id = reply.id
            await delivery.link_status(status, job_id)
        await delivery.deliver(started, title, status)

    async def _open_to_everyone(self, guild_id: int | None) -> bool:
        if guild_id is None:
            return False
        settings = await self.client.storage.guild_settings.get(guild_id)
        return settings.controls is Controls.EVERYONE

    async def _already(self, started: AlreadyStarted, control: Control, variant: int | None) -> str:
        what = {
            Control.REROLL: "🔄 this grid was rerolled",
            Control.UPSCALE: f"#{variant} was upscaled",
            Control.VARY: f"#{variant} was varied",
            Control.ZOOM: "🔍 this upscale was zoomed out",
        }[control]
        if started.job is None:
            return f"{what} a moment ago; its post is on the way"
        links = await self.client.storage.posts.messages_for_job(started.job.id)
        where = ""
        if links:  # the latest: the result, where its status message was not reused
            channel_id, message_id = links[-1]
            channel = self.client.get_partial_messageable(channel_id, guild_id=started.job.guild_id)
            where = f": {channel.get_partial_message(message_id).jump_url}"
        return f"{what} already, as job {started.job.id} ({started.job.status.value}){where}"

    async def _delete(
        self, message: discord.PartialMessage, record: JobRecord, user_id: int
    ) -> None:
        try:
            await message.delete()
        except discord.NotFound:
            pass
        except discord.HTTPException as error:
            log.warning("could not delete the post of job %d ◆ %s", record.id, error)
            return
        await self.client.storage.posts.unlink_message(message.id)
        log.info("deleted the post of job %d ◆ by %d", record.id, user_id)

    async def _unreact(self, message: discord.PartialMessage, emoji: str, user_id: int) -> None:
        try:
            await message.remove_reaction(emoji, discord.Object(user_id))
        except discord.HTTPException as error:  # no Manage Messages here: the reaction stays
            log.info("could not remove a reaction ◆ %s", error)

    async def _notice(self, message: discord.PartialMessage, user_id: int, text: str) -> None:
        """A short reply to a control, for its member only, that goes away by itself."""
        try:
            await message.reply(
                capped(f"<@{user_id}> {text}"),
                mention_author=False,
                allowed_mentions=discord.AllowedMentions(users=[discord.Object(user_id)]),
                delete_after=self.client.notice_s,
            )
        except DISCORD_ERRORS as error:
            log.info("could not answer a control ◆ %s", describe(error))

    async def _private_notice(
        self, message: discord.PartialMessage, user_id: int, text: str
    ) -> None:
        """A refusal whose reason is the member's alone (a ban's, a pause's): the reason goes
        to them in a direct message; the channel reads only that the control is not theirs."""
        client = self.client

        async def direct() -> None:
            user = client.get_user(user_id) or await client.fetch_user(user_id)
            await user.send(capped(f"{text}\n(the control under {message.jump_url})"))

        sent = await best_effort(direct, f"a direct message to {user_id}")
        where = (
            "sdbot sent you why in a direct message"
            if sent
            else "`/imagine` here tells you why, for your eyes only"
        )
        await self._notice(message, user_id, f"this control is not open to you now; {where}")
