"""The Discord bot: `/imagine` through the same moderated path as the CLI, and the controls.

A request is checked, recorded and queued before the bot answers, which takes milliseconds:
a blocked prompt, a bad option or a rate limit gets an ephemeral reply with the reason; an
accepted one a public "queued" message that then shows its place, its progress (edited at most
every ``edit_every_s``), and finally the 2×2 grid with the controls. When the interaction token
has expired (a long queue), the result goes to the channel as a new message that mentions the
requester. Echoed prompts never ping anyone.

The controls are reactions: 1️⃣–4️⃣ upscale a variant and 🔄 rerolls (each posted as a reply to
the grid), ❌ deletes a post. Which job a message shows lives in the database, so the controls
work across restarts, and each control starts one job however often it is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import discord
from discord import app_commands

from bot.discord_delivery import (
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
from bot.discord_mod import action_text, mod_commands
from bot.discord_sync import CommandSync
from bot.discord_text import NO_PINGS, capped, channel_nsfw, quoted
from bot.service import (
    AlreadyStarted,
    ControlUnavailable,
    ImagineOutcome,
    ImagineService,
    NotYours,
    Refusal,
    Requester,
    ShuttingDown,
    Submitted,
    options_of,
)
from generation.errors import InvalidOption
from generation.options import (
    MAX_SEED,
    SCHEDULERS,
    GenerationOptions,
    RequestedOptions,
    renamed,
)
from generation.protocol import Progress
from generation.queue import Queued
from storage.admin import GuildSettingsRecord, ModerationActionRecord
from storage.audit import JobRecord
from storage.models import Controls, Disposition, JobKind, JobStatus, NsfwPolicy

log = logging.getLogger(__name__)

UPSCALES = ("1️⃣", "2️⃣", "3️⃣", "4️⃣")
REROLL = "🔄"
DELETE = "❌"
CONTROLS = (*UPSCALES, REROLL, DELETE)
NOTICE_SECONDS = 30.0  # a reply to a control (already done, not allowed now) then goes away
# The options as /imagine names them, for refusals that name what the member typed.
OPTION_NAMES = {
    "width": "size",
    "height": "size",
    "cfg": "guidance",
    "scheduler": "sampler",
    "negative prompt": "negative",
}
DISCORD_MAX_STRING = 6000  # the longest string option Discord accepts
REQUEST_TIMEOUT_S = 30.0  # discord.py waits for an answer forever; a post is tried again
RESTART_WAIT_S = 300.0  # a result waits this long for the client `sdbot run` restarts


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f" · about {seconds:.0f} s" if seconds < 90 else f" · about {seconds / 60:.0f} min"


def _title_of(
    prompt: str, job_id: int, kind: str, parent_job_id: int | None, parent_variant: int | None
) -> str:
    """``**prompt** · job N``, with what it was made from for an upscale or a reroll."""
    if kind == JobKind.UPSCALE.value:
        what = f" · upscale of #{parent_variant} of job {parent_job_id}"
    elif kind == JobKind.REROLL.value:
        what = f" · reroll of job {parent_job_id}"
    else:
        what = ""
    return f"**{quoted(prompt)}**{what} · job {job_id}"


def _title(record: JobRecord) -> str:
    return _title_of(
        record.prompt, record.id, record.kind, record.parent_job_id, record.parent_variant
    )


def is_moderator(member: discord.abc.User | None, channel: Any) -> bool:
    """Manage Messages in the channel, or Manage Server: who may delete others' posts."""
    if not isinstance(member, discord.Member):
        return False
    if isinstance(channel, discord.abc.GuildChannel):
        return may_moderate(channel.permissions_for(member))
    return may_moderate(member.guild_permissions)


def may_moderate(permissions: discord.Permissions) -> bool:
    return permissions.manage_messages or permissions.manage_guild


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


def chosen(options: GenerationOptions) -> str:
    """The options a picture was drawn with, as a post echoes them."""
    side = options.upscale
    text = (
        f"{options.width * side}×{options.height * side} · {options.steps} steps · "
        f"guidance {options.guidance_scale:g}"
    )
    return text if options.scheduler == "default" else f"{text} · sampler {options.scheduler}"


def progress_text(progress: Progress, options: GenerationOptions) -> str:
    """``drawing: step 7/20`` in the steps the member asked for. The worker counts an
    upscale's redraw at twice the size in the same run, and some samplers (Heun) take more
    steps than asked: the redraw is shown as its own phase, the rest scaled to the steps."""
    refine = options.refine_steps
    first = max(1, progress.total - refine)
    if progress.step <= first:
        step = min(options.steps, max(1, math.ceil(progress.step * options.steps / first)))
        return f"drawing: step {step}/{options.steps}"
    return f"upscaling: step {min(progress.step - first, refine)}/{refine}"


