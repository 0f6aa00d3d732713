"""Pictures in: a member's file read safely and made ready for the pipeline (torch-free; the bot
runs it at admission, before anything is queued).

A file is refused, with the option named, when it is empty, too large, not a PNG, JPEG or
WebP (a GIF, a text file), animated, or has more pixels than allowed: the format comes from the
file's first bytes and the pixel count from its header, both read here before Pillow sees the
file, so a decompression bomb is never expanded. A picture read is turned the way its EXIF
says, its alpha flattened onto white, and fitted to the job's size (scaled to cover, then
centre-cropped: the aspect ratio kept).
"""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps

from generation.errors import InvalidOption
from generation.options import Size

RGBArray = npt.NDArray[np.uint8]
MaskArray = npt.NDArray[np.uint8]  # 0 keep, 255 redraw

MAX_INPUT_BYTES = 10 * 1024 * 1024  # Discord's own attachment limit for a member without Nitro
MAX_INPUT_PIXELS = 4096 * 4096  # a 30000 × 30000 PNG (a few KB of zeros) is refused unread
FORMATS = ("PNG", "JPEG", "WEBP")

ALLOWED = "a PNG, JPEG or WebP picture"
WHOLE = "a whole PNG, JPEG or WebP picture"
STILL = (
    "a still PNG, JPEG or WebP picture (not an animation: its first frame is not what you meant)"
)
# Canny's thresholds follow the picture's median grey, but never below these: a dark picture
# (median near 0) would otherwise turn every grain of noise into an edge.
CANNY_LOWER = (0.66, 25)  # (× median, floor)
CANNY_UPPER = (1.33, 50)
# A zoom out's mask reaches this share of the kept picture's shorter side into it (8 px of a
# 256 px picture: one latent cell), so the new border is drawn over the seam, not up to it.
OUTPAINT_OVERLAP = 1 / 32

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Formats we recognise only to name them in the refusal.
_OTHER_FORMATS = (
    (b"GIF87a", "a GIF"),
    (b"GIF89a", "a GIF"),
    (b"BM", "a BMP"),
    (b"II*\x00", "a TIFF"),
    (b"MM\x00*", "a TIFF"),
    (b"%PDF", "a PDF"),
    (b"\x00\x00\x01\x00", "an icon"),
)
# Everything Pillow may raise on a damaged file once its header was accepted (its bomb check
# too, should its MAX_IMAGE_PIXELS be changed under us).
_UNREADABLE = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    zlib.error,
    Image.DecompressionBombError,
)


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


@dataclass(frozen=True)
class _Header:
    format: str  # one of FORMATS
    width: int
    height: int
    animated: bool  # known from the header (WebP's VP8X flag); APNG is seen by Pillow


def read_picture(
    data: bytes,
    option: str = "image",
    *,
    filename: str = "",
    max_bytes: int = MAX_INPUT_BYTES,
    max_pixels: int = MAX_INPUT_PIXELS,
) -> Picture:
    """The picture in ``data``; InvalidOption naming ``option`` (and the file) otherwise."""
    header, image = _open(data, option, filename, max_bytes, max_pixels)
    return Picture(
        rgb=np.asarray(_flatten(image), dtype=np.uint8).copy(),
        sha256=hashlib.sha256(data).hexdigest(),
        format=header.format,
        size_bytes=len(data),
    )


def read_mask(
    data: bytes,
    picture: Picture,
    option: str = "mask",
    *,
    filename: str = "",
    max_bytes: int = MAX_INPUT_BYTES,
    max_pixels: int = MAX_INPUT_PIXELS,
) -> MaskArray:
    """A mask for ``picture``: the same width and height (else InvalidOption saying both
    sizes), white (light) where it is redrawn; alpha counts as white where transparent."""
    _, image = _open(data, option, filename, max_bytes, max_pixels)
    if image.size != (picture.width, picture.height):
        raise InvalidOption(
            option,
            _named(filename, f"{image.width}×{image.height} px"),
            f"a mask of the picture's own size, {picture.width}×{picture.height} px",
        )
    grey = np.asarray(_flatten(image).convert("L"))
    mask = np.where(grey > 127, 255, 0).astype(np.uint8)
    if not mask.any():
        raise InvalidOption(
            option,
            _named(filename, "all black"),
            "white where the picture is to be redrawn (this one is all black)",
        )
    return mask


def nearest_size(width: int, height: int, sizes: tuple[Size, ...]) -> Size:
    """The size among ``sizes`` whose aspect ratio is closest to ``width`` : ``height`` (the
    first of equals: the model's order)."""
    if not sizes:
        raise ValueError("nearest_size needs at least one size")

    def distance(size: Size) -> Fraction:
        # |log(a / b)| ordered exactly: max(a, b) / min(a, b), in integers (3:2 and 2:3 tie
        # for a square picture, and the first of them wins).
        a, b = width * size.height, height * size.width
        return Fraction(max(a, b), min(a, b))

    return min(sizes, key=distance)


