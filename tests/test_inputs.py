"""Pictures in (generation.inputs): real files, built here with Pillow (or by hand where a file
must be malformed on purpose), read the way the bot reads a member's attachment."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageDraw

from generation import inputs
from generation.errors import InvalidOption
from generation.inputs import (
    canny,
    fit,
    fit_mask,
    from_png,
    nearest_size,
    outpaint_canvas,
    png_bytes,
    read_mask,
    read_picture,
)
from generation.options import Size

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **params)
    return out.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def handmade_png(width: int, height: int, rows: int) -> bytes:
    """A greyscale PNG whose header says ``width`` × ``height`` but whose pixel data stops
    after ``rows`` rows, mid-stream (no IEND): a decoder would fail on it, a header reader
    reads the size."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * (width + 1) * rows)[:-8]
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", pixels)


def refusal(data: bytes, **params: object) -> InvalidOption:
    with pytest.raises(InvalidOption) as caught:
        read_picture(data, **params)  # type: ignore[arg-type]  # keyword options as given
    return caught.value


def picture_of(image: Image.Image) -> inputs.Picture:
    return read_picture(encode(image, "PNG"))


# --- refusals ---------------------------------------------------------------------------------


def test_a_text_file_is_not_a_picture() -> None:
    error = refusal(b"shopping: eggs, milk\n", option="control", filename="notes.txt")
    assert error.option == "control"
    assert error.value == "notes.txt (not a picture)"
    assert error.allowed == "a PNG, JPEG or WebP picture"
    assert "notes.txt (not a picture)" in str(error)
    assert "PNG, JPEG or WebP" in str(error)


def test_an_empty_file_is_refused() -> None:
    error = refusal(b"", filename="photo.png")
    assert (error.option, error.value) == ("image", "photo.png (0 bytes)")


def test_a_file_over_the_byte_limit_is_refused_with_both_sizes() -> None:
    data = encode(Image.new("RGB", (64, 64)), "PNG") + b"\x00" * 3 * 2**20
    error = refusal(data, filename="big.png", max_bytes=2 * 2**20)
    assert error.value == "big.png (3.0 MB)"
    assert error.allowed == "a PNG, JPEG or WebP picture of at most 2 MB"


@pytest.mark.parametrize(
    ("image_format", "what"), [("GIF", "a GIF"), ("BMP", "a BMP"), ("TIFF", "a TIFF")]
)
def test_other_picture_formats_are_refused_by_name(image_format: str, what: str) -> None:
    data = encode(Image.new("RGB", (16, 16), RED), image_format)
    error = refusal(data, filename="cat.x")
    assert error.value == f"cat.x ({what})"
    assert error.allowed == "a PNG, JPEG or WebP picture"


def test_a_30000_pixel_square_png_is_refused_from_its_header() -> None:
    data = handmade_png(30000, 30000, rows=4)
    assert len(data) < 200  # the whole bomb: a header and a few rows of zeros
    error = refusal(data, filename="big.png")
    assert error.value == "big.png (30000×30000 px, 900,000,000 pixels)"
    assert error.allowed == "a PNG, JPEG or WebP picture of at most 16,777,216 pixels"
    # The same broken pixel data under a small header cannot be decoded: the refusal above
    # came from the header alone, before any decoding.
    small = refusal(handmade_png(300, 300, rows=4), filename="big.png")
    assert small.value == "big.png (could not be read as a PNG)"


def test_the_pixel_limit_is_the_callers() -> None:
    data = encode(Image.new("RGB", (100, 60)), "JPEG")
    assert read_picture(data, max_pixels=6000).width == 100
    error = refusal(data, max_pixels=5999)
    assert error.value == "100×60 px, 6,000 pixels"
    assert error.allowed.endswith("of at most 5,999 pixels")


