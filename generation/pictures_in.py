"""The worker's side of pictures in, without torch: what each image of a batch starts from
(its request's pictures decoded and checked, or a source drawn first), the steps an img2img or
inpaint runs, and an inpaint's kept region put back.

A request's pictures arrive prepared by the bot at the job's width × height
(:class:`generation.protocol.InputImages`); a vary or a zoom names a :class:`Source` instead,
which the runner draws first. A request whose start needs a picture it lacks is refused with
InvalidOption naming the picture, before anything is drawn.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageFilter

from generation.errors import InvalidOption
from generation.inputs import from_png, outpaint_canvas
from generation.protocol import WorkRequest
from generation.starts import STARTS, ZOOM_FACTOR

RGBArray = npt.NDArray[np.uint8]
MaskArray = npt.NDArray[np.uint8]
StepCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class RequestPictures:
    """One request's decoded pictures (None: not given): the start picture (or None when its
    ``source`` is drawn instead), the mask, the control picture."""

    image: RGBArray | None
    mask: MaskArray | None
    control: RGBArray | None


def _missing(request: WorkRequest, what: str, needs: str) -> InvalidOption:
    start = request.options.start
    return InvalidOption(what, None, f"given for a job that starts from {start} ({needs})")


def _decoded(request: WorkRequest, data: bytes | None, what: str, mode: str) -> RGBArray | None:
    """A picture of ``request``'s inputs decoded, at the job's size (else InvalidOption)."""
    if data is None:
        return None
    try:
        array = from_png(data, mode)
    except ValueError as error:
        raise InvalidOption(what, f"{len(data)} bytes", f"a {mode} PNG ({error})") from None
    options = request.options
    height, width = array.shape[:2]
    if (width, height) != (options.width, options.height):
        raise InvalidOption(
            what, f"{width}x{height}", f"the job's size, {options.width}x{options.height}"
        )
    return array


def request_pictures(request: WorkRequest) -> RequestPictures:
    """``request``'s pictures, decoded and checked against its start: an image start needs a
    picture or a source, an inpaint a picture and a mask, a zoom out a source (or a picture),
    a control its control picture; InvalidOption names what is missing or wrong."""
    options = request.options
    inputs = request.inputs
    if options.start not in STARTS:
        raise InvalidOption("start", options.start, "one of " + ", ".join(STARTS))
    image = _decoded(request, inputs.image if inputs else None, "image", "RGB")
    mask = _decoded(request, inputs.mask if inputs else None, "mask", "L")
    control = _decoded(request, inputs.control if inputs else None, "control", "RGB")
    start = options.start
    if start == "image" and image is None and options.source is None:
        raise _missing(request, "image", "a picture or the source it is drawn from")
    if start == "inpaint" and (image is None or mask is None):
        raise _missing(request, "mask" if image is not None else "image", "a picture and a mask")
    if start == "outpaint" and image is None and options.source is None:
        raise _missing(request, "image", "the source picture it zooms out of")
    if image is not None and options.source is not None:
        raise InvalidOption("image", "a picture and a source", "one of them, not both")
    if options.control is not None:
        if start != "text":
            raise InvalidOption("control", options.control, "a prompt without image:")
        if control is None:
            raise _missing(request, "control", f"the {options.control} control picture")
    return RequestPictures(image, mask, control)


def per_image(requests: Sequence[WorkRequest], values: Sequence[RGBArray | None]) -> list[RGBArray]:
    """One value per request repeated for each of its variants, in the batch's image order."""
    return [
        _given(value) for r, value in zip(requests, values, strict=True) for _ in r.options.seeds
    ]


def start_steps(steps: int, strength: float) -> int:
    """The schedule an img2img or inpaint is given: the job's steps, but at least enough that
    diffusers' ``int(steps × strength)`` leaves one step to run (it refuses none)."""
    if not 0 < strength <= 1:
        raise InvalidOption("strength", strength, "a number above 0, at most 1")
    planned = steps
    while int(planned * strength) < 1:
        planned += 1
    return planned


