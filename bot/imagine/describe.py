"""/describe: a picture in, prompts out. The picture is moderated as every picture given in
(read safely, NSFW-checked, its watermark traced) and recorded as a job of kind ``describe``
with its hash; nothing is drawn.

The model chosen decides the reading: the embedded model's pictures are read by its scene
analyser (exact prompts in its own words); any other model's by the captioning model
SDBOT_CAPTION_MODEL names (BLIP), loaded once, on first use, in a thread. The member's gate
(a ban, a pause, the channels), the server's models and the image policy apply as to /imagine:
a refused picture is recorded too, with its hash and score.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bot.imagine.inputs import Given, InputChecker
from bot.imagine.outcomes import Refusal
from bot.imagine.types import Attachment, Requester
from common.metrics import REFUSALS
from generation.catalog import Catalog
from generation.describe import Captioner, NoShapeFound, describe_embedded, draws_scenes
from generation.errors import InvalidOption
from moderation.prompts import PromptVerdict
from storage.models import JobKind, JobStatus, Verdict
from storage.records import NewJob
from storage.repositories import Storage

if TYPE_CHECKING:
    from bot.imagine.admission import Admission
    from generation.catalog_files import ModelEntry

log = logging.getLogger(__name__)

# A picture is no prompt: nothing for the prompt rules to read, nothing forced safe.
_NO_PROMPT = PromptVerdict(True, (), False, ())


@dataclass(frozen=True)
class Described:
    """What /describe answers: the prompts (best first), or why the picture was refused."""

    job_id: int
    prompts: tuple[str, ...]
    sha256: str
    parent_job_id: int | None = None  # a picture sdbot made: the job that made it
    refusal: Refusal | None = None
    error: str | None = None
    model: str = ""  # the catalog's name of the model the prompts are for
    nsfw_score: float | None = None


class Describer:
    """Reads pictures for /describe and ``sdbot describe``. ``admission`` gives the guild's
    settings, the gate and the image policy exactly as a request to draw gets them;
    ``caption_model`` is SDBOT_CAPTION_MODEL (None: only the embedded model is described)."""

    def __init__(
        self,
        storage: Storage,
        checker: InputChecker,
        catalog: Catalog,
        *,
        admission: Admission,
        caption_model: Path | None = None,
        device: str = "cpu",
    ) -> None:
        self.storage = storage
        self.checker = checker
        self.catalog = catalog
        self.admission = admission
        self.caption_model = caption_model
        self.device = device
        self._captioner: Captioner | None = None
        self._loading = asyncio.Lock()

    def reader_refusal(self, entry: ModelEntry) -> InvalidOption | None:
        """Why pictures cannot be described for ``entry`` here (None: they can)."""
        if draws_scenes(entry) or self.caption_model is not None:
            return None
        return InvalidOption(
            "model",
            entry.name,
            "the embedded model, or any model once SDBOT_CAPTION_MODEL names a captioning "
            "model (BLIP) folder",
        )

    async def describe(
        self, picture: Attachment, requester: Requester, *, model: str | None = None
    ) -> Described:
        """Prompts for ``picture`` for ``model`` (the default: the guild's, as for /imagine).
        Raises InvalidOption for a file that is no usable picture, or a model nothing here can
        describe for (before any record)."""
        # 1. The model and its reader: fail before the picture is read.
        here = await self.admission.limits_here(requester.guild_id)
        entry = self.catalog.model(model or here.default_model(requester.channel_nsfw))
        refusal = self.reader_refusal(entry)
        if refusal is not None:
            raise refusal
        # 2. The picture, read safely, scored and traced (InvalidOption: nothing recorded).
        given = await self.checker.check(picture, "image")
        new = self._new_job(requester, entry.name, given, "")
        # 3. The moderators, the server's models, the image policy: refused ones are recorded.
        gate = await self.admission.gate.check(requester, here.settings)
        if gate is not None:
            return await self._refuse(new, given, *gate)
        refused = here.choice_refusal(entry.name, (), requester.channel_nsfw)
        if refused is not None:
            return await self._refuse(new, given, Refusal.MODEL, refused)
        policy = self.admission.policy_for(here.settings, requester.channel_nsfw, _NO_PROMPT)
        refused = InputChecker.refusal(given, policy)
        if refused is not None:
            return await self._refuse(new, given, Refusal.INPUT, refused)
        # 4. The reading, then its record (prompt: the best reading).
        try:
            prompts = await self._read(entry, given)
        except NoShapeFound as error:
            job_id = await self._record(new, given, JobStatus.FAILED, str(error))
            return self._described(job_id, (), given, entry.name, error=str(error))
        new = self._new_job(requester, entry.name, given, prompts[0] if prompts else "")
        job_id = await self._record(new, given, JobStatus.SUCCEEDED, None)
        log.info("described ◆ job %d ◆ %d prompts ◆ %s", job_id, len(prompts), entry.name)
        return self._described(job_id, prompts, given, entry.name)

    async def _read(self, entry: ModelEntry, given: Given) -> tuple[str, ...]:
        rgb = given.picture.rgb
        if draws_scenes(entry):
            return await asyncio.to_thread(describe_embedded, rgb)
        captioner = await self._captioner_loaded()
        return await asyncio.to_thread(captioner.captions, rgb)

    async def _captioner_loaded(self) -> Captioner:
        """The captioning model, loaded once (the first /describe waits for it)."""
        async with self._loading:
            if self._captioner is None:
                assert self.caption_model is not None
                folder, device = self.caption_model, self.device
                self._captioner = await asyncio.to_thread(Captioner, folder, device=device)
            return self._captioner

    def _new_job(self, requester: Requester, model: str, given: Given, prompt: str) -> NewJob:
        """A describe job's record: nothing is drawn, so no steps, seeds or variants; its size
        is the picture's."""
        return NewJob(
            source=requester.source,
            prompt=prompt,
            negative_prompt="",
            steps=0,
            guidance_scale=0.0,
            width=given.picture.width,
            height=given.picture.height,
            variants=0,
            scheduler="",
            model=model,
            seeds=(),
            verdict=Verdict.ALLOWED,
            kind=JobKind.DESCRIBE,
            guild_id=requester.guild_id,
            channel_id=requester.channel_id,
            user_id=requester.user_id,
            channel_nsfw=requester.channel_nsfw,
        )

    async def _record(self, new: NewJob, given: Given, status: JobStatus, error: str | None) -> int:
        # The picture's hash, score and parent are kept, not its pixels: nothing is drawn
        # from it, and a picture read is kept no longer than its answer is shown.
        audit = self.storage.audit
        # Recorded finished: never an open job a restart would queue.
        return await audit.create_job(new, inputs=[given.record(b"")], finished=status, error=error)

    async def _refuse(self, new: NewJob, given: Given, refusal: Refusal, reason: str) -> Described:
        job_id = await self.storage.audit.create_job(
            new, refused=reason, inputs=[given.record(b"")]
        )
        REFUSALS.labels(refusal.value).inc()
        log.info("refused ◆ job %d ◆ describe ◆ %s", job_id, reason)
        return self._described(job_id, (), given, new.model, refusal=refusal, error=reason)

    @staticmethod
    def _described(
        job_id: int,
        prompts: tuple[str, ...],
        given: Given,
        model: str,
        *,
        refusal: Refusal | None = None,
        error: str | None = None,
    ) -> Described:
        return Described(
            job_id,
            prompts,
            given.picture.sha256,
            given.parent_job_id,
            refusal,
            error,
            model,
            given.nsfw_score,
        )
