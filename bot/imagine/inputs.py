"""Pictures in, moderated before they are used: each file given is read safely
(``generation.inputs``), scored by the NSFW check, and its watermark read (a picture sdbot made
links the new job to the record of the one that made it). A flagged picture is refused where
the image policy would withhold it; every picture's hash goes into the audit log.

A request's pictures are read (:meth:`InputChecker.read`) before its options are validated, for
a picture given without a size decides the job's (the model's size nearest its aspect), and
prepared (:func:`prepare`) once the size is known: fitted to it, a control picture turned into
its edges. A job made again from a recorded one (a reroll, an upscale) takes the pictures its
parent was prepared with (:func:`reused`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from bot.imagine.types import Attachment, PicturesIn
from generation import inputs
from generation.errors import InvalidOption
from generation.inputs import MaskArray, Picture
from generation.protocol import InputImages, split_watermark_id
from generation.starts import CONTROL_TYPES
from moderation.policy import ImagePolicy, NsfwPolicy, decide
from moderation.safety import OpenNSFWChecker, SafetyResult
from moderation.watermark import decode
from storage.records import InputRecord, NewInput
from storage.repositories import Storage

ROLE_WORDS = {"image": "the picture", "control": "the control picture", "mask": "the mask"}


@dataclass(frozen=True)
class Given:
    """A picture given in, read and checked."""

    role: str  # image, mask, control
    picture: Picture
    nsfw_score: float | None  # None for a mask (not a picture of anything)
    watermark_id: int | None  # an sdbot watermark read from it
    parent_job_id: int | None  # the job that made it, when the watermark names one we have
    mask: MaskArray | None = field(default=None, compare=False)  # a mask's white = redraw

    def record(self, prepared: bytes) -> NewInput:
        """Its row in ``job_inputs``; ``prepared`` is the PNG the worker gets."""
        return NewInput(
            role=self.role,
            sha256=self.picture.sha256,
            format=self.picture.format,
            size_bytes=self.picture.size_bytes,
            width=self.picture.width,
            height=self.picture.height,
            png=prepared,
            nsfw_score=self.nsfw_score,
            watermark_id=self.watermark_id,
            parent_job_id=self.parent_job_id,
        )


@dataclass(frozen=True)
class Prepared:
    """A request's pictures ready for the worker (``images``, at the job's width × height) and
    what the audit log keeps of them (``rows``, with their scores and hashes)."""

    images: InputImages
    rows: tuple[NewInput, ...]

    def refusal(self, policy: ImagePolicy) -> str | None:
        """Why one of them may not be used under ``policy``; None when all may."""
        for row in self.rows:
            why = score_refusal(row.role, row.nsfw_score, policy)
            if why is not None:
                return why
        return None

    def without_pixels(self) -> tuple[NewInput, ...]:
        """The rows of a refused request: hashes and scores, not the pictures (a flagged
        picture is kept no more than a withheld output is)."""
        return tuple(dataclasses.replace(row, png=b"") for row in self.rows)


def score_refusal(role: str, score: float | None, policy: ImagePolicy) -> str | None:
    """Why a picture with this open_nsfw ``score`` may not be used under ``policy`` (it would
    be withheld as an output here), naming the score and the threshold; None when it may."""
    if score is None:
        return None
    decision = decide(SafetyResult(score), policy)
    if not decision.withheld:
        return None
    where = (
        "this server never shows flagged pictures"
        if policy.channel_nsfw and policy.nsfw_policy is NsfwPolicy.BLOCK
        else "this channel is not age-restricted"
    )
    return (
        f"{ROLE_WORDS.get(role, 'the picture')} you gave scored NSFW {score:.2f} "
        f"(at or above {decision.threshold:.2f}) and {where}"
    )


@dataclass(frozen=True)
class Read:
    """A request's pictures as read and checked, before the job's size is known."""

    image: Given | None = None
    mask: Given | None = None
    control: Given | None = None

    @property
    def shape(self) -> Picture:
        """The picture whose aspect chooses the job's size: the image, else the control."""
        first = self.image or self.control
        assert first is not None, "a request's pictures have an image or a control"
        return first.picture