def fit(rgb: RGBArray, width: int, height: int) -> RGBArray:
    """``rgb`` scaled to cover ``width`` × ``height`` (Lanczos) and centre-cropped to it."""
    image = Image.fromarray(np.ascontiguousarray(rgb), mode="RGB")
    box = _cover_box(image.width, image.height, width, height)
    fitted = image.resize((width, height), Image.Resampling.LANCZOS, box=box)
    return np.asarray(fitted, dtype=np.uint8).copy()


def fit_mask(mask: MaskArray, width: int, height: int) -> MaskArray:
    """A mask fitted as :func:`fit` fits its picture, kept binary (0 or 255)."""
    image = Image.fromarray(np.ascontiguousarray(mask), mode="L")
    box = _cover_box(image.width, image.height, width, height)
    # Bilinear then a threshold: smoother borders than nearest when a small mask is enlarged.
    fitted = np.asarray(image.resize((width, height), Image.Resampling.BILINEAR, box=box))
    return np.where(fitted > 127, 255, 0).astype(np.uint8)


def canny(rgb: RGBArray) -> RGBArray:
    """The control picture for ``canny``: white edges on black, RGB, the same size (OpenCV's
    Canny on each colour channel, thresholds from that channel's median, the edges of any).

    Each channel on its own: a red circle on a blue background has nearly one grey (81 and 85),
    so the grey picture's Canny finds no edge where a member plainly sees one. The thresholds
    are 0.66× and 1.33× the channel's median, clipped into [25, 255] and [50, 255]: a light
    picture keeps only its strong edges, a dark one its faint ones, and a nearly black one does
    not turn its noise into edges.
    """
    import cv2  # opencv comes with invisible-watermark; imported where it is needed

    edges = np.zeros(rgb.shape[:2], dtype=np.uint8)
    for channel in range(3):
        plane = np.ascontiguousarray(rgb[:, :, channel])
        median = float(np.median(plane))
        lower = int(np.clip(CANNY_LOWER[0] * median, CANNY_LOWER[1], 255))
        upper = int(np.clip(CANNY_UPPER[0] * median, CANNY_UPPER[1], 255))
        edges = np.maximum(edges, cv2.Canny(plane, lower, upper))
    return np.ascontiguousarray(np.repeat(edges[:, :, None], 3, axis=2), dtype=np.uint8)


def outpaint_canvas(
    rgb: RGBArray, width: int, height: int, factor: int
) -> tuple[RGBArray, MaskArray]:
    """A zoom out: ``rgb`` shrunk to ``1/factor`` of ``width`` × ``height`` in the centre of a
    canvas of that size (the border filled with the picture's edge colours), and the mask of
    the border (255) around it (0).

    The border repeats the shrunk picture's outermost pixels outwards (so the model starts from
    the picture's own colours, not grey), and the mask reaches :data:`OUTPAINT_OVERLAP` of the
    kept picture's shorter side into it, at least a pixel, so the seam is redrawn and blends.
    """
    if factor < 2:
        raise ValueError(f"a zoom out shrinks the picture: factor must be 2 or more, got {factor}")
    inner_width, inner_height = width // factor, height // factor
    small = fit(rgb, inner_width, inner_height)
    left, top = (width - inner_width) // 2, (height - inner_height) // 2
    pad = ((top, height - inner_height - top), (left, width - inner_width - left), (0, 0))
    canvas = np.pad(small, pad, mode="edge")
    overlap = max(1, int(min(inner_width, inner_height) * OUTPAINT_OVERLAP))
    mask = np.full((height, width), 255, dtype=np.uint8)
    mask[
        top + overlap : top + inner_height - overlap, left + overlap : left + inner_width - overlap
    ] = 0
    return canvas, mask


def png_bytes(array: RGBArray | MaskArray) -> bytes:
    """RGB or L PNG bytes (no metadata) for :class:`generation.protocol.InputImages`."""
    if array.dtype != np.uint8 or not (
        array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)
    ):
        raise ValueError(
            f"png_bytes takes uint8 H×W (L) or H×W×3 (RGB), got {array.dtype} {array.shape}"
        )
    image = Image.fromarray(np.ascontiguousarray(array), mode="L" if array.ndim == 2 else "RGB")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def from_png(data: bytes, mode: str = "RGB") -> npt.NDArray[np.uint8]:
    """The array in PNG bytes written by :func:`png_bytes` (``mode`` RGB or L); ValueError
    for anything else (another mode, other bytes, a damaged PNG)."""
    if mode not in ("RGB", "L"):
        raise ValueError(f"mode must be RGB or L, got {mode!r}")
    if not data.startswith(_PNG_SIGNATURE):
        raise ValueError("from_png takes PNG bytes (written by png_bytes)")
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
            if image.mode != mode:
                raise ValueError(f"expected a {mode} PNG, got a {image.mode} one")
            return np.asarray(image, dtype=np.uint8).copy()
    except ValueError:
        raise
    except _UNREADABLE as error:  # one error for every damaged PNG: ValueError
        raise ValueError(f"the PNG could not be read ({error})") from error


