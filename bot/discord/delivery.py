"""Posting a job on Discord: its place and progress in a status message, then its result there
(or in a new message when that cannot be edited), with the controls under it.

A job is recorded and drawn whatever happens to the messages that show it: nothing that Discord
or the network does here fails or cancels it. The ``except`` clauses of the Discord side live
here (and in :mod:`bot.discord.retries`): they are about Discord's HTTP answers, not our errors.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import discord

from bot.access import Control, controls_for, drawn_from_prompt
from bot.discord import metrics, render
from bot.discord.retries import (
    DISCORD_ERRORS,
    DeliveryFailed,
    Gone,
    Restarting,
    best_effort,
    describe,
    is_gone,
    is_token_gone,
    with_retries,
)
from bot.discord.text import NO_PINGS, capped
from storage.models import JobKind

if TYPE_CHECKING:
    from bot.discord.client import ImagineBot
    from bot.imagine.outcomes import ImagineOutcome, Submitted
    from generation.protocol import Progress
    from generation.queue import Queued
    from storage.records import JobRecord

log = logging.getLogger(__name__)

# A progress edit skips any of these; Gone (no status message left) stops the edits.
LIVE_UPDATE_ERRORS: tuple[type[BaseException], ...] = (Gone, *DISCORD_ERRORS)
EMOJI = {
    Control.UPSCALE: render.UPSCALES,
    Control.VARY: render.VARIES,
    Control.REROLL: (render.REROLL,),
    Control.ZOOM: (render.ZOOM,),
    Control.DELETE: (render.DELETE,),
}


def offered(record: JobRecord, *, has_picture: bool = True) -> tuple[Control, ...]:
    """The controls under a job's post (see :func:`bot.access.controls_for`)."""
    return controls_for(record.kind, has_picture=has_picture, from_prompt=drawn_from_prompt(record))


@dataclass
class Status:
    """The message that shows a job's place and progress, and takes its result: the
    interaction's response (edited through its token while it lives, then through the channel)
    or a channel message (a control's reply)."""

    channel_id: int | None
    guild_id: int | None
    user_id: int | None
    interaction: discord.Interaction | None = None
    message_id: int | None = None
    token_expired: bool = False  # a late result then mentions its member in a new message

    def editable(self) -> bool:
        return self.message_id is not None or self.interaction is not None


