"""Helpers for tests that run sdbot as separate processes and read what they print."""

from __future__ import annotations

import asyncio
from pathlib import Path


def read_log(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


async def wait_for_line(path: Path, text: str, within: float = 120) -> None:
    """Until the process writing ``path`` has printed ``text``; fails with what it printed."""
    for _ in range(int(within * 10)):
        if text in await asyncio.to_thread(read_log, path):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{path.name} never said {text!r}:\n{read_log(path)}")
