"""`/mod settings`: show or change sdbot's settings on this server. Its options, their
descriptions and choices, the reset list and how values read come from the spec table
(``bot.guild_settings``); the rules (ranges, the bot's bounds, channels, the log channel) from
``GuildAdmin``."""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands

from bot.discord.mod.group import ModGroup
from bot.discord.mod.text import guild_of, say, when
from bot.discord.text import fit, quoted
from bot.guild_admin import ChannelEdit, GuildAdmin, requested_changes
from bot.guild_settings import BY_NAME, BY_OPTION, SPECS, Kind, Naming, render
from moderation.policy import GorePolicy, NsfwPolicy
from storage.guild_settings import GuildSettingsRecord

# The options that edit the one ``channels`` setting.
CHANNEL_OPTIONS = {
    "answer_in": "a channel to answer in (once any is set, only those)",
    "stop_answering_in": "a channel to stop answering in",
    "every_channel": "answer in every channel again",
}


def _choices(name: str) -> list[app_commands.Choice[str]]:
    return [app_commands.Choice(name=value, value=value) for value in BY_NAME[name].choices]


def add_commands(mod: ModGroup) -> None:
    admin = mod.admin
    described = {spec.option: spec.help for spec in SPECS if spec.kind is not Kind.CHANNELS}

    @mod.command(name="settings", description="Show or change sdbot's settings on this server")
    @app_commands.describe(
        **described,
        **CHANNEL_OPTIONS,
        reset="put one setting back to the bot's default",
        reason="why (recorded)",
    )
    @app_commands.choices(
        nsfw_policy=_choices("nsfw_policy"),
        gore_policy=_choices("gore_policy"),
        controls=_choices("controls"),
        vary=_choices("vary"),
        reset=[app_commands.Choice(name=spec.label, value=spec.name) for spec in SPECS],
    )
    async def settings(
        interaction: discord.Interaction,
        nsfw_policy: str | None = None,
        nsfw_threshold: app_commands.Range[float, 0.01, 1.0] | None = None,
        gore_policy: str | None = None,
        member_images_per_hour: app_commands.Range[float, 0.1, 100000.0] | None = None,
        server_images_per_hour: app_commands.Range[float, 0.1, 1000000.0] | None = None,
        jobs_per_member: app_commands.Range[int, 1, 100] | None = None,
        max_steps: app_commands.Range[int, 1, 500] | None = None,
        max_size: app_commands.Range[int, 64, 4096] | None = None,
        controls: str | None = None,
        vary: str | None = None,
        models: app_commands.Range[str, 1, 1000] | None = None,
        loras: app_commands.Range[str, 1, 1000] | None = None,
        answer_in: discord.TextChannel | None = None,
        stop_answering_in: discord.TextChannel | None = None,
        every_channel: bool | None = None,
        log_channel: discord.TextChannel | None = None,
        reset: str | None = None,
        reason: app_commands.Range[str, 0, 300] = "",
    ) -> None:
        guild_id = guild_of(interaction)
        given: dict[str, Any] = {
            "nsfw_policy": nsfw_policy,
            "nsfw_threshold": nsfw_threshold,
            "gore_policy": gore_policy,
            "member_images_per_hour": member_images_per_hour,
            "server_images_per_hour": server_images_per_hour,
            "jobs_per_member": jobs_per_member,
            "max_steps": max_steps,
            "max_size": max_size,
            "controls": controls,
            "vary": vary,
            "models": models,  # names separated by commas, or 'all' (the table reads them)
            "loras": loras,
            "log_channel": log_channel.id if log_channel else None,
        }
        before = await admin.settings(guild_id)
        channels = ChannelEdit(
            answer_in=answer_in.id if answer_in else None,
            stop_answering_in=stop_answering_in.id if stop_answering_in else None,
            every_channel=bool(every_channel),
        )
        changes = requested_changes(
            before,
            {BY_OPTION[option].name: value for option, value in given.items()},
            channels=channels,
            reset=reset,
        )
        if not changes:
            await say(interaction, settings_text(admin, before))
            return
        change = await admin.change_settings(
            guild_id,
            interaction.user.id,
            changes,
            reason,
            naming=Naming.OPTION,
            can_post=lambda channel_id: can_post(interaction, channel_id),
        )
        if change.changed:
            lines = [
                f"✅ {BY_NAME[name].option}: {render(name, old)} → {render(name, new)}"
                for name, (old, new) in change.changed.items()
            ]
        else:
            lines = ["nothing changed: those are the settings already"]
        lines += settings_text(admin, change.after).splitlines()
        await say(interaction, fit(lines))


