"""How `/mod` reads: mentions, times, the lines of a ban, a history entry, a moderator's action
(``action_text`` is also what the log channel shows), and the one ephemeral answer."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import discord

from bot.discord.text import NO_PINGS, capped, code, plural, quoted
from bot.guild_admin import MOD_PERMISSION, HistoryEntry
from bot.guild_settings import option_name, render
from storage.bans import BanRecord
from storage.models import JobStatus, TermKind
from storage.moderation_log import ModerationActionRecord
from storage.records import JobRecord


async def say(interaction: discord.Interaction, text: str, **extra: Any) -> None:
    """The ephemeral answer within Discord's limits, or its followup once the command
    deferred (as every command that uploads files does first)."""
    text = capped(text)
    if interaction.response.is_done():
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_PINGS, **extra)
    else:
        await interaction.response.send_message(
            text, ephemeral=True, allowed_mentions=NO_PINGS, **extra
        )


def guild_of(interaction: discord.Interaction) -> int:
    assert interaction.guild_id is not None  # /mod's check saw to it
    return interaction.guild_id


def mention(user_id: int | None) -> str:
    return "the operator" if not user_id else f"<@{user_id}>"


def job_member(job: JobRecord) -> str:
    """Who asked for a job: a mention, or that the member had their data deleted."""
    if job.user_id is None and job.purged_at is not None:
        return "a member whose data was deleted"
    return mention(job.user_id)


def job_prompt(job: JobRecord, limit: int) -> str:
    """A job's prompt in quotes, or when and why it was purged (its record stays)."""
    if job.purged_at is not None:
        why = "at the member's request" if job.purge_reason == "forget" else "by retention"
        return f"(prompt purged {why}, {when(job.purged_at, 'd')})"
    return f"“{quoted(job.prompt, limit)}”"


def when(moment: datetime, style: Any = "f") -> str:
    return discord.utils.format_dt(moment, style)


def until(expires_at: datetime | None) -> str:
    return " permanently" if expires_at is None else f" until {when(expires_at)}"


def jobs_text(job_ids: tuple[int, ...], shown: int = 10) -> str:
    """``3 queued or running jobs: 4, 5, 9`` (``1 queued or running job: 4``), the ids cut
    after ``shown``."""
    ids = ", ".join(map(str, job_ids[:shown]))
    more = f" and {len(job_ids) - shown} more" if len(job_ids) > shown else ""
    return f"{plural(len(job_ids), 'queued or running job')}: {ids}{more}"


def recent(what: str, found: int, limit: int) -> str:
    """A section's heading: ``**blocked prompts**: none``, ``… the 5 most recent``."""
    if found == 0:
        return f"**{what}**: none"
    if found < limit:
        return f"**{what}**: {'the only one' if found == 1 else f'all {found}'}"
    return f"**{what}**: {'the most recent' if found == 1 else f'the {found} most recent'}"


def size(count: int) -> str:
    """A file's size in bytes, KiB or MiB."""
    if count < 2**10:
        return f"{count} bytes"
    return f"{count / 2**10:.0f} KiB" if count < 2**20 else f"{count / 2**20:.1f} MiB"


def entry(term: str, is_regex: bool) -> str:
    """A list entry as shown: a pattern between slashes, in code either way."""
    return code(f"/{term}/" if is_regex else term)


def ban_line(record: BanRecord) -> str:
    reason = f" · {quoted(record.reason, 150)}" if record.reason else ""
    return (
        f"- {mention(record.user_id)}{until(record.expires_at)} · by "
        f"{mention(record.banned_by)} {when(record.created_at, 'R')}{reason}"
    )


def history_line(item: HistoryEntry) -> str:
    moment = when(item.created_at, "f")
    if isinstance(item, JobRecord):
        why = f" ({quoted(item.error, 100)})" if item.error else ""
        if item.status is JobStatus.BLOCKED:
            why = f" ({quoted('; '.join(item.verdict_reasons), 100)})"
        return (
            f"- {moment} · job {item.id} · {job_member(item)} · {item.status.value}{why} · "
            f"{job_prompt(item, 100)}"
        )
    return f"- {moment} · {action_text(item)}"


def action_text(action: ModerationActionRecord) -> str:
    """A moderator's action in one line, as /mod history and the log channel show it."""
    actor = mention(action.actor_id)
    target = f" {mention(action.target_user_id)}" if action.target_user_id else ""
    details = action.details
    if action.action == "settings":
        what = "; ".join(
            f"{option_name(name)} {render(name, change.get('from'))} → "
            f"{render(name, change.get('to'))}"
            for name, change in details.items()
        )
        text = f"{actor} changed settings: {what}"
    elif action.action.endswith(("_term_add", "_term_remove")):
        kind, _, verb = action.action.partition("_term_")
        listed = "blocklist" if kind == TermKind.BLOCK.value else f"{kind} list"
        verb = "added" if verb == "add" else "removed"
        term = entry(str(details.get("term", "")), bool(details.get("regex")))
        text = f"{actor} {verb} {term} {'to' if verb == 'added' else 'from'} the {listed}"
    elif action.action == "denied":
        text = f"{actor} tried `/{details.get('command', 'mod')}` without {MOD_PERMISSION}"
    elif action.action == "ban":
        expires = details.get("expires_at")
        ends = " permanently" if not expires else f" until {when(datetime.fromisoformat(expires))}"
        text = f"{actor} banned{target}{ends}"
    elif action.action == "purge":
        text = f"{actor} deleted {plural(details.get('deleted', 0), 'post')} made for{target}"
    elif action.action == "forget":
        jobs, images = details.get("jobs", 0), details.get("images", 0)
        counts = f"{plural(jobs, 'prompt')}, {plural(images, 'image')}"
        whose = " their own" if action.actor_id == action.target_user_id else f"{target}'s"
        text = f"{actor} deleted{whose} prompts and images ({counts})"
    elif action.action == "export":
        text = f"{actor} exported the audit log ({plural(details.get('jobs', 0), 'prompt')})"
    else:
        done = {"unban": "unbanned", "pause": "paused generation", "resume": "resumed generation"}
        text = f"{actor} {done.get(action.action, action.action)}{target}"
    if details.get("cancelled_jobs"):
        text += f", cancelling {jobs_text(tuple(details['cancelled_jobs']))}"
    return text + (f" · {quoted(action.reason, 150)}" if action.reason else "")