class ImagineBot(discord.AutoShardedClient):
    """Sharded as Discord recommends (one shard below 2,500 guilds), or as ``shard_count`` and
    ``shard_ids`` say when several processes share the guilds."""

    def __init__(
        self,
        service: ImagineService,
        *,
        command_sync: CommandSync | None = None,
        edit_every_s: float = 2.0,
        notice_s: float = NOTICE_SECONDS,
        **options: Any,
    ) -> None:
        super().__init__(intents=discord.Intents.default(), allowed_mentions=NO_PINGS, **options)
        self.service = service
        self.command_sync = command_sync or CommandSync()
        self.edit_every_s = edit_every_s
        self.notice_s = notice_s
        self.tree = app_commands.CommandTree(self)
        self.tree.on_error = self._command_failed  # type: ignore[method-assign]
        self._deliveries: dict[int, asyncio.Task[Any]] = {}  # job id → the task posting it
        self._posting: set[asyncio.Task[None]] = set()  # moderators' actions on their way
        self.successor: ImagineBot | None = None  # the client that replaced this one, if any
        self.request_timeout_s = REQUEST_TIMEOUT_S  # a post, an edit: tried again after this
        self.retry_backoff_s = 1.0  # the pause before a post's second try (doubled after)
        self.restart_wait_s = RESTART_WAIT_S
        service.moderation.listeners.append(self._on_moderation)
        self._register()

    async def setup_hook(self) -> None:
        await self.command_sync.run(self.tree)

    async def close(self) -> None:
        with contextlib.suppress(ValueError):
            self.service.moderation.listeners.remove(self._on_moderation)
        await super().close()

    def _on_moderation(self, action: ModerationActionRecord) -> None:
        """A moderator's action in this bot goes to the guild's log channel, when it has one,
        without holding up the command that made it."""
        if action.guild_id is None or self.is_closed():
            return
        task = asyncio.create_task(self._post_action(action.guild_id, action))
        self._posting.add(task)
        task.add_done_callback(self._posting.discard)

    async def _post_action(self, guild_id: int, action: ModerationActionRecord) -> None:
        channel_id = (await self.service.guild_settings.get(guild_id)).audit_channel_id
        if channel_id is None:
            return
        try:
            await self.get_partial_messageable(channel_id).send(
                f"🛡️ {action_text(action)}", allowed_mentions=NO_PINGS
            )
        except discord.HTTPException as error:
            log.warning("could not post to the log channel of guild %d ◆ %s", guild_id, error)

    async def on_ready(self) -> None:
        user = self.user
        log.info(
            "connected to Discord as %s (%s) ◆ %d guilds", user, user and user.id, len(self.guilds)
        )

    async def drain(self, grace_s: float) -> int:
        """A graceful stop: no new work; the jobs running now get ``grace_s`` to be drawn and
        posted. Returns how many did not make it (they resume at the next start)."""
        running = await self.service.stop_taking_work()
        tasks = [task for job_id, task in self._deliveries.items() if job_id in running]
        tasks += self.service.recovered_deliveries(running)
        if not tasks:
            return 0
        _, pending = await asyncio.wait(tasks, timeout=grace_s)
        return len(pending)

    async def post_recovered(self, outcome: ImagineOutcome) -> None:
        """A job resumed after a restart: its result goes to its channel, for its member, and
        the status message the stopped process left ("queued", "drawing …") says where."""
        record = await self.service.audit.get_job(outcome.job_id)
        if record is None or record.channel_id is None or record.source != "discord":
            return
        stale = await self.service.audit.messages_for_job(record.id)  # an open job: statuses
        title = f"{_title(record)} (resumed after a restart)"
        content, file = self._final(outcome, title, options_of(record))
        status = Status(record.channel_id, record.guild_id, record.user_id)
        await self._until_live()
        try:
            message = await with_retries(
                lambda: self._to_channel(record.channel_id, record.user_id, content, file, status),
                f"posting resumed job {record.id}",
                timeout_s=self.request_timeout_s,
                backoff_s=self.retry_backoff_s,
            )
        except (DeliveryFailed, discord.HTTPException) as error:
            log.error("could not post resumed job %d ◆ %s", record.id, error)
            return
        if message is None:
            return
        await self._controls(message, record, reactions=file is not None)
        said = f"{_title(record)}\n🔁 sdbot restarted meanwhile; the result: {message.jump_url}"
        for channel_id, message_id in stale:
            channel = self._live().get_partial_messageable(channel_id, guild_id=record.guild_id)
            old = channel.get_partial_message(message_id)
            await best_effort(
                functools.partial(old.edit, content=capped(said), allowed_mentions=NO_PINGS),
                f"pointing the status of job {record.id} to its result",
            )

    # --- commands ------------------------------------------------------------------------------

    def _register(self) -> None:
        async def imagine(
            interaction: discord.Interaction,
            prompt: str,
            negative: str = "",
            size: int | None = None,
            steps: int | None = None,
            guidance: float | None = None,
            seed: int | None = None,
            sampler: str | None = None,
        ) -> None:
            requested = RequestedOptions(
                prompt=prompt,
                negative_prompt=negative,
                seed=seed,
                steps=steps,
                guidance_scale=guidance,
                width=size,
                height=size,
                scheduler=sampler,
            )
            await self.run_imagine(interaction, requested)

        # Discord shows and enforces the bot's own limits (a guild may allow less; the bot
        # says so). The annotations are strings here (PEP 563): the ranges, built from the
        # settings, replace them before discord.py reads the signature.
        limits = self.service.limits
        text = min(limits.max_prompt_chars, DISCORD_MAX_STRING)
        imagine.__annotations__.update(
            prompt=app_commands.Range[str, 1, text],
            negative=app_commands.Range[str, 0, text],
            size=app_commands.Range[int, limits.min_side, limits.max_side] | None,
            steps=app_commands.Range[int, 1, limits.max_steps] | None,
            guidance=app_commands.Range[float, limits.min_guidance, limits.max_guidance] | None,
            seed=app_commands.Range[int, 0, MAX_SEED] | None,
        )
        described = app_commands.describe(
            prompt="what to draw",
            negative="what not to draw",
            size="width and height in pixels, a multiple of 8 (default: the model's)",
            steps="denoising steps (more: slower, finer)",
            guidance="how closely to follow the prompt (cfg)",
            seed="the same seed and prompt make the same grid",
            sampler="the scheduler",
        )(imagine)
        chosen = app_commands.choices(
            sampler=[app_commands.Choice(name=name, value=name) for name in SCHEDULERS]
        )(described)
        self.tree.command(name="imagine", description="Make a 2×2 grid of images from a prompt")(
            chosen
        )

        @self.tree.command(name="job", description="A job's settings, and its grid posted again")
        @app_commands.describe(id="the job number shown under the grid")
        async def job(interaction: discord.Interaction, id: app_commands.Range[int, 1]) -> None:
            await self.show_job(interaction, id)

        @self.tree.command(name="cancel", description="Cancel your queued or running job")
        @app_commands.describe(id="the job number (default: your latest one here)")
        async def cancel(
            interaction: discord.Interaction, id: app_commands.Range[int, 1] | None = None
        ) -> None:
            await self.cancel_job(interaction, id)

        @self.tree.command(name="help", description="What sdbot does, and this server's limits")
        async def help(interaction: discord.Interaction) -> None:
            await _private(interaction, await self.help_text(interaction))

        self.tree.add_command(mod_commands(self))

    async def _command_failed(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        """A command that broke still answers its member; a refused check already did."""
        if isinstance(error, app_commands.CheckFailure):
            return
        command = interaction.command.qualified_name if interaction.command else "?"
        log.error("/%s failed", command, exc_info=error)
        text = "⚠️ something went wrong on sdbot's side; the error is logged for its operator"
        await best_effort(lambda: _private(interaction, text), f"answering /{command}")

    def _requester(self, interaction: discord.Interaction) -> Requester:
        return Requester(
            source="discord",
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
            user_id=interaction.user.id,
            channel_nsfw=channel_nsfw(interaction.channel),
            parent_channel_id=_parent_id(interaction.channel),
        )

    async def run_imagine(
        self, interaction: discord.Interaction, requested: RequestedOptions
    ) -> None:
        requester = self._requester(interaction)
        # Fast (rules, a record, a queue push): the answer goes out well inside Discord's 3 s.
        try:
            submitted = await self.service.submit(requested, requester)
        except InvalidOption as error:  # discord.py does not enforce ranges: we do
            await _private(interaction, f"⚠️ {renamed(error, OPTION_NAMES)}")
            return
        except ShuttingDown as error:
            await _private(interaction, f"🔁 {error}")
            return
        if isinstance(submitted, ImagineOutcome):
            await _private(interaction, _refusal(submitted))
            return
        job_id = submitted.job.job_id
        title = _title_of(requested.prompt, job_id, JobKind.IMAGINE, None, None)
        status = Status(interaction.channel_id, interaction.guild_id, interaction.user.id)
        try:
            answer = await interaction.response.send_message(
                capped(f"{title}\nqueued"), allowed_mentions=NO_PINGS
            )
        except DISCORD_ERRORS as error:  # too late (Discord's 3 s): the job still posts
            log.warning("could not answer ◆ job %d ◆ %s", job_id, describe(error))
        else:
            status.interaction = interaction
            status.message_id = answer.message_id
            await self._link_status(status, job_id)
        await self._deliver(submitted, title, status)

    async def show_job(self, interaction: discord.Interaction, job_id: int) -> None:
        """/job: the settings of a job of this server, and its grid posted again with the
        controls where it may be shown here; otherwise the settings alone, to the caller."""
        record = await self.service.audit.get_job(job_id)
        in_dms = interaction.guild_id is None
        if (
            record is None
            or record.source != "discord"
            or record.guild_id != interaction.guild_id
            or (in_dms and record.user_id != interaction.user.id)  # DMs: one's own jobs only
        ):
            where = "in this server" if interaction.guild_id else "here"
            await _private(interaction, f"⚠️ there is no job {job_id} {where}")
            return
        if interaction.guild_id is not None:  # a banned member, a channel the bot is not in
            settings = await self.service.guild_settings.get(interaction.guild_id)
            gate = await self.service.gate(self._requester(interaction), settings)
            if gate is not None and gate[0] is not Refusal.PAUSED:
                await _private(interaction, _refused(*gate))
                return
        mine = record.user_id == interaction.user.id
        moderator = may_moderate(interaction.permissions)
        if record.status in (JobStatus.BLOCKED, JobStatus.REFUSED) and not (mine or moderator):
            await _private(
                interaction,
                f"⚠️ job {job_id} was {record.status.value}; only its requester and moderators "
                "can see it",
            )
            return
        text = self._details(record)
        stored, why_not = self._stored_post(record, channel_nsfw(interaction.channel))
        if stored is None:
            await _private(interaction, f"{text}\n*{why_not}*" if why_not else text)
            return
        # An upload can outlast Discord's 3 s: the answer goes first, the picture follows it.
        await interaction.response.defer(thinking=True)
        path, name = stored
        try:
            png = await asyncio.to_thread(path.read_bytes)
            message = await interaction.followup.send(
                capped(text),
                file=discord.File(io.BytesIO(png), filename=name),
                allowed_mentions=NO_PINGS,
                wait=True,
            )
        except (OSError, discord.HTTPException) as error:  # gone, too large, no permission, …
            why = (
                "its picture is no longer stored"
                if isinstance(error, OSError)
                else f"the picture could not be posted here: {error.text or error.status}"
            )
            await interaction.followup.send(capped(f"{text}\n*{why}*"), allowed_mentions=NO_PINGS)
            return
        await self._controls(message, record)

    async def cancel_job(self, interaction: discord.Interaction, job_id: int | None) -> None:
        """/cancel: the caller's job (by default their latest open one here) stops."""
        user = interaction.user.id
        if job_id is None:
            latest = await self.service.audit.latest_open_job(user, interaction.guild_id)
            if latest is None:
                await _private(interaction, "⚠️ you have no queued or running job here")
                return
            job_id = latest.id
        try:
            said = await self.service.cancel(job_id, user)
        except NotYours as error:
            await _private(interaction, f"⚠️ {error}")
            return
        await _private(interaction, f"✅ {said}")

    async def help_text(self, interaction: discord.Interaction) -> str:
        service, guild_id = self.service, interaction.guild_id
        here = await service.limits_here(guild_id)
        limits, defaults, rates, settings = here.options, here.defaults, here.rates, here.settings
        controls = settings.controls if settings else Controls.REQUESTER
        who = "anyone here" if controls is Controls.EVERYONE else "the requester and moderators"
        nsfw = (
            "spoilered in age-restricted channels, withheld elsewhere"
            if settings and settings.nsfw_policy is NsfwPolicy.SPOILER
            else "withheld"
        )
        return "\n".join(
            [
                "**sdbot** draws pictures from text with Stable Diffusion "
                f"({service.model_label}).",
                "`/imagine prompt` makes a 2×2 grid; options: `negative`, `size`, `steps`, "
                "`guidance`, `seed`, `sampler`.",
                "`/job id` shows a job's settings and posts its grid again with the controls.",
                "`/cancel [id]` stops your queued or running job.",
                f"Under a grid: {' '.join(UPSCALES)} upscale that picture, {REROLL} draws the "
                f"prompt again with new seeds (for {who}); {DELETE} deletes the post (its "
                "requester or a moderator).",
                "",
                "**Limits here**",
                f"- steps 1–{limits.max_steps} (default {defaults.steps}), sizes "
                f"{limits.min_side}–{limits.max_side} px in steps of 8 (default "
                f"{defaults.width}), guidance {limits.min_guidance:g}–{limits.max_guidance:g}",
                f"- {rates.user_units_per_hour:g} standard images an hour for each member and "
                f"{rates.guild_units_per_hour:g} for the server, {rates.max_jobs_per_user} jobs "
                "at a time each (a standard image is 512×512 px at 20 steps; smaller and "
                "shorter ones cost less)",
                f"- images the safety checker flags are {nsfw}",
                "- every prompt, blocked ones too, is recorded for this server's moderators",
                *self._paused_line(settings),
                "",
                "Moderators (Manage Server) run sdbot here with `/mod`: bans, block and allow "
                "lists, settings, history, review, export, purge, pause.",
            ]
        )

    @staticmethod
    def _paused_line(settings: GuildSettingsRecord | None) -> list[str]:
        if settings is None or not settings.paused:
            return []
        why = f": {quoted(settings.pause_reason)}" if settings.pause_reason else ""
        return [f"- ⏸️ the moderators paused image generation here{why}"]

    # --- controls ------------------------------------------------------------------------------

    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        emoji = str(payload.emoji)
        if self.user is None or payload.user_id == self.user.id or emoji not in CONTROLS:
            return
        linked = await self.service.audit.job_for_message(payload.message_id)
        if linked is None:  # not a post of ours (or one deleted since)
            return
        record, _ = linked
        try:
            channel = self.get_channel(payload.channel_id) or await self.fetch_channel(
                payload.channel_id
            )
        except discord.HTTPException as error:
            log.warning("a control in channel %d we cannot see ◆ %s", payload.channel_id, error)
            return
        if not isinstance(channel, discord.abc.Messageable):
            return
        message = channel.get_partial_message(payload.message_id)
        owner = payload.user_id == record.user_id
        moderator = is_moderator(payload.member, channel)
        if emoji == DELETE:
            if owner or moderator:
                await self._delete(message, record, payload.user_id)
            else:
                await self._unreact(message, emoji, payload.user_id)
            return
        if record.kind == JobKind.UPSCALE.value:  # an upscale has only ❌: others are just emoji
            return
        if not (owner or moderator or await self._controls_open(payload.guild_id)):
            await self._unreact(message, emoji, payload.user_id)
            return
        # The member's reaction goes, so the control reads as a button; a repeat is answered.
        await self._unreact(message, emoji, payload.user_id)
        variant = UPSCALES.index(emoji) + 1 if emoji in UPSCALES else None
        requester = Requester(
            source="discord",
            guild_id=payload.guild_id,
            channel_id=payload.channel_id,
            user_id=payload.user_id,
            channel_nsfw=channel_nsfw(channel),
            parent_channel_id=_parent_id(channel),
        )
        try:
            started = await self.service.use_control(record.id, variant, requester)
        except InvalidOption as error:  # the guild's limits changed since the grid
            await self._notice(message, payload.user_id, f"⚠️ {renamed(error, OPTION_NAMES)}")
            return
        except ControlUnavailable as error:
            await self._notice(message, payload.user_id, f"⚠️ {error}")
            return
        except ShuttingDown as error:
            await self._notice(message, payload.user_id, f"🔁 {error}")
            return
        if isinstance(started, AlreadyStarted):
            await self._notice(message, payload.user_id, await self._already(started, variant))
            return
        if isinstance(started, ImagineOutcome):  # banned, paused, blocked by today's lists, …
            if started.refusal in (Refusal.BANNED, Refusal.PAUSED):
                await self._private_notice(message, payload.user_id, _refusal(started))
            else:
                await self._notice(message, payload.user_id, _refusal(started))
            return
        title = _title_of(
            record.prompt,
            started.job.job_id,
            JobKind.REROLL if variant is None else JobKind.UPSCALE,
            record.id,
            variant,
        )
        status = Status(payload.channel_id, payload.guild_id, payload.user_id)
        try:
            reply = await message.reply(
                capped(f"{title}\nqueued"), mention_author=False, allowed_mentions=NO_PINGS
            )
        except DISCORD_ERRORS as error:  # the job is queued: it is followed all the same
            log.warning("could not post the status of job %d ◆ %s", started.job.job_id, error)
        else:
            status.message_id = reply.id
            await self._link_status(status, started.job.job_id)
        await self._deliver(started, title, status)

    async def _controls_open(self, guild_id: int | None) -> bool:
        if guild_id is None:
            return False
        return (await self.service.guild_settings.get(guild_id)).controls is Controls.EVERYONE

    async def _already(self, started: AlreadyStarted, variant: int | None) -> str:
        what = "🔄 this grid was rerolled" if variant is None else f"#{variant} was upscaled"
        if started.job is None:
            return f"{what} a moment ago; its post is on the way"
        links = await self.service.audit.messages_for_job(started.job.id)
        where = ""
        if links:  # the latest: the result, where its status message was not reused
            channel_id, message_id = links[-1]
            channel = self.get_partial_messageable(channel_id, guild_id=started.job.guild_id)
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
        await self.service.audit.unlink_message(message.id)
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
                delete_after=self.notice_s,
            )
        except DISCORD_ERRORS as error:
            log.info("could not answer a control ◆ %s", describe(error))

    async def _private_notice(
        self, message: discord.PartialMessage, user_id: int, text: str
    ) -> None:
        """A refusal whose reason is the member's alone (a ban's, a pause's): the reason goes
        to them in a direct message; the channel reads only that the control is not theirs."""

        async def direct() -> None:
            user = self.get_user(user_id) or await self.fetch_user(user_id)
            await user.send(capped(f"{text}\n(the control under {message.jump_url})"))

        sent = await best_effort(direct, f"a direct message to {user_id}")
        where = (
            "sdbot sent you why in a direct message"
            if sent
            else "`/imagine` here tells you why, for your eyes only"
        )
        await self._notice(message, user_id, f"this control is not open to you now; {where}")

    # --- delivery ------------------------------------------------------------------------------

    async def _link_status(self, status: Status, job_id: int) -> None:
        """The status message is linked to its job: a restart finds it and says where the
        result went, and /mod purge deletes it with the member's other posts."""
        if status.message_id is None or status.channel_id is None:
            return
        try:
            await self.service.audit.link_message(
                status.message_id, job_id, channel_id=status.channel_id, guild_id=status.guild_id
            )
        except Exception:  # the job is queued: nothing here may stop it from being followed
            log.exception("could not link the status message of job %d", job_id)

    async def _deliver(self, submitted: Submitted, title: str, status: Status) -> None:
        """Shows a job's place and progress in its status message, then its result (there, or
        in a new message when that cannot be edited) with the controls under it. Nothing that
        Discord or the network does here fails or cancels the job."""
        job_id = submitted.job.job_id
        task = asyncio.current_task()
        if task is not None:
            self._deliveries[job_id] = task
        try:
            outcome = await self._follow(submitted, title, status)
            record = await self.service.audit.get_job(job_id)
            assert record is not None
            content, file = self._final(outcome, title, submitted.job.request.options)
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
                await self._controls(message, record, reactions=file is not None)
        except (DeliveryFailed, discord.HTTPException) as error:  # the job itself is recorded
            log.error("could not post job %d ◆ %s", job_id, error)
        finally:
            self._deliveries.pop(job_id, None)

    async def _post_result(
        self, status: Status, title: str, content: str, file: discord.File | None
    ) -> discord.Message | None:
        """The result in the status message, tried a few times; when it cannot be edited (gone,
        too old, the token expired, every try failed), a new channel message for the member,
        and the status message says where it went."""
        await self._until_live()
        if status.editable() and not status.token_expired:
            try:
                return await with_retries(
                    lambda: self._edit_status(status, content, file=file, final=True),
                    f"posting to the status of job in {status.channel_id}",
                    timeout_s=self.request_timeout_s,
                    backoff_s=self.retry_backoff_s,
                )
            except (Gone, DeliveryFailed) as error:
                log.warning("the status message takes no result ◆ %s", error)
                if isinstance(error, Gone) and not status.token_expired:
                    status.message_id = None  # deleted or too old: nothing to point from
        message = await with_retries(
            lambda: self._to_channel(status.channel_id, status.user_id, content, file, status),
            f"posting to channel {status.channel_id}",
            timeout_s=self.request_timeout_s,
            backoff_s=self.retry_backoff_s,
        )
        if message is not None and status.message_id is not None:
            where = f"{title}\n➡️ posted as a new message: {message.jump_url}"
            await best_effort(
                lambda: self._edit_status(status, where),
                "pointing the status to the result",
                timeout_s=self.request_timeout_s,
            )
        return message

    async def _edit_status(
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
        if interaction is not None and not self.is_closed():
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
        channel = self._live().get_partial_messageable(status.channel_id, guild_id=status.guild_id)
        return await channel.get_partial_message(status.message_id).edit(**fields)

    def _live(self) -> ImagineBot:
        """The client that posts now: this one, or the one that replaced it after a restart.
        Raises Restarting while that one is not there or has not logged in (its session is
        opened by the login: a call through it before would break)."""
        client = self
        while client.is_closed() and client.successor is not None:
            client = client.successor
        if client.is_closed() or client.user is None:
            raise Restarting("no client is logged in: sdbot run is restarting it")
        return client

    async def _until_live(self) -> None:
        """Waits, ``restart_wait_s`` at most, while `sdbot run` restarts the client (it pauses
        before a new one, up to a minute after repeated failures), so that a result does not
        spend its tries on a closed session. A progress edit does not wait: it is skipped."""
        deadline = time.monotonic() + self.restart_wait_s
        while time.monotonic() < deadline:
            try:
                self._live()
            except Restarting:
                await asyncio.sleep(0.2)  # nothing to wait on: the successor is set from outside
            else:
                return
        log.warning("no client logged in after %.0f s; posting anyway", self.restart_wait_s)

    async def _follow(self, submitted: Submitted, title: str, status: Status) -> ImagineOutcome:
        job_id, options = submitted.job.job_id, submitted.job.request.options
        last_edit = 0.0

        async def show(text: str, *, force: bool = False) -> None:
            """Best effort: a failed edit is skipped, a message that is gone is left alone."""
            nonlocal last_edit
            now = time.monotonic()
            if not status.editable() or (not force and now - last_edit < self.edit_every_s):
                return
            last_edit = now
            try:  # a stalled edit must not hold up the job's events for long
                await asyncio.wait_for(
                    self._edit_status(status, f"{title}\n{text}"), self.request_timeout_s
                )
            except Gone as error:
                log.info("stopped live updates ◆ job %d ◆ %s", job_id, error)
                status.message_id = None
            except DISCORD_ERRORS as error:
                if is_gone(error):
                    log.info("stopped live updates ◆ job %d ◆ %s", job_id, describe(error))
                    status.message_id, status.interaction = None, None
                else:
                    log.info("skipped a live update ◆ job %d ◆ %s", job_id, describe(error))

        async def on_queued(place: Queued) -> None:
            ahead = "next in line" if place.ahead == 0 else f"{place.ahead} ahead"
            await show(f"queued: {ahead}{_eta(place.eta_s)}")

        async def on_progress(progress: Progress) -> None:
            await show(progress_text(progress, options), force=progress.step == 1)

        return await self.service.follow(
            submitted.job,
            submitted.handle,
            submitted.verdict,
            submitted.channel_nsfw,
            on_progress=on_progress,
            on_queued=on_queued,
            started=submitted.started,
        )

    def _final(
        self, outcome: ImagineOutcome, title: str, options: GenerationOptions
    ) -> tuple[str, discord.File | None]:
        """The text and the picture file of a finished job."""
        if outcome.status is JobStatus.CANCELLED:
            return f"{title}\n❌ {outcome.error or 'cancelled'}", None
        if outcome.status is not JobStatus.SUCCEEDED:
            return f"{title}\n❌ {outcome.status.value}: {outcome.error or 'no images'}", None
        seeds = ", ".join(str(seed) for seed in outcome.seeds)
        lines = [
            title,
            f"seed{'s' if len(outcome.seeds) > 1 else ''} {seeds} · {chosen(options)} · "
            f"{self.service.model_label}",
        ]
        withheld = [image for image in outcome.images if image.withheld]
        if withheld:
            lines.append(
                "withheld: "
                + "; ".join(f"#{image.variant} ({quoted(image.reason, 200)})" for image in withheld)
            )
        grid = outcome.grid
        if grid is None or grid.png is None:  # a one-picture job whose picture was withheld
            return "\n".join(lines), None
        if grid.spoiler:
            lines.append(f"spoilered: {quoted(grid.reason, 200)}")
        name = f"{'SPOILER_' if grid.spoiler else ''}sdbot-{outcome.job_id}.png"
        return "\n".join(lines), discord.File(io.BytesIO(grid.png), filename=name)

    def _details(self, record: JobRecord) -> str:
        """/job's text: what a job was asked to draw, how, by whom, and how it ended."""
        lines = [_title(record)]
        when = discord.utils.format_dt(record.created_at, "f")
        took = f" in {record.total_ms / 1000:.1f} s" if record.total_ms else ""
        by = f"<@{record.user_id}>" if record.user_id else "the command line"
        lines.append(f"by {by} · {when} · {record.status.value}{took}")
        if record.error:
            lines.append(f"reason: {quoted(record.error)}")
        if record.negative_prompt:
            lines.append(f"negative: {quoted(record.negative_prompt)}")
        seeds = ", ".join(str(seed) for seed in record.seeds)
        lines.append(
            f"{record.width}×{record.height} · {record.steps} steps · guidance "
            f"{record.guidance_scale:g} · sampler {record.scheduler} · seeds {seeds} · "
            f"{self.service.model_label}"
        )
        withheld = [i for i in record.images if i.disposition == Disposition.WITHHELD]
        if withheld:
            lines.append("withheld: " + ", ".join(f"#{i.variant}" for i in withheld))
        return "\n".join(lines)

    @staticmethod
    def _stored_post(record: JobRecord, channel_nsfw: bool) -> tuple[tuple[Path, str] | None, str]:
        """The job's posted picture in the output folder and its file name, or why it cannot be
        posted here."""
        if record.status is not JobStatus.SUCCEEDED:
            return None, ""
        posted = [i for i in record.images if i.variant == 0] or [
            i for i in record.images if i.disposition != Disposition.WITHHELD
        ]
        if not posted:
            return None, "its picture was withheld"
        image = posted[0]
        spoilered = image.disposition == Disposition.SPOILER
        if spoilered and not channel_nsfw:
            return None, "its picture is shown only in age-restricted channels"
        if image.path is None or not Path(image.path).is_file():
            return None, "its picture is no longer stored"
        spoiler = "SPOILER_" if spoilered else ""
        return (Path(image.path), f"{spoiler}sdbot-{record.id}.png"), ""

    async def _controls(
        self, message: discord.Message, record: JobRecord, *, reactions: bool = True
    ) -> None:
        """Links the post to its job (for the controls, and for /mod purge) and adds the
        controls under a picture; a post without one (failed, cancelled) gets ❌ alone."""
        await self.service.audit.link_message(
            message.id,
            record.id,
            channel_id=message.channel.id,
            guild_id=record.guild_id,
            variant=record.parent_variant if record.kind == JobKind.UPSCALE.value else None,
        )
        if not reactions or record.kind == JobKind.UPSCALE.value:
            emoji: tuple[str, ...] = (DELETE,)
        else:
            emoji = CONTROLS
        for control in emoji:
            try:
                await message.add_reaction(control)
            except DISCORD_ERRORS as error:  # no permission to react: the post stands
                log.warning("could not add controls ◆ job %d ◆ %s", record.id, describe(error))
                break

    async def _to_channel(
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
        channel = self._live().get_partial_messageable(channel_id, guild_id=guild_id)
        mention = f"<@{user_id}> " if user_id is not None else ""
        return await channel.send(
            capped(f"{mention}{content}"),
            file=file if file is not None else discord.utils.MISSING,
            allowed_mentions=discord.AllowedMentions(
                users=[discord.Object(user_id)] if user_id is not None else False
            ),
        )


async def _private(interaction: discord.Interaction, text: str) -> None:
    """An answer for the member alone, within Discord's limits (a follow-up once deferred)."""
    if interaction.response.is_done():
        await interaction.followup.send(capped(text), ephemeral=True, allowed_mentions=NO_PINGS)
    else:
        await interaction.response.send_message(
            capped(text), ephemeral=True, allowed_mentions=NO_PINGS
        )


def _parent_id(channel: object) -> int | None:
    """The channel a thread is in (None for anything else): where a guild's channel list
    allows a channel, it allows its threads."""
    parent = getattr(channel, "parent_id", None)
    return parent if isinstance(channel, discord.Thread) and isinstance(parent, int) else None


def _refusal(outcome: ImagineOutcome) -> str:
    if outcome.status is JobStatus.BLOCKED:
        # The reasons quote list entries and patterns: shown as written, never as markdown.
        return "🚫 This prompt was not accepted: " + "; ".join(
            quoted(reason, 200) for reason in outcome.verdict.reasons
        )
    return _refused(outcome.refusal or Refusal.RATE, outcome.error or "refused")


_REFUSAL_MARKS = {
    Refusal.RATE: "⏳",
    Refusal.BANNED: "⛔",
    Refusal.PAUSED: "⏸️",
    Refusal.CHANNEL: "📍",
    Refusal.DIRECT: "✉️",
}


def _refused(refusal: Refusal, reason: str) -> str:
    return f"{_REFUSAL_MARKS[refusal]} {reason}"
