"""How text from members is shown back on Discord: never as markdown, never as a ping."""

from __future__ import annotations

import discord

NO_PINGS = discord.AllowedMentions.none()
MESSAGE_LIMIT = 2000  # characters in a Discord message


def quoted(prompt: str, limit: int = 300) -> str:
    """A prompt as it is shown: markdown and mentions neutralised, cut to ``limit``."""
    text = discord.utils.escape_mentions(discord.utils.escape_markdown(prompt))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def code(text: str, limit: int = 200) -> str:
    """``text`` in a code span (a list entry, a pattern): shown exactly, never formatted."""
    text = text.replace("`", "ˋ")
    return f"`{text if len(text) <= limit else text[: limit - 1] + '…'}`"


def fit(lines: list[str], more: str = "", limit: int = MESSAGE_LIMIT, line_limit: int = 900) -> str:
    """As many lines as one message holds, each cut to ``line_limit``; ``more`` (formatted with
    how many were left out) ends a message that could not hold them all."""
    lines = [line if len(line) <= line_limit else line[: line_limit - 1] + "…" for line in lines]
    out: list[str] = []
    used = 0
    for index, line in enumerate(lines):
        last = index == len(lines) - 1
        tail = more.format(left=len(lines) - index) if more and not last else ""
        if used + len(line) + 1 + len(tail) + 1 > limit:
            out.append(more.format(left=len(lines) - index) if more else "…")
            break
        out.append(line)
        used += len(line) + 1
    return "\n".join(out)