def test_pillows_own_pixel_limit_still_holds_if_ours_is_raised() -> None:
    # An operator allowing more pixels than Pillow does: the refusal names Pillow's limit
    # (its bomb check would otherwise raise, or warn, from inside Image.open).
    error = refusal(handmade_png(30000, 30000, rows=4), max_pixels=10**10)
    assert error.value == "30000×30000 px, 900,000,000 pixels"
    assert error.allowed.endswith(f"of at most {Image.MAX_IMAGE_PIXELS:,} pixels")


@pytest.mark.parametrize("image_format", ["PNG", "WEBP"])
def test_an_animated_picture_is_refused(image_format: str) -> None:
    frames = [Image.new("RGB", (32, 32), colour) for colour in (RED, GREEN, BLUE)]
    data = encode(frames[0], image_format, save_all=True, append_images=frames[1:])
    error = refusal(data, filename="dance.x")
    assert error.value == "dance.x (an animated picture)"
    assert error.allowed.startswith("a still PNG, JPEG or WebP picture")


def test_a_truncated_jpeg_is_refused() -> None:
    noise = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    data = encode(Image.fromarray(noise), "JPEG", quality=90)
    error = refusal(data[: len(data) // 2], filename="cut.jpg")
    assert error.value == "cut.jpg (could not be read as a JPEG)"
    assert error.allowed == "a whole PNG, JPEG or WebP picture"


def test_a_png_with_damaged_pixel_data_is_refused() -> None:
    data = bytearray(encode(Image.new("RGB", (64, 64), RED), "PNG"))
    start = data.index(b"IDAT") + 4
    data[start : start + 8] = b"\xff" * 8
    assert refusal(bytes(data)).value == "could not be read as a PNG"


@pytest.mark.parametrize(
    "data", [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0\x00\x10JFIF", b"RIFF\x00\x00\x00\x00WEBP"]
)
def test_a_header_cut_short_is_refused(data: bytes) -> None:
    assert "could not be read as a" in str(refusal(data).value)


# --- pictures read ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image_format", "params", "mode"),
    [
        ("PNG", {}, "RGB"),
        ("JPEG", {"quality": 95}, "RGB"),
        ("WEBP", {"quality": 95}, "RGB"),  # VP8: lossy
        ("WEBP", {"lossless": True}, "RGB"),  # VP8L
        ("WEBP", {"lossless": True}, "RGBA"),  # VP8X: alpha
    ],
)
@pytest.mark.parametrize("size", [(1, 1), (17, 5), (640, 360), (333, 1001)])
def test_each_format_is_read_at_its_own_size(
    image_format: str, params: dict[str, object], mode: str, size: tuple[int, int]
) -> None:
    data = encode(Image.new(mode, size, (40, 120, 200)), image_format, **params)
    picture = read_picture(data)
    assert (picture.width, picture.height) == size
    assert picture.rgb.shape == (size[1], size[0], 3)
    assert picture.rgb.dtype == np.uint8
    assert picture.format == image_format
    assert picture.size_bytes == len(data)
    assert picture.sha256 == hashlib.sha256(data).hexdigest()
    assert np.abs(picture.rgb.astype(int) - (40, 120, 200)).max() <= 6


def test_exif_orientation_turns_the_picture_upright() -> None:
    stored = Image.new("RGB", (60, 40), BLUE)
    stored.paste(RED, (0, 0, 30, 40))  # left half red as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: shown turned 90° clockwise
    picture = read_picture(encode(stored, "JPEG", exif=exif, quality=95))
    assert (picture.width, picture.height) == (40, 60)
    assert np.abs(picture.rgb[10, 20].astype(int) - RED).max() < 30  # the left went to the top
    assert np.abs(picture.rgb[50, 20].astype(int) - BLUE).max() < 30


def test_transparency_is_flattened_onto_white() -> None:
    rgba = Image.new("RGBA", (4, 1), (255, 0, 0, 255))
    rgba.putpixel((1, 0), (255, 0, 0, 0))
    rgba.putpixel((2, 0), (0, 0, 0, 128))
    rgb = picture_of(rgba).rgb[0]
    assert rgb[0].tolist() == [255, 0, 0]
    assert rgb[1].tolist() == [255, 255, 255]
    assert all(126 <= channel <= 128 for channel in rgb[2])

    grey_alpha = Image.new("LA", (2, 1), (0, 0))
    assert picture_of(grey_alpha).rgb[0, 0].tolist() == [255, 255, 255]

    palette = Image.new("P", (2, 1), 0)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.putpixel((1, 0), 1)
    data = encode(palette, "PNG", transparency=0)
    assert read_picture(data).rgb[0].tolist() == [[255, 255, 255], [255, 0, 0]]


def test_a_sixteen_bit_grey_png_keeps_its_greys() -> None:
    deep = Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.uint16))
    rgb = picture_of(deep).rgb[0]
    assert [pixel[0] for pixel in rgb] == [0, 127, 255]