def can_post(interaction: discord.Interaction, channel_id: int) -> bool:
    """Whether sdbot may view and send messages in a channel of the interaction's guild."""
    guild = interaction.guild
    channel = guild.get_channel(channel_id) if guild else None
    if guild is None or channel is None or guild.me is None:
        return False
    permissions = channel.permissions_for(guild.me)
    return permissions.view_channel and permissions.send_messages


def settings_text(admin: GuildAdmin, settings: GuildSettingsRecord) -> str:
    """What is in force on the server, each setting by its option's name."""
    here = admin.limits_for(settings)
    rates, options = here.rates, here.options

    def own(name: str) -> str:
        return "" if here.own(name) else " (the bot's default)"

    def called(name: str) -> str:
        return BY_NAME[name].option

    def offered(name: str, names: list[str]) -> str:
        """A list of names as set, or every one the bot offers when the server set none."""
        value = getattr(settings, name)
        every = f" ({', '.join(names)})" if value is None and names else ""
        return f"- {called(name)}: {render(name, value)}{every}"

    catalog = here.catalog

    nsfw = (
        "spoilered in age-restricted channels, withheld elsewhere"
        if NsfwPolicy(settings.nsfw_policy) is NsfwPolicy.SPOILER
        else "withheld everywhere"
    )
    gore = (
        "refused everywhere"
        if GorePolicy(settings.gore_policy) is GorePolicy.BLOCK
        else "drawn spoilered in age-restricted channels, refused elsewhere"
    )
    if settings.paused_at is not None:
        why = f": {quoted(settings.pause_reason)}" if settings.pause_reason else ""
        state = f"⏸️ paused since {when(settings.paused_at)}{why}"
    else:
        state = "running"
    return "\n".join(
        [
            "**sdbot on this server**",
            f"- generation: {state}",
            f"- {called('nsfw_policy')}: {settings.nsfw_policy.value} (flagged images are {nsfw})",
            f"- {called('nsfw_threshold')}: {here.nsfw_threshold:g}{own('nsfw_threshold')}",
            f"- {called('gore_policy')}: {settings.gore_policy.value} (gore prompts are {gore})",
            f"- {called('user_images_per_hour')}: {rates.user_units_per_hour:g} standard images"
            f"{own('user_images_per_hour')}",
            f"- {called('guild_images_per_hour')}: {rates.guild_units_per_hour:g} standard "
            f"images{own('guild_images_per_hour')}",
            f"- {called('max_jobs_per_user')}: {rates.max_jobs_per_user}{own('max_jobs_per_user')}",
            f"- {called('max_steps')}: {options.max_steps}{own('max_steps')}",
            f"- {called('max_side')}: {options.max_side} px{own('max_side')}",
            f"- {called('controls')}: {settings.controls.value} (who may upscale and reroll)",
            f"- {called('vary')}: {render('vary', settings.vary)} (how much ↖️ ↗️ ↙️ ↘️ redraw)",
            offered("allowed_models", [m.name for m in catalog.models] if catalog else []),
            offered("allowed_loras", [lora.name for lora in catalog.loras] if catalog else []),
            f"- {called('channels')}: {render('channels', settings.channels)}",
            f"- {called('audit_channel_id')}: "
            f"{render('audit_channel_id', settings.audit_channel_id)}",
        ]
    )
