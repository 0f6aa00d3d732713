"""The moderation package's exception family."""

from __future__ import annotations


class ModerationError(Exception):
    """Base of every error raised by ``moderation``."""


class WatermarkError(ModerationError):
    """An image cannot carry or yield a watermark."""