def test_a_refusal_without_a_file_name_says_what_it_is() -> None:
    assert refusal(b"GIF89a...").value == "a GIF"


# --- masks ------------------------------------------------------------------------------------


def test_a_mask_is_white_where_redrawn() -> None:
    picture = picture_of(Image.new("RGB", (8, 4), RED))
    grey = Image.new("L", (8, 4), 0)
    grey.paste(200, (4, 0, 8, 4))
    grey.putpixel((0, 0), 128)
    grey.putpixel((1, 0), 127)
    mask = read_mask(encode(grey, "PNG"), picture)
    assert mask.dtype == np.uint8
    assert mask.shape == (4, 8)
    assert set(np.unique(mask).tolist()) == {0, 255}
    assert mask[:, 4:].min() == 255
    assert mask[1:, :4].max() == 0
    assert (mask[0, 0], mask[0, 1]) == (255, 0)


def test_a_transparent_part_of_a_mask_counts_as_white() -> None:
    picture = picture_of(Image.new("RGB", (4, 4), RED))
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 255))
    rgba.paste((0, 0, 0, 0), (0, 0, 2, 4))
    mask = read_mask(encode(rgba, "PNG"), picture)
    assert mask[:, :2].min() == 255
    assert mask[:, 2:].max() == 0


def test_a_mask_of_another_size_is_refused_naming_both() -> None:
    picture = picture_of(Image.new("RGB", (640, 480), RED))
    with pytest.raises(InvalidOption) as caught:
        read_mask(encode(Image.new("L", (512, 512), 255), "PNG"), picture, filename="m.png")
    assert caught.value.option == "mask"
    assert caught.value.value == "m.png (512×512 px)"
    assert caught.value.allowed == "a mask of the picture's own size, 640×480 px"


def test_a_mask_is_measured_upright_like_its_picture() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    picture = read_picture(encode(Image.new("RGB", (60, 40), RED), "JPEG", exif=exif))
    sideways = encode(Image.new("L", (60, 40), 255), "PNG")
    with pytest.raises(InvalidOption, match="40×60 px"):
        read_mask(sideways, picture)
    turned = encode(Image.new("L", (60, 40), 255), "JPEG", exif=exif)
    assert read_mask(turned, picture).shape == (60, 40)


def test_an_all_black_mask_is_refused() -> None:
    picture = picture_of(Image.new("RGB", (8, 8), RED))
    with pytest.raises(InvalidOption) as caught:
        read_mask(encode(Image.new("L", (8, 8), 100), "PNG"), picture, filename="m.png")
    assert caught.value.value == "m.png (all black)"
    assert "white where the picture is to be redrawn" in caught.value.allowed


def test_a_mask_file_is_read_by_the_same_rules() -> None:
    picture = picture_of(Image.new("RGB", (8, 8), RED))
    with pytest.raises(InvalidOption) as caught:
        read_mask(encode(Image.new("L", (8, 8), 255), "GIF"), picture, filename="m.gif")
    assert (caught.value.option, caught.value.value) == ("mask", "m.gif (a GIF)")


# --- sizes and fitting ------------------------------------------------------------------------

