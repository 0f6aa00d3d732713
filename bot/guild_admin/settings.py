"""Changing a guild's settings: what `/mod settings`' options ask for, checked against the spec
table (``bot.guild_settings``) and the bot's own limits, stored and recorded from what to what."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.guild_admin.refusals import ChannelRefused, SettingsConflict
from bot.guild_settings import BY_NAME, option_name, plain
from storage.guild_settings import GuildSettingsRecord, GuildSettingsRepository
from storage.moderation_log import ModerationLog


@dataclass(frozen=True)
class ChannelEdit:
    """`/mod settings`' channel options: one channel in, one out, or every channel again."""

    answer_in: int | None = None
    stop_answering_in: int | None = None
    every_channel: bool = False

    def __bool__(self) -> bool:
        return bool(self.answer_in or self.stop_answering_in or self.every_channel)


NO_CHANNEL_EDIT = ChannelEdit()


@dataclass(frozen=True)
class SettingsChange:
    before: GuildSettingsRecord
    after: GuildSettingsRecord
    changed: dict[str, tuple[Any, Any]]  # name → (old, new); only what really changed


def requested_changes(
    before: GuildSettingsRecord,
    values: Mapping[str, Any],
    *,
    channels: ChannelEdit = NO_CHANNEL_EDIT,
    reset: str | None = None,
) -> dict[str, Any]:
    """`/mod settings`' options as changes: the values given (None: not given), the channel
    list edited, and one setting reset to the bot's default. Refuses taking away the last
    channel (that would open every channel), a channel sdbot was not limited to, and one
    setting both set and reset."""
    changes = {name: value for name, value in values.items() if value is not None}
    if channels:
        allowed = set() if channels.every_channel else set(before.channels or ())
        if channels.answer_in:
            allowed.add(channels.answer_in)
        out = channels.stop_answering_in
        if out:
            if out not in allowed:
                where = "every channel" if not allowed else "only its channels"
                raise ChannelRefused(
                    f"sdbot does not answer in <#{out}> by a channel setting (it answers in "
                    f"{where}); `answer_in` limits it to the channels you name"
                )
            allowed.discard(out)
            if not allowed:
                raise ChannelRefused(
                    f"<#{out}> is the only channel sdbot answers in; name another with "
                    "`answer_in` first, or stop generation with `/mod pause`"
                )
        changes["channels"] = sorted(allowed) or None
    if reset is not None:
        if reset in changes:
            raise SettingsConflict(f"`{option_name(reset)}` is both set and reset; choose one")
        changes[reset] = BY_NAME[reset].reset_to
    return changes


async def store_changes(
    settings: GuildSettingsRepository,
    moderation: ModerationLog,
    guild_id: int,
    actor_id: int,
    changes: Mapping[str, Any],
    reason: str,
) -> SettingsChange:
    """Writes checked changes and records what changed, from what to what."""
    before = await settings.get(guild_id)
    after = await settings.update(guild_id, **changes)
    changed = {
        name: (plain(getattr(before, name)), plain(getattr(after, name)))
        for name in changes
        if getattr(before, name) != getattr(after, name)
    }
    if changed:
        await moderation.record(
            guild_id=guild_id,
            actor_id=actor_id,
            action="settings",
            details={name: {"from": old, "to": new} for name, (old, new) in changed.items()},
            reason=reason,
        )
    return SettingsChange(before, after, changed)