class Delivery:
    """Follows jobs for one client and posts them; ``following`` maps a job to its task."""

    def __init__(self, client: ImagineBot) -> None:
        self.client = client
        self.following: dict[int, asyncio.Task[Any]] = {}

    async def link_status(self, status: Status, job_id: int) -> None:
        """The status message is linked to its job: a restart finds it and says where the
        result went, and /mod purge deletes it with the member's other posts."""
        if status.message_id is None or status.channel_id is None:
            return
        try:
            await self.client.storage.posts.link_message(
                status.message_id, job_id, channel_id=status.channel_id, guild_id=status.guild_id
            )
        except Exception:  # the job is queued: nothing here may stop it from being followed
            log.exception("could not link the status message of job %d", job_id)

    async def deliver(self, submitted: Submitted, title: str, status: Status) -> None:
        """Shows a job's place and progress in its status message, then its result with the
        controls under it."""
        job_id = submitted.job.job_id
        task = asyncio.current_task()
        if task is not None:
            self.following[job_id] = task
        try:
            outcome = await self._follow(submitted, title, status)
            with metrics.posting():
                await self._post_outcome(outcome, submitted, title, status)
        except (DeliveryFailed, discord.HTTPException) as error:  # the job itself is recorded
            log.error("could not post job %d ◆ %s", job_id, error)
        finally:
            self.following.pop(job_id, None)

    async def _post_outcome(
        self, outcome: ImagineOutcome, submitted: Submitted, title: str, status: Status
    ) -> None:
        """The result with the controls under it; a picture Discord refuses becomes a notice."""
        job_id = submitted.job.job_id
        record = await self.client.storage.audit.get_job(job_id)
        assert record is not None
        content, file = render.final(
            outcome,
            title,
            submitted.job.request.options,
            self.client.service.model_label,
            render.legend(offered(record)),
        )
        try:
            message = await self._post_result(status, title, content, file)
        except discord.HTTPException as error:
            if file is None:
                raise
            # Too large for the channel, or no Attach Files: the member still hears of it.
            log.warning("could not post the picture of job %d ◆ %s", job_id, describe(error))
            reason = error.text or f"HTTP {error.status}"
            notice = f"{content}\n⚠️ the picture could not be posted: {reason}"
            message = await self._post_result(status, title, notice, None)
            file = None
        if message is not None:
            await self.add_controls(message, record, has_picture=file is not None)

    async def _post_result(
        self, status: Status, title: str, content: str, file: discord.File | None
    ) -> discord.Message | None:
        """The result in the status message, tried a few times; when it cannot be edited (gone,
        too old, the token expired, every try failed), a new channel message for the member,
        and the status message says where it went."""
        await self.until_live()
        client = self.client
        if status.editable() and not status.token_expired:
            try:
                return await with_retries(
                    lambda: self.edit_status(status, content, file=file, final=True),
                    f"posting to the status of job in {status.channel_id}",
                    timeout_s=client.request_timeout_s,
                    backoff_s=client.retry_backoff_s,
                )
            except (Gone, DeliveryFailed) as error:
                log.warning("the status message takes no result ◆ %s", error)
                if isinstance(error, Gone) and not status.token_expired:
                    status.message_id = None  # deleted or too old: nothing to point from
        message = await with_retries(
            lambda: self.to_channel(status.channel_id, status.user_id, content, file, status),
            f"posting to channel {status.channel_id}",
            timeout_s=client.request_timeout_s,
            backoff_s=client.retry_backoff_s,
        )
        if message is not None and status.message_id is not None:
            where = f"{title}\n➡️ posted as a new message: {message.jump_url}"
            await best_effort(
                lambda: self.edit_status(status, where),
                "pointing the status to the result",
                timeout_s=client.request_timeout_s,
            )
        return message

    async def edit_status(
        self,
        status: Status,
        content: str,
        *,
        file: discord.File | None = None,
        final: bool = False,
    ) -> discord.Message:
        """Edits the status message: through the interaction while its token lives, then
        through the channel. A result (``final``) raises Gone when the token expired, so that
        it goes to a new message that mentions its member."""
        fields: dict[str, Any] = {"content": capped(content), "allowed_mentions": NO_PINGS}
        if final:
            if file is not None:
                file.reset()
            fields["attachments"] = [file] if file is not None else []
        interaction = status.interaction
        if interaction is not None and not self.client.is_closed():
            try:
                return await interaction.edit_original_response(**fields)
            except discord.HTTPException as error:
                if not is_token_gone(error):
                    raise
                status.interaction, status.token_expired = None, True
                if final:
                    raise Gone(describe(error)) from error
                if file is not None:
                    file.reset()
        elif interaction is not None:  # its client was closed (and restarted): its session too
            status.interaction = None
        if status.message_id is None or status.channel_id is None:
            raise Gone("the status message is not known")
        channel = self.live().get_partial_messageable(status.channel_id, guild_id=status.guild_id)
        return await channel.get_partial_message(status.message_id).edit(**fields)

    def live(self) -> ImagineBot:
        """The client that posts now: this one, or the one that replaced it after a restart.
        Raises Restarting while that one is not there or has not logged in (its session is
        opened by the login: a call through it before would break)."""
        client = self.client
        while client.is_closed() and client.successor is not None:
            client = client.successor
        if client.is_closed() or client.user is None:
            raise Restarting("no client is logged in: sdbot run is restarting it")
        return client

    async def until_live(self) -> None:
        """Waits, ``restart_wait_s`` at most, while `sdbot run` restarts the client (it pauses
        before a new one, up to a minute after repeated failures), so that a result does not
        spend its tries on a closed session. A progress edit does not wait: it is skipped."""
        wait_s = self.client.restart_wait_s
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                self.live()
            except Restarting:
                await asyncio.sleep(0.2)  # nothing to wait on: the successor is set from outside
            else:
                return
        log.warning("no client logged in after %.0f s; posting anyway", wait_s)

    async def _follow(self, submitted: Submitted, title: str, status: Status) -> ImagineOutcome:
        job_id, options = submitted.job.job_id, submitted.job.request.options
        last_edit = 0.0

        async def show(text: str, *, force: bool = False) -> None:
            """Best effort: a failed edit is skipped, a message that is gone is left alone."""
            nonlocal last_edit
            now = time.monotonic()
            if not status.editable() or (not force and now - last_edit < self.client.edit_every_s):
                return
            last_edit = now
            try:  # a stalled edit must not hold up the job's events for long
                await asyncio.wait_for(
                    self.edit_status(status, f"{title}\n{text}"), self.client.request_timeout_s
                )
            except LIVE_UPDATE_ERRORS as error:
                if isinstance(error, Gone) or is_gone(error):  # Gone: no interaction left either
                    log.info("stopped live updates ◆ job %d ◆ %s", job_id, describe(error))
                    status.message_id, status.interaction = None, None
                else:
                    log.info("skipped a live update ◆ job %d ◆ %s", job_id, describe(error))

        async def on_queued(place: Queued) -> None:
            ahead = "next in line" if place.ahead == 0 else f"{place.ahead} ahead"
            await show(f"queued: {ahead}{render.eta(place.eta_s)}")

        async def on_progress(progress: Progress) -> None:
            await show(render.progress_text(progress, options), force=progress.step == 1)

        return await self.client.service.follow_submitted(
            submitted, on_progress=on_progress, on_queued=on_queued
        )

    async def add_controls(
        self, message: discord.Message, record: JobRecord, *, has_picture: bool = True
    ) -> None:
        """Links the post to its job (for the controls, and for /mod purge) and adds the
        controls under a picture; a post without one (failed, cancelled) gets ❌ alone."""
        await self.client.storage.posts.link_message(
            message.id,
            record.id,
            channel_id=message.channel.id,
            guild_id=record.guild_id,
            variant=record.parent_variant if record.kind == JobKind.UPSCALE.value else None,
        )
        for control in offered(record, has_picture=has_picture):
            for emoji in EMOJI[control]:
                try:
                    await message.add_reaction(emoji)
                except DISCORD_ERRORS as error:  # no permission to react: the post stands
                    log.warning("could not add controls ◆ job %d ◆ %s", record.id, describe(error))
                    return

    async def to_channel(
        self,
        channel_id: int | None,
        user_id: int | None,
        content: str,
        file: discord.File | None,
        status: Status | None = None,
    ) -> discord.Message | None:
        """A new message in the channel that mentions the member (and only them)."""
        if channel_id is None:
            return None
        if file is not None:
            file.reset()
        guild_id = status.guild_id if status is not None else None
        channel = self.live().get_partial_messageable(channel_id, guild_id=guild_id)
        mention = f"<@{user_id}> " if user_id is not None else ""
        return await channel.send(
            capped(f"{mention}{content}"),
            file=file if file is not None else discord.utils.MISSING,
            allowed_mentions=discord.AllowedMentions(
                users=[discord.Object(user_id)] if user_id is not None else False
            ),
        )
