"""A small client built only from discord.py, with a command for each kind of call the real bot
makes: the fake's own tests drive it (tests/test_fake_discord.py), and so does the load scenario
(``python -m fake_discord.load``), so that they pin down the fake itself and not bot/."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import aiohttp
import discord
from discord import app_commands
from PIL import Image


def png(side: int = 64, colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), colour).save(buffer, format="PNG")
    return buffer.getvalue()


class ProbeBot(discord.Client):
    """Commands that exercise each kind of call the real bot makes."""

    def __init__(self, **options: Any) -> None:
        options.setdefault("guild_ready_timeout", 0.05)
        super().__init__(intents=discord.Intents.default(), **options)
        self.tree = app_commands.CommandTree(self)
        self.errors: list[discord.HTTPException] = []
        self.broken: list[BaseException] = []  # what a connection fault or a timeout raised
        self.reactions: list[discord.RawReactionActionEvent] = []
        self.removed: list[discord.RawReactionActionEvent] = []
        tree = self.tree

        mod = app_commands.Group(
            name="mod",
            description="moderation",
            default_permissions=discord.Permissions(manage_guild=True),
        )

        @mod.command(description="a subcommand with a member option")
        async def ban(
            interaction: discord.Interaction,
            member: discord.Member,
            days: app_commands.Range[int, 1, 30] = 1,
            reason: str = "",
        ) -> None:
            roles = ",".join(role.name for role in member.roles[1:]) or "-"
            await interaction.response.send_message(
                f"banned {member.name} ({roles}) for {days}d: {reason}", ephemeral=True
            )

        tree.add_command(mod)

        @tree.command(description="what may the caller do here?")
        async def whoami(interaction: discord.Interaction) -> None:
            allowed = interaction.permissions
            nsfw = getattr(interaction.channel, "nsfw", None)
            await interaction.response.send_message(
                f"manage_guild={allowed.manage_guild} nsfw={nsfw}", ephemeral=True
            )

        @tree.command(description="defer, then answer in a followup")
        async def echo(interaction: discord.Interaction, text: str, times: int = 1) -> None:
            await interaction.response.defer(thinking=True)
            await interaction.followup.send(
                " ".join([text] * times), allowed_mentions=discord.AllowedMentions.none()
            )

        @tree.command(description="a picture with reactions under it")
        async def picture(interaction: discord.Interaction) -> None:
            await interaction.response.defer()
            message = await interaction.followup.send(
                "here", file=discord.File(io.BytesIO(png()), "grid.png"), wait=True
            )
            for emoji in ("1️⃣", "🔄", "❌"):
                await message.add_reaction(emoji)

        @tree.command(description="a member's picture, read from the CDN")
        async def look(
            interaction: discord.Interaction,
            picture: discord.Attachment,
            other: discord.Attachment | None = None,
        ) -> None:
            files = [a for a in (picture, other) if a is not None]
            said = []
            for attachment in files:
                data = await attachment.read()
                said.append(
                    f"{attachment.filename} {attachment.size} {len(data)} "
                    f"{attachment.content_type} {attachment.width}x{attachment.height} "
                    f"ephemeral={attachment.ephemeral}"
                )
            await interaction.response.send_message("\n".join(said), ephemeral=True)

        @tree.command(description="think in public, then answer in private")
        async def retract(interaction: discord.Interaction) -> None:
            await interaction.response.defer(thinking=True)
            await interaction.delete_original_response()
            await interaction.followup.send("only you, after all", ephemeral=True)

        @tree.command(description="an ephemeral answer")
        async def secret(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("only you", ephemeral=True)

        @tree.command(description="answers too late")
        async def late(interaction: discord.Interaction) -> None:
            await asyncio.sleep(3.3)
            await self._record(interaction.response.send_message("late"))

        @tree.command(description="a file over the limit")
        async def big(interaction: discord.Interaction, megabytes: int = 11) -> None:
            await interaction.response.defer()
            data = b"\0" * (megabytes * 1024 * 1024)
            await self._record(interaction.followup.send(file=discord.File(io.BytesIO(data), "x")))

        @tree.command(description="a long message")
        async def long(interaction: discord.Interaction, length: int) -> None:
            await self._record(interaction.response.send_message("x" * length))

        @tree.command(description="a channel message, not a response")
        async def say(interaction: discord.Interaction, text: str) -> None:
            await interaction.response.send_message("ok", ephemeral=True)
            assert interaction.channel is not None
            await self._record(interaction.channel.send(text))  # type: ignore[union-attr]

        @tree.command(description="a direct message")
        async def dm(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("check your DMs", ephemeral=True)
            await interaction.user.send("hello in private")

        @tree.command(description="edit, then delete the original response")
        async def churn(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("first")
            await interaction.edit_original_response(content="second")
            await interaction.delete_original_response()

        @tree.command(description="where is this?")
        async def where(interaction: discord.Interaction) -> None:
            channel = interaction.channel
            assert isinstance(channel, discord.Thread | discord.TextChannel)
            parent = channel.parent_id if isinstance(channel, discord.Thread) else None
            await interaction.response.send_message(
                f"{channel.type.name} parent={parent} nsfw={channel.is_nsfw()}", ephemeral=True
            )

        @tree.command(description="a channel message, then edits of it")
        async def burst(interaction: discord.Interaction, edits: int) -> None:
            await interaction.response.send_message("ok", ephemeral=True)
            assert isinstance(interaction.channel, discord.abc.Messageable)
            message = await interaction.channel.send("0")
            for n in range(1, edits + 1):
                await self._record(message.edit(content=str(n)))

        @tree.command(description="a channel message within a deadline of our own")
        async def post(interaction: discord.Interaction, text: str, deadline: float = 30.0) -> None:
            await interaction.response.send_message("ok", ephemeral=True)
            assert isinstance(interaction.channel, discord.abc.Messageable)
            try:
                await asyncio.wait_for(interaction.channel.send(text), deadline)
            except (aiohttp.ClientError, TimeoutError) as error:
                self.broken.append(error)

    async def _record(self, call: Any) -> None:
        try:
            await call
        except discord.HTTPException as error:
            self.errors.append(error)

    async def setup_hook(self) -> None:
        await self.tree.sync()

    async def on_raw_reaction_remove(self, payload: discord.RawReactionActionEvent) -> None:
        self.removed.append(payload)

    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        if self.user is None or payload.user_id == self.user.id:
            return
        self.reactions.append(payload)
        channel = self.get_partial_messageable(payload.channel_id)
        message = channel.get_partial_message(payload.message_id)
        if str(payload.emoji) == "❌":
            await message.delete()
        else:  # only the requester's controls count in the real bot; here: remove it
            await self._record(
                message.remove_reaction(payload.emoji, discord.Object(payload.user_id))
            )