def _named(filename: str, what: str) -> str:
    return f"{filename} ({what})" if filename else what


def _open(
    data: bytes, option: str, filename: str, max_bytes: int, max_pixels: int
) -> tuple[_Header, Image.Image]:
    """The file's header checked, then its pixels decoded and turned upright (EXIF)."""
    if not data:
        raise InvalidOption(option, _named(filename, "0 bytes"), ALLOWED)
    if len(data) > max_bytes:
        raise InvalidOption(
            option,
            _named(filename, f"{len(data) / 2**20:.1f} MB"),
            f"{ALLOWED} of at most {max_bytes / 2**20:g} MB",
        )
    header = _read_header(data, option, filename)
    if header.animated:
        raise InvalidOption(option, _named(filename, "an animated picture"), STILL)
    pixels = header.width * header.height
    # Pillow refuses (or warns about) more than its own MAX_IMAGE_PIXELS, should an operator
    # allow more than that: the smaller limit is the one said.
    limit = min(max_pixels, Image.MAX_IMAGE_PIXELS or max_pixels)
    if pixels > limit:
        raise InvalidOption(
            option,
            _named(filename, f"{header.width}×{header.height} px, {pixels:,} pixels"),
            f"{ALLOWED} of at most {limit:,} pixels",
        )
    unreadable = InvalidOption(
        option, _named(filename, f"could not be read as a {header.format}"), WHOLE
    )
    try:
        image = Image.open(io.BytesIO(data), formats=[header.format])
        if header.format != "JPEG" and getattr(image, "is_animated", False):
            # An APNG (WebP says so in its header). A JPEG's extra frames (MPO: a phone's
            # depth map or preview) are not an animation: its first frame is the photo.
            raise InvalidOption(option, _named(filename, "an animated picture"), STILL)
        if image.size != (header.width, header.height):
            raise unreadable
        image.load()
        upright = ImageOps.exif_transpose(image)
    except _UNREADABLE as error:
        raise unreadable from error
    return header, upright


def _flatten(image: Image.Image) -> Image.Image:
    """RGB, any transparency composited onto white."""
    if image.mode.startswith("I") or image.mode == "F":
        # 16-bit (or float) grey: brought to 8 bits by its range, not clipped to white.
        wide = np.asarray(image, dtype=np.float64)
        scale = 255 / 65535 if image.mode.startswith("I") else 255
        image = Image.fromarray(np.clip(wide * scale, 0, 255).astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def _cover_box(
    width: int, height: int, target_width: int, target_height: int
) -> tuple[float, float, float, float]:
    """The centred region of a ``width`` × ``height`` picture with the target's aspect."""
    if width * target_height > height * target_width:  # wider than the target: crop the sides
        kept = height * target_width / target_height
        return ((width - kept) / 2, 0.0, (width + kept) / 2, float(height))
    kept = width * target_height / target_width
    return (0.0, (height - kept) / 2, float(width), (height + kept) / 2)


def _read_header(data: bytes, option: str, filename: str) -> _Header:
    """The format from the file's first bytes and the size from its header (nothing decoded)."""
    if data.startswith(_PNG_SIGNATURE):
        fmt, header = "PNG", None
        if len(data) >= 24 and data[12:16] == b"IHDR":
            width, height = struct.unpack(">II", data[16:24])
            header = _Header(fmt, width, height, animated=False)
    elif data.startswith(b"\xff\xd8\xff"):
        fmt, header = "JPEG", _jpeg_header(data)
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        fmt, header = "WEBP", _webp_header(data)
    else:
        what = next((name for magic, name in _OTHER_FORMATS if data.startswith(magic)), None)
        if what is None:
            what = "not a picture"
        raise InvalidOption(option, _named(filename, what), ALLOWED)
    if header is None or header.width < 1 or header.height < 1:
        raise InvalidOption(option, _named(filename, f"could not be read as a {fmt}"), WHOLE)
    return header


def _jpeg_header(data: bytes) -> _Header | None:
    """The size in a JPEG's start-of-frame segment (SOF0–SOF15 but DHT, JPG, DAC)."""
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # no length: TEM, RSTn, SOI
            at += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image or start of scan before any frame
            return None
        (length,) = struct.unpack(">H", data[at + 2 : at + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if at + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[at + 5 : at + 9])
            return _Header("JPEG", width, height, animated=False)
        at += 2 + length
    return None


def _webp_header(data: bytes) -> _Header | None:
    """The size in a WebP's first chunk: VP8 (lossy), VP8L (lossless) or VP8X (extended)."""
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[26:30])
        return _Header("WEBP", width & 0x3FFF, height & 0x3FFF, animated=False)
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        (bits,) = struct.unpack("<I", data[21:25])
        return _Header("WEBP", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, animated=False)
    if chunk == b"VP8X" and len(data) >= 30:
        width = 1 + int.from_bytes(data[24:27], "little")
        height = 1 + int.from_bytes(data[27:30], "little")
        return _Header("WEBP", width, height, animated=bool(data[20] & 0x02))
    return None