SIZES = (
    Size("1:1", 512, 512),
    Size("3:2", 768, 512),
    Size("2:3", 512, 768),
    Size("16:9", 912, 512),
    Size("9:16", 512, 912),
)


def test_nearest_size_by_aspect_ratio() -> None:
    assert nearest_size(1000, 1000, SIZES).aspect == "1:1"
    assert nearest_size(3000, 2000, SIZES).aspect == "3:2"
    assert nearest_size(1920, 1080, SIZES).aspect == "16:9"
    assert nearest_size(1080, 1920, SIZES).aspect == "9:16"
    assert nearest_size(700, 1000, SIZES).aspect == "2:3"
    assert nearest_size(5000, 100, SIZES).aspect == "16:9"


def test_nearest_size_takes_the_first_of_equals() -> None:
    wide, tall = Size("3:2", 768, 512), Size("2:3", 512, 768)
    assert nearest_size(600, 600, (wide, tall)) is wide
    assert nearest_size(600, 600, (tall, wide)) is tall


def bands(width: int, height: int, vertical: bool) -> np.ndarray:
    """Red, green, blue in three bands: a quarter, a half, a quarter."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    side = width if vertical else height
    quarter = side // 4
    for colour, start, stop in ((RED, 0, quarter), (GREEN, quarter, side - quarter)):
        if vertical:
            image[:, start:stop] = colour
        else:
            image[start:stop] = colour
    if vertical:
        image[:, side - quarter :] = BLUE
    else:
        image[side - quarter :] = BLUE
    return image


def test_fit_covers_and_crops_the_centre() -> None:
    wide = fit(bands(200, 100, vertical=True), 64, 64)  # keeps x 50..150: all green
    assert wide.shape == (64, 64, 3)
    assert wide.dtype == np.uint8
    assert np.abs(wide[:, 2:-2].astype(int) - GREEN).max() < 40
    tall = fit(bands(100, 400, vertical=False), 96, 64)  # keeps y 166..233: green
    assert tall.shape == (64, 96, 3)
    assert np.abs(tall.astype(int) - GREEN).max() < 40
    up = fit(bands(32, 16, vertical=True), 128, 64)  # same aspect: everything, enlarged
    assert up.shape == (64, 128, 3)
    assert tuple(up[32, 5]) == RED
    assert tuple(up[32, 64]) == GREEN
    assert tuple(up[32, 122]) == BLUE


def test_fit_mask_stays_binary_and_follows_the_picture() -> None:
    mask = np.zeros((100, 200), dtype=np.uint8)
    mask[:, 100:] = 255  # the right half
    fitted = fit_mask(mask, 48, 48)
    assert fitted.shape == (48, 48)
    assert set(np.unique(fitted).tolist()) == {0, 255}
    assert fitted[:, :22].max() == 0
    assert fitted[:, 26:].min() == 255


# --- canny, zoom out, PNG -------------------------------------------------------------------


def circle(size: int, radius: int) -> np.ndarray:
    image = Image.new("RGB", (size, size), (20, 20, 60))
    ImageDraw.Draw(image).ellipse(
        (size // 2 - radius, size // 2 - radius, size // 2 + radius, size // 2 + radius),
        fill=(240, 200, 40),
    )
    return np.asarray(image)


@pytest.mark.parametrize(("size", "radius"), [(128, 40), (64, 20)])
def test_canny_draws_the_circles_border(size: int, radius: int) -> None:
    edges = canny(circle(size, radius))
    assert edges.shape == (size, size, 3)
    assert edges.dtype == np.uint8
    assert (edges[..., 0] == edges[..., 1]).all()
    assert (edges[..., 0] == edges[..., 2]).all()
    assert set(np.unique(edges).tolist()) == {0, 255}
    ys, xs = np.nonzero(edges[..., 0])
    distance = np.hypot(ys - size / 2, xs - size / 2)
    assert np.abs(distance - radius).max() <= 3  # every edge is on the border
    assert len(ys) >= 0.8 * 2 * np.pi * radius  # and the border is all there


def test_canny_sees_colours_of_one_lightness_apart() -> None:
    # The embedded model's red on its blue: greys 81 and 85, no edge in the grey picture.
    image = Image.new("RGB", (64, 64), (40, 80, 225))
    ImageDraw.Draw(image).ellipse((12, 12, 52, 52), fill=(200, 30, 30))
    edges = canny(np.asarray(image))
    ys, xs = np.nonzero(edges[..., 0])
    assert np.abs(np.hypot(ys - 32, xs - 32) - 20).max() <= 3
    assert len(ys) >= 0.8 * 2 * np.pi * 20


def test_canny_of_a_flat_or_noisy_dark_picture_is_black() -> None:
    assert canny(np.full((64, 64, 3), 128, dtype=np.uint8)).max() == 0
    noise = np.random.default_rng(1).integers(0, 6, (64, 64, 3), dtype=np.uint8)
    assert canny(noise).max() == 0


@pytest.mark.parametrize(("width", "height"), [(64, 64), (96, 64), (512, 768)])
def test_outpaint_canvas_centres_the_picture_and_masks_the_border(width: int, height: int) -> None:
    source = bands(width * 2, height * 2, vertical=True)
    canvas, mask = outpaint_canvas(source, width, height, 2)
    assert canvas.shape == (height, width, 3)
    assert canvas.dtype == np.uint8
    assert mask.shape == (height, width)
    assert mask.dtype == np.uint8
    inner_w, inner_h = width // 2, height // 2
    left, top = (width - inner_w) // 2, (height - inner_h) // 2
    kept = canvas[top : top + inner_h, left : left + inner_w]
    assert (kept == fit(source, inner_w, inner_h)).all()
    # The border carries the picture's edge colours outwards: each border pixel is the
    # kept picture's nearest one.
    ys = np.clip(np.arange(height) - top, 0, inner_h - 1)
    xs = np.clip(np.arange(width) - left, 0, inner_w - 1)
    assert (canvas == kept[ys][:, xs]).all()
    # The mask: everything redrawn but the kept picture, less a seam of overlap.
    overlap = max(1, int(min(inner_w, inner_h) * inputs.OUTPAINT_OVERLAP))
    keep = np.zeros_like(mask, dtype=bool)
    keep[top + overlap : top + inner_h - overlap, left + overlap : left + inner_w - overlap] = True
    assert (mask[keep] == 0).all()
    assert (mask[~keep] == 255).all()


def test_outpaint_needs_a_factor_that_shrinks() -> None:
    with pytest.raises(ValueError, match="factor must be 2 or more"):
        outpaint_canvas(np.zeros((8, 8, 3), dtype=np.uint8), 8, 8, 1)


def test_png_round_trip_rgb_and_l() -> None:
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
    mask = np.where(rng.random((24, 40)) > 0.5, 255, 0).astype(np.uint8)
    assert (from_png(png_bytes(rgb)) == rgb).all()
    assert (from_png(png_bytes(mask), "L") == mask).all()
    data = png_bytes(rgb)
    chunks, at = [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        chunks.append(data[at + 4 : at + 8])
        at += 12 + length
    assert set(chunks) == {b"IHDR", b"IDAT", b"IEND"}  # no metadata


def test_png_codec_refuses_what_it_did_not_write() -> None:
    with pytest.raises(ValueError, match="expected a L PNG, got a RGB one"):
        from_png(png_bytes(np.zeros((4, 4, 3), dtype=np.uint8)), "L")
    with pytest.raises(ValueError, match="PNG bytes"):
        from_png(encode(Image.new("RGB", (4, 4)), "JPEG"))
    damaged = png_bytes(np.zeros((64, 64, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="could not be read"):
        from_png(damaged[: len(damaged) // 2])
    with pytest.raises(ValueError, match="uint8"):
        png_bytes(np.zeros((4, 4, 4), dtype=np.uint8))
