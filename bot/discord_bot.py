"""The Discord bot: `/imagine` through the same moderated path as the CLI.

A request is checked, recorded and queued before the bot answers, which takes milliseconds:
a blocked prompt, a bad option or a rate limit gets an ephemeral reply with the reason; an
accepted one a public "queued" message that then shows its place, its progress (edited at most
every ``edit_every_s``), and finally the 2×2 grid with the controls. When the interaction token
has expired (a long queue), the result goes to the channel as a new message that mentions the
requester. Echoed prompts never ping anyone.
"""

from __future__ import annotations

import io
import logging
import time
from typing import Any

import discord
from discord import app_commands

from bot.service import ImagineOutcome, ImagineService, Requester, Submitted
from generation.errors import InvalidOption
from generation.options import SCHEDULERS, RequestedOptions
from generation.protocol import Progress
from generation.queue import Queued
from storage.models import JobStatus

log = logging.getLogger(__name__)

CONTROLS = ("1️⃣", "2️⃣", "3️⃣", "4️⃣", "🔄", "❌")
NO_PINGS = discord.AllowedMentions.none()
_TOKEN_GONE = {10015, 50027}  # unknown webhook, invalid webhook token (after 15 min)


def quoted(prompt: str, limit: int = 300) -> str:
    """A prompt as it is shown: markdown and mentions neutralised, cut to ``limit``."""
    text = discord.utils.escape_mentions(discord.utils.escape_markdown(prompt))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f" · about {seconds:.0f} s" if seconds < 90 else f" · about {seconds / 60:.0f} min"


