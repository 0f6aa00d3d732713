"""`/mod blocklist ...` and `/mod allowlist ...`: this server's own list entries."""

from __future__ import annotations

import discord
from discord import app_commands

from bot.discord.mod.group import ModGroup, ModSubgroup
from bot.discord.mod.text import entry, guild_of, say, when
from bot.discord.text import code, fit, plural
from bot.guild_admin import expiry
from storage.models import TermKind


def add_commands(mod: ModGroup) -> None:
    add_list(mod, TermKind.BLOCK, "blocklist", "Words and patterns that block a prompt here")
    add_list(
        mod,
        TermKind.ALLOW,
        "allowlist",
        "Words a shipped list blocks that this server allows (never the rule on minors)",
    )


def add_list(mod: ModGroup, kind: TermKind, name: str, what: str) -> None:
    """One list's group: add, remove, list."""
    admin = mod.admin
    group = ModSubgroup(name=name, description=what, parent=mod)
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
        expires_at = expiry(duration)
        added = await admin.add_term(
            guild_of(interaction),
            interaction.user.id,
            kind,
            term,
            is_regex=regex,
            expires_at=expires_at,
        )
        shown = entry(term, regex)
        ends = "" if expires_at is None else f" until {when(expires_at)}"
        if added:
            await say(interaction, f"✅ {shown} added to {label}{ends}")
        else:
            await say(interaction, f"✅ {shown} was on {label} already; expiry set{ends}")

    @group.command(name="remove", description=f"Remove an entry from {label}")
    @app_commands.describe(term="the entry as listed")
    async def remove(
        interaction: discord.Interaction, term: app_commands.Range[str, 1, 200]
    ) -> None:
        guild_id = guild_of(interaction)
        if len(term) > 2 and term.startswith("/") and term.endswith("/"):
            term = term[1:-1]  # a pattern as `list` shows it
        if await admin.remove_term(guild_id, interaction.user.id, kind, term):
            await say(interaction, f"✅ {code(term)} removed from {label}")
            return
        _, shared = await admin.terms(guild_id, kind)
        hint = " (the bot's operator sets the global entries)" if shared else ""
        await say(interaction, f"⚠️ {code(term)} is not on {label}{hint}")

    @group.command(name="list", description=f"The entries on {label}")
    async def listing(interaction: discord.Interaction) -> None:
        own, shared = await admin.terms(guild_of(interaction), kind)
        lines = [f"**{label}: {len(own)} {'entry' if len(own) == 1 else 'entries'}**"]
        for item in own:
            ends = "" if item.expires_at is None else f" · until {when(item.expires_at)}"
            lines.append(f"- {entry(item.term, item.is_regex)}{ends}")
        if shared:
            entries = plural(shared, "global entry", "global entries")
            lines.append(f"and {entries} set by the bot's operator")
        if kind is TermKind.BLOCK:
            lines.append("(the lists sdbot ships with apply too)")
        await say(interaction, fit(lines, "… and {left} more"))