def resized(rgb: RGBArray, width: int, height: int) -> RGBArray:
    """``rgb`` at ``width`` × ``height`` (Lanczos; unchanged when it is that size already)."""
    if rgb.shape[:2] == (height, width):
        return rgb
    image = Image.fromarray(rgb).resize((width, height), Image.Resampling.LANCZOS)
    return np.asarray(image, dtype=np.uint8)


def keep_unmasked(original: RGBArray, drawn: RGBArray, mask: MaskArray) -> RGBArray:
    """An inpaint's picture with the original put back where the mask keeps it: the model
    redraws in latent space (8 or 4 pixels a cell), which blurs what it was told to keep.
    The mask is feathered outwards only, so everything it marks is the model's."""
    side = min(mask.shape)
    radius = max(1, math.ceil(side / 128))  # A1111's mask blur is 4 at 512 px
    feathered = np.asarray(Image.fromarray(mask).filter(ImageFilter.GaussianBlur(radius)))
    alpha = np.maximum(feathered, mask).astype(np.float32)[..., None] / 255
    blended = drawn.astype(np.float32) * alpha + original.astype(np.float32) * (1 - alpha)
    kept: RGBArray = np.clip(blended.round(), 0, 255).astype(np.uint8)
    return kept


@dataclass(frozen=True)
class Start:
    """What each image of a pass starts from (per image, in the batch's order): noise (no
    images), a picture (img2img), a picture and its mask (inpaint); and a ControlNet's
    pictures for a pass from noise."""

    images: list[RGBArray] | None = None
    masks: list[MaskArray] | None = None
    controls: list[RGBArray] | None = None


@dataclass
class Progress:
    """A batch's passes (a source drawn first, the pass, an upscale's redraw) counted as one
    run of steps: ``planned`` holds the passes still to run, the current first, as the steps
    each is expected to take; the current pass's own count replaces its plan once known."""

    on_step: StepCallback | None
    planned: list[int]
    done: int = 0

    def callback(self) -> Callable[[Any, int, Any, dict[str, Any]], dict[str, Any]]:
        base, later = self.done, sum(self.planned[1:])

        def step_end(pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            if self.on_step is not None:  # multi-stage schedulers (Heun) run more than `steps`
                self.on_step(base + step + 1, base + pipe.num_timesteps + later)
            return kwargs

        return step_end

    def finished(self, pipe: Any) -> None:
        self.done += pipe.num_timesteps
        if self.planned:
            self.planned.pop(0)


def as_uint8(image: Any) -> RGBArray:
    """A pipeline's float [0, 1] picture as uint8 RGB (the rounding diffusers' PIL output uses)."""
    return np.ascontiguousarray((np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8))


def start_of(
    requests: Sequence[WorkRequest],
    pictures: Sequence[RequestPictures],
    sources: Sequence[RGBArray] | None,
) -> Start:
    """Per image: the ControlNet's picture (from text), the picture an img2img starts from
    (``sources``, drawn first, or the request's own), or an inpaint's picture and mask (a zoom
    out's: the picture shrunk into the centre of its canvas, the border masked)."""
    first = requests[0].options
    width, height = first.width, first.height
    if first.start == "text":
        if first.control is None:
            return Start()
        return Start(controls=per_image(requests, [p.control for p in pictures]))
    given = list(sources) if sources is not None else [_given(p.image) for p in pictures]
    if first.start == "image":
        return Start(images=per_image(requests, [resized(g, width, height) for g in given]))
    if first.start == "inpaint":
        masks = [_given(p.mask) for p in pictures]
    else:
        canvases = [outpaint_canvas(picture, width, height, ZOOM_FACTOR) for picture in given]
        given, masks = [c[0] for c in canvases], [c[1] for c in canvases]
    return Start(images=per_image(requests, given), masks=per_image(requests, masks))


def _given(array: RGBArray | None) -> RGBArray:
    if array is None:  # request_pictures refused the request already
        raise ValueError("a picture the start needs is missing")
    return array