class ImagineBot(discord.Client):
    def __init__(
        self,
        service: ImagineService,
        *,
        edit_every_s: float = 2.0,
        **options: Any,
    ) -> None:
        super().__init__(intents=discord.Intents.default(), allowed_mentions=NO_PINGS, **options)
        self.service = service
        self.edit_every_s = edit_every_s
        self.tree = app_commands.CommandTree(self)
        self._register()

    async def setup_hook(self) -> None:
        await self.tree.sync()

    async def on_ready(self) -> None:
        user = self.user
        log.info(
            "connected to Discord as %s (%s) ◆ %d guilds", user, user and user.id, len(self.guilds)
        )

    async def post_recovered(self, outcome: ImagineOutcome) -> None:
        """A job resumed after a restart: its result goes to its channel, for its member."""
        record = await self.service.audit.get_job(outcome.job_id)
        if record is None or record.channel_id is None or record.source != "discord":
            return
        title = f"**{quoted(outcome.prompt)}** · job {outcome.job_id} (resumed after a restart)"
        content, file = self._final(outcome, title)
        message = await self._to_channel(record.channel_id, record.user_id, content, file)
        if message is not None and file is not None:
            await self._controls(message, outcome.job_id, record.guild_id)

    def _register(self) -> None:
        @self.tree.command(name="imagine", description="Make a 2×2 grid of images from a prompt")
        @app_commands.describe(
            prompt="what to draw",
            negative="what not to draw",
            size="width and height in pixels, a multiple of 8 (default: the model's)",
            steps="denoising steps (more: slower, finer)",
            guidance="how closely to follow the prompt (cfg)",
            seed="the same seed and prompt make the same grid",
            sampler="the scheduler",
        )
        @app_commands.choices(
            sampler=[app_commands.Choice(name=name, value=name) for name in SCHEDULERS]
        )
        async def imagine(
            interaction: discord.Interaction,
            prompt: app_commands.Range[str, 1, 1000],
            negative: app_commands.Range[str, 0, 1000] = "",
            size: app_commands.Range[int, 64, 2048] | None = None,
            steps: app_commands.Range[int, 1, 500] | None = None,
            guidance: app_commands.Range[float, 0.0, 50.0] | None = None,
            seed: app_commands.Range[int, 0, 2**32 - 1] | None = None,
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

    async def run_imagine(
        self, interaction: discord.Interaction, requested: RequestedOptions
    ) -> None:
        channel = interaction.channel
        requester = Requester(
            source="discord",
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
            user_id=interaction.user.id,
            channel_nsfw=bool(getattr(channel, "nsfw", False)),
        )
        # Fast (rules, a record, a queue push): the answer goes out well inside Discord's 3 s.
        try:
            submitted = await self.service.submit(requested, requester)
        except InvalidOption as error:  # discord.py does not enforce ranges: we do
            await interaction.response.send_message(f"⚠️ {error}", ephemeral=True)
            return
        if isinstance(submitted, ImagineOutcome):
            await interaction.response.send_message(_refusal(submitted), ephemeral=True)
            return
        title = f"**{quoted(requested.prompt)}** · job {submitted.job.job_id}"
        await interaction.response.send_message(f"{title}\nqueued", allowed_mentions=NO_PINGS)
        outcome = await self._follow(interaction, submitted, title)
        await self._post(interaction, outcome, title)

    async def _follow(
        self, interaction: discord.Interaction, submitted: Submitted, title: str
    ) -> ImagineOutcome:
        last_edit = 0.0
        editable = True

        async def show(text: str, *, force: bool = False) -> None:
            nonlocal last_edit, editable
            now = time.monotonic()
            if not editable or (not force and now - last_edit < self.edit_every_s):
                return
            last_edit = now
            try:
                await interaction.edit_original_response(content=f"{title}\n{text}")
            except discord.HTTPException as error:  # an expired token: the result still posts
                log.info("stopped live updates ◆ job %d ◆ %s", submitted.job.job_id, error)
                editable = False

        async def on_queued(place: Queued) -> None:
            ahead = "next in line" if place.ahead == 0 else f"{place.ahead} ahead"
            await show(f"queued: {ahead}{_eta(place.eta_s)}")

        async def on_progress(progress: Progress) -> None:
            await show(
                f"drawing: step {progress.step}/{progress.total}",
                force=progress.step == 1,
            )

        return await self.service.follow(
            submitted.job,
            submitted.handle,
            submitted.verdict,
            getattr(interaction.channel, "nsfw", False) is True,
            on_progress=on_progress,
            on_queued=on_queued,
            started=submitted.started,
        )

    def _final(self, outcome: ImagineOutcome, title: str) -> tuple[str, discord.File | None]:
        """The text and the grid file of a finished job."""
        if outcome.status is not JobStatus.SUCCEEDED or outcome.grid is None:
            return f"{title}\n❌ {outcome.status.value}: {outcome.error or 'no images'}", None
        grid = outcome.grid
        assert grid.png is not None  # a grid is never withheld
        name = f"{'SPOILER_' if grid.spoiler else ''}sdbot-{outcome.job_id}.png"
        seeds = ", ".join(str(seed) for seed in outcome.seeds)
        lines = [title, f"seeds {seeds} · {self.service.model_label}"]
        withheld = [image for image in outcome.images if image.withheld]
        if withheld:
            lines.append(
                "withheld: " + "; ".join(f"#{image.variant} ({image.reason})" for image in withheld)
            )
        if grid.spoiler:
            lines.append(f"spoilered: {grid.reason}")
        return "\n".join(lines), discord.File(io.BytesIO(grid.png), filename=name)

    async def _post(
        self, interaction: discord.Interaction, outcome: ImagineOutcome, title: str
    ) -> None:
        content, file = self._final(outcome, title)
        message = await self._answer(interaction, content=content, file=file)
        if message is not None and file is not None:
            await self._controls(message, outcome.job_id, interaction.guild_id)

    async def _controls(self, message: discord.Message, job_id: int, guild_id: int | None) -> None:
        await self.service.audit.link_message(
            message.id, job_id, channel_id=message.channel.id, guild_id=guild_id
        )
        for emoji in CONTROLS:
            try:
                await message.add_reaction(emoji)
            except discord.HTTPException as error:  # no permission to react: the post stands
                log.warning("could not add controls ◆ job %d ◆ %s", job_id, error)
                break

    async def _answer(
        self,
        interaction: discord.Interaction,
        *,
        content: str,
        file: discord.File | None = None,
    ) -> discord.Message | None:
        """Edits the original response; after the token expired, a new channel message that
        mentions the requester (and only them)."""
        attachments = [file] if file is not None else []
        try:
            return await interaction.edit_original_response(
                content=content, attachments=attachments, allowed_mentions=NO_PINGS
            )
        except discord.HTTPException as error:
            if error.code not in _TOKEN_GONE and error.status != 401:
                raise
        if file is not None:
            file.reset()
        return await self._to_channel(interaction.channel_id, interaction.user.id, content, file)

    async def _to_channel(
        self,
        channel_id: int | None,
        user_id: int | None,
        content: str,
        file: discord.File | None,
    ) -> discord.Message | None:
        """A new message in the channel that mentions the member (and only them)."""
        if channel_id is None:
            return None
        try:
            channel = self.get_channel(channel_id) or await self.fetch_channel(channel_id)
        except discord.HTTPException as error:
            log.warning("cannot reach channel %s: %s", channel_id, error)
            return None
        if not isinstance(channel, discord.abc.Messageable):
            return None
        member = discord.Object(user_id) if user_id is not None else None
        mention = f"<@{user_id}> " if user_id is not None else ""
        return await channel.send(
            f"{mention}{content}",
            file=file if file is not None else discord.utils.MISSING,
            allowed_mentions=discord.AllowedMentions(users=[member] if member else False),
        )


def _refusal(outcome: ImagineOutcome) -> str:
    if outcome.status is JobStatus.BLOCKED:
        return "🚫 This prompt was not accepted: " + "; ".join(outcome.verdict.reasons)
    return f"⏳ {outcome.error}"
