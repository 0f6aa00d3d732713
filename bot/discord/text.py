"""How text is shown on Discord: member text never as markdown or a ping, every message within
Discord's limits."""

from __future__ import annotations

import re

import discord

NO_PINGS = discord.AllowedMentions.none()
MESSAGE_LIMIT = 2000  # characters in a Discord message's content
ELLIPSIS = "…"
# Mentions, channel links, role mentions, timestamps and custom emoji: cut, they show as garbage.
_TOKEN = re.compile(r"<(?:@[!&]?\d+|#\d+|t:-?\d+(?::[tTdDfFR])?|a?:\w+:\d+)>")
_MARKERS = ("**", "||", "~~", "*", "`")  # longest first: ** before *


def capped(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """``text`` within ``limit`` characters: as it is when it fits, else cut with an ellipsis at
    a place that breaks nothing. Never between a backslash and what it escapes, never inside a
    mention, a channel link or a timestamp; bold, italics, spoilers, strike-through and a code
    span that the cut leaves open are closed again after the ellipsis."""
    if len(text) <= limit:
        return text
    if limit <= len(ELLIPSIS):
        return ELLIPSIS[:limit]
    end = limit - len(ELLIPSIS)
    while end > 0:
        end = _safe_end(text, end)
        closers = "".join(reversed(_open_markers(text[:end])))
        if end + len(ELLIPSIS) + len(closers) <= limit:
            return text[:end] + ELLIPSIS + closers
        end -= 1
    return ELLIPSIS


def _safe_end(text: str, end: int) -> int:
    """The largest cut at or before ``end`` that splits no escape and no mention."""
    for token in _TOKEN.finditer(text, max(0, end - 40), min(len(text), end + 40)):
        if token.start() < end < token.end():
            end = token.start()
    backslashes = len(text[:end]) - len(text[:end].rstrip("\\"))
    if backslashes % 2:  # the last backslash escapes the character after the cut
        end -= 1
    return end


def _open_markers(text: str) -> list[str]:
    """The formatting markers ``text`` leaves open, in the order they were opened."""
    opened: list[str] = []
    index = 0
    while index < len(text):
        in_code = bool(opened) and opened[-1] == "`"
        if text[index] == "\\" and not in_code:
            index += 2  # an escaped character formats nothing
            continue
        marker = next((m for m in _MARKERS if text.startswith(m, index)), None)
        if marker is None or (in_code and marker != "`"):
            index += 1
            continue
        if marker in opened:
            del opened[opened.index(marker) :]
        else:
            opened.append(marker)
        index += len(marker)
    return opened


def quoted(prompt: str, limit: int = 300) -> str:
    """Member text as it is shown: markdown and mentions neutralised, cut to ``limit``."""
    return capped(discord.utils.escape_mentions(discord.utils.escape_markdown(prompt)), limit)


def code(text: str, limit: int = 200) -> str:
    """``text`` in a code span (a list entry, a pattern): shown exactly, never formatted."""
    text = text.replace("`", "ˋ")
    return f"`{text if len(text) <= limit else text[: limit - 1] + ELLIPSIS}`"


def plural(count: int, noun: str, nouns: str = "") -> str:
    """``1 job``, ``2 jobs`` (``nouns`` for an irregular plural: ``1 entry``, ``2 entries``)."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"


def fit(lines: list[str], more: str = "", limit: int = MESSAGE_LIMIT, line_limit: int = 900) -> str:
    """As many lines as one message holds, each cut to ``line_limit``; ``more`` (formatted with
    how many were left out) ends a message that could not hold them all."""
    lines = [capped(line, line_limit) for line in lines]
    out: list[str] = []
    used = 0
    for index, line in enumerate(lines):
        last = index == len(lines) - 1
        tail = more.format(left=len(lines) - index) if more and not last else ""
        if used + len(line) + 1 + len(tail) + 1 > limit:
            out.append(more.format(left=len(lines) - index) if more else ELLIPSIS)
            break
        out.append(line)
        used += len(line) + 1
    return "\n".join(out)


def channel_nsfw(channel: object) -> bool:
    """Whether pictures for age-restricted channels may be shown there: the channel's flag; a
    thread has none of its own and takes its parent channel's (parent unknown: no)."""
    is_nsfw = getattr(channel, "is_nsfw", None)
    return bool(is_nsfw()) if callable(is_nsfw) else False