class InputChecker:
    """Reads, scores and traces the pictures members give; one open_nsfw session, built on
    first use and run in a thread (the event loop never waits on it)."""

    def __init__(self, storage: Storage, *, max_bytes: int, max_pixels: int) -> None:
        self.storage = storage
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self._nsfw: OpenNSFWChecker | None = None
        self._nsfw_lock = threading.Lock()  # two threads must not build two sessions

    def _read(self, attachment: Attachment, role: str) -> Picture:
        return inputs.read_picture(
            attachment.data,
            role,
            filename=attachment.filename,
            max_bytes=self.max_bytes,
            max_pixels=self.max_pixels,
        )

    def _read_and_score(
        self, attachment: Attachment, role: str
    ) -> tuple[Picture, float, int | None]:
        """The picture, open_nsfw's score and the watermark id (in a worker thread: decoding,
        scoring and reading the mark of a large picture take a while)."""
        picture = self._read(attachment, role)
        with self._nsfw_lock:  # built once; onnxruntime's sessions run in several threads
            if self._nsfw is None:
                self._nsfw = OpenNSFWChecker()
            checker = self._nsfw
        [score] = checker.scores([picture.rgb])
        return picture, score, decode(picture.rgb)

    def _read_mask(self, attachment: Attachment, image: Given) -> Given:
        picture = self._read(attachment, "mask")
        mask = inputs.read_mask(
            attachment.data, image.picture, "mask", filename=attachment.filename
        )
        return Given("mask", picture, None, None, None, mask)

    async def check(self, attachment: Attachment, role: str = "image") -> Given:
        """``attachment`` read (InvalidOption naming ``role`` and the file for a bad one),
        scored and traced."""
        picture, score, mark = await asyncio.to_thread(self._read_and_score, attachment, role)
        parent = None
        if mark is not None:
            job_id, _variant = split_watermark_id(mark)
            if await self.storage.audit.get_job(job_id) is not None:
                parent = job_id
        return Given(role, picture, score, mark, parent)

    async def check_mask(self, attachment: Attachment, image: Given) -> Given:
        """A mask for ``image``: read as safely as a picture, then as a mask of the image's own
        size (InvalidOption naming both sizes otherwise). Not scored: a mask shows nothing."""
        return await asyncio.to_thread(self._read_mask, attachment, image)

    async def read(self, pictures: PicturesIn, control: str | None) -> Read:
        """A request's pictures, each read and checked; ``control`` is the ControlNet kind the
        request names. InvalidOption, before anything is recorded, for a bad file or a
        combination that means nothing (a mask without an image, a control picture without
        its kind or a kind without its picture, a control with an image)."""
        if pictures.mask is not None and pictures.image is None:
            raise InvalidOption(
                "mask", pictures.mask.filename or "a mask", "given with an image: (what it masks)"
            )
        if pictures.control is None and control is not None:
            raise InvalidOption("control_type", control, "given with a control: picture")
        if pictures.control is not None and control is None:
            kinds = ", ".join(CONTROL_TYPES)
            raise InvalidOption("control_type", None, f"one of {kinds} with a control: picture")
        if pictures.control is not None and pictures.image is not None:
            raise InvalidOption(
                "control", pictures.control.filename or "a picture", "a prompt without image:"
            )
        image = None if pictures.image is None else await self.check(pictures.image, "image")
        mask = None
        if pictures.mask is not None:
            assert image is not None
            mask = await self.check_mask(pictures.mask, image)
        given_control = None
        if pictures.control is not None:
            given_control = await self.check(pictures.control, "control")
        return Read(image, mask, given_control)

    @staticmethod
    def refusal(given: Given, policy: ImagePolicy) -> str | None:
        """Why ``given`` may not be used under ``policy`` (it would be withheld as an output
        here), with its score; None when it may."""
        return score_refusal(given.role, given.nsfw_score, policy)


def prepare(read: Read, width: int, height: int) -> Prepared:
    """The pictures at the job's size: the image fitted (cover, centre crop), the mask fitted
    with it, the control picture fitted and turned into its canny edges."""
    image = mask = control = None
    rows: list[NewInput] = []
    if read.image is not None:
        image = inputs.png_bytes(inputs.fit(read.image.picture.rgb, width, height))
        rows.append(read.image.record(image))
    if read.mask is not None:
        assert read.mask.mask is not None
        mask = inputs.png_bytes(inputs.fit_mask(read.mask.mask, width, height))
        rows.append(read.mask.record(mask))
    if read.control is not None:
        edges = inputs.canny(inputs.fit(read.control.picture.rgb, width, height))
        if not edges.any():  # an empty control would let the object go anywhere, unannounced
            raise InvalidOption(
                "control",
                f"a {read.control.picture.width}×{read.control.picture.height} picture "
                "without edges",
                f"a picture with outlines to follow (canny found none at {width}×{height})",
            )
        control = inputs.png_bytes(edges)
        rows.append(read.control.record(control))
    return Prepared(InputImages(image, mask, control), tuple(rows))


def reused(records: Sequence[InputRecord], images: InputImages) -> Prepared:
    """A recorded job's pictures for a job made again from it (a reroll, an upscale): the
    pictures its parent was prepared with, and rows that say what they were."""
    by_role = {"image": images.image, "mask": images.mask, "control": images.control}
    rows = tuple(
        NewInput(
            role=record.role,
            sha256=record.sha256,
            format=record.format,
            size_bytes=record.size_bytes,
            width=record.width,
            height=record.height,
            png=by_role.get(record.role) or b"",
            nsfw_score=record.nsfw_score,
            watermark_id=record.watermark_id,
            parent_job_id=record.parent_job_id,
        )
        for record in records
    )
    return Prepared(images, rows)
