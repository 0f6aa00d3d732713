"""Pictures in: a member's file read safely and made ready for the pipeline (torch-free; the bot
runs it at admission, before anything is queued).

A file is refused, with the option named, when it is empty, too large, not a PNG, JPEG or
WebP (a GIF, a text file), or has more pixels than allowed: the pixel count is read from the
header before anything is decoded, so a decompression bomb is never expanded. A picture read
is turned the way its EXIF says, its alpha flattened onto white, and fitted to the job's size
(scaled to cover, then centre-cropped: the aspect ratio kept).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from generation.options import Size

RGBArray = npt.NDArray[np.uint8]
MaskArray = npt.NDArray[np.uint8]  # 0 keep, 255 redraw

MAX_INPUT_BYTES = 10 * 1024 * 1024  # Discord's own attachment limit for a member without Nitro
MAX_INPUT_PIXELS = 4096 * 4096  # a 30000 × 30000 PNG (a few KB of zeros) is refused unread
FORMATS = ("PNG", "JPEG", "WEBP")


@dataclass(frozen=True)
class Picture:
    """A member's picture as read: upright, RGB, at its own size; ``sha256`` is the file's
    (the bytes as given), what the audit log keeps."""

    rgb: RGBArray
    sha256: str
    format: str  # one of FORMATS
    size_bytes: int

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])


def read_picture(
    data: bytes,
    option: str = "image",
    *,
    filename: str = "",
    max_bytes: int = MAX_INPUT_BYTES,
    max_pixels: int = MAX_INPUT_PIXELS,
) -> Picture:
    """The picture in ``data``; InvalidOption naming ``option`` (and the file) otherwise."""
    raise NotImplementedError


def read_mask(
    data: bytes, picture: Picture, option: str = "mask", *, filename: str = ""
) -> MaskArray:
    """A mask for ``picture``: the same width and height (else InvalidOption saying both
    sizes), white (light) where it is redrawn; alpha counts as white where transparent."""
    raise NotImplementedError


def nearest_size(width: int, height: int, sizes: tuple[Size, ...]) -> Size:
    """The size among ``sizes`` whose aspect ratio is closest to ``width`` : ``height`` (the
    first of equals: the model's order)."""
    raise NotImplementedError


def fit(rgb: RGBArray, width: int, height: int) -> RGBArray:
    """``rgb`` scaled to cover ``width`` × ``height`` (Lanczos) and centre-cropped to it."""
    raise NotImplementedError


def fit_mask(mask: MaskArray, width: int, height: int) -> MaskArray:
    """A mask fitted as :func:`fit` fits its picture, kept binary (0 or 255)."""
    raise NotImplementedError


def canny(rgb: RGBArray) -> RGBArray:
    """The control picture for ``canny``: white edges on black, RGB, the same size (OpenCV's
    Canny on the grey picture, thresholds from its median)."""
    raise NotImplementedError


def outpaint_canvas(
    rgb: RGBArray, width: int, height: int, factor: int
) -> tuple[RGBArray, MaskArray]:
    """A zoom out: ``rgb`` shrunk to ``1/factor`` of ``width`` × ``height`` in the centre of a
    canvas of that size (the border filled with the picture's edge colours), and the mask of
    the border (255) around it (0)."""
    raise NotImplementedError


def png_bytes(array: RGBArray | MaskArray) -> bytes:
    """RGB or L PNG bytes (no metadata) for :class:`generation.protocol.InputImages`."""
    raise NotImplementedError


def from_png(data: bytes, mode: str = "RGB") -> npt.NDArray[np.uint8]:
    """The array in PNG bytes written by :func:`png_bytes` (``mode`` RGB or L)."""
    raise NotImplementedError
