"""Pictures in, moderated before they are used: each file given is read safely
(``generation.inputs``), scored by the NSFW check, and its watermark read (a picture sdbot made
links the new job to the record of the one that made it). A flagged picture is refused where
the image policy would withhold it; every picture's hash goes into the audit log."""

from __future__ import annotations

from dataclasses import dataclass

from bot.imagine.types import Attachment
from generation.inputs import Picture
from moderation.policy import ImagePolicy
from storage.records import NewInput
from storage.repositories import Storage


@dataclass(frozen=True)
class Given:
    """A picture given in, read and checked."""

    role: str  # image, mask, control
    picture: Picture
    nsfw_score: float | None  # None for a mask (not a picture of anything)
    watermark_id: int | None  # an sdbot watermark read from it
    parent_job_id: int | None  # the job that made it, when the watermark names one we have

    def record(self, prepared: bytes) -> NewInput:
        """Its row in ``job_inputs``; ``prepared`` is the PNG the worker gets."""
        raise NotImplementedError


class InputChecker:
    """Reads, scores and traces the pictures members give; one open_nsfw session, built on
    first use and run in a thread (the event loop never waits on it)."""

    def __init__(self, storage: Storage, *, max_bytes: int, max_pixels: int) -> None:
        raise NotImplementedError

    async def check(self, attachment: Attachment, role: str = "image") -> Given:
        """``attachment`` read (InvalidOption naming ``role`` and the file for a bad one),
        scored and traced."""
        raise NotImplementedError

    @staticmethod
    def refusal(given: Given, policy: ImagePolicy) -> str | None:
        """Why ``given`` may not be used under ``policy`` (it would be withheld as an output
        here), with its score; None when it may."""
        raise NotImplementedError
