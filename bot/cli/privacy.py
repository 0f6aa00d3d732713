"""`sdbot forget USER_ID` and `sdbot purge`: a member's data deleted, and retention applied now."""

from __future__ import annotations

from typing import Any


def register(commands: Any) -> None:
    """Being built (issue 19)."""
