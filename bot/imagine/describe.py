"""/describe: a picture in, prompts out. The picture is moderated as every picture given in
(read safely, NSFW-checked, its watermark traced) and recorded as a job of kind ``describe``
with its hash; nothing is drawn."""

from __future__ import annotations

from dataclasses import dataclass

from bot.imagine.inputs import InputChecker
from bot.imagine.outcomes import Refusal
from bot.imagine.types import Attachment, Requester
from generation.catalog import Catalog
from storage.repositories import Storage


@dataclass(frozen=True)
class Described:
    """What /describe answers: the prompts (best first), or why the picture was refused."""

    job_id: int
    prompts: tuple[str, ...]
    sha256: str
    parent_job_id: int | None = None  # a picture sdbot made: the job that made it
    refusal: Refusal | None = None
    error: str | None = None


class Describer:
    def __init__(self, storage: Storage, checker: InputChecker, catalog: Catalog) -> None:
        raise NotImplementedError

    async def describe(
        self, picture: Attachment, requester: Requester, *, model: str | None = None
    ) -> Described:
        """Prompts for ``picture`` for ``model`` (the default: the catalog's). Raises
        InvalidOption for a file that is no usable picture (before any record)."""
        raise NotImplementedError
