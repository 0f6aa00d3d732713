"""Invisible watermark: the payload round trip, verification, and what it survives."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from generation.images import make_grid, upscale_to_min_side
from moderation import watermark

DATA = Path(__file__).parent / "data"
Resampling = Image.Resampling


def scene(size: int = 256) -> np.ndarray:
    """A smooth picture with shapes, like the embedded model draws."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    rgb = np.stack([60 + 120 * x, 80 + 100 * y, 160 - 60 * x * y], axis=-1)
    rgb[(x - 0.4) ** 2 + (y - 0.5) ** 2 < 0.05] = (220, 40, 40)
    rgb[int(size * 0.1) : int(size * 0.3), int(size * 0.6) : int(size * 0.9)] = (250, 220, 30)
    return rgb.astype(np.uint8)


def test_payload_round_trip_and_checksum() -> None:
    payload = watermark.encode_payload(123456)
    assert len(payload) * 8 == watermark.PAYLOAD_BITS
    assert watermark.decode_payload(payload) == 123456
    corrupted = bytes([payload[0] ^ 1]) + payload[1:]
    assert watermark.decode_payload(corrupted) is None
    with pytest.raises(ValueError, match=r"watermark id must be in 0\.\.4294967295"):
        watermark.encode_payload(-1)


def test_embed_verifies_and_decodes() -> None:
    marked = watermark.embed(scene(), 987654)
    assert marked.verified
    assert watermark.decode(marked.rgb) == 987654
    assert np.abs(marked.rgb.astype(int) - scene().astype(int)).mean() < 2.0  # invisible


def test_an_unmarked_image_reads_as_none() -> None:
    assert watermark.decode(scene()) is None


def test_the_mark_survives_jpeg_q90() -> None:
    marked = watermark.embed(scene(), 4242)
    buffer = io.BytesIO()
    Image.fromarray(marked.rgb).save(buffer, format="JPEG", quality=90)
    buffer.seek(0)
    assert watermark.decode(np.asarray(Image.open(buffer).convert("RGB"))) == 4242


def test_small_images_are_refused_with_the_minimum() -> None:
    with pytest.raises(ValueError, match=r"64x64 is too small.*256x256"):
        watermark.embed(scene(64), 1)


def test_upscaled_model_output_carries_the_mark() -> None:
    upscaled = upscale_to_min_side(scene(64), 256)
    assert upscaled.shape == (256, 256, 3)
    assert watermark.embed(upscaled, 77).verified


def test_marks_are_compatible_with_invisible_watermark_both_ways() -> None:
    from imwatermark import WatermarkDecoder, WatermarkEncoder

    image = scene(320)
    payload = watermark.encode_payload(31337)

    ours = watermark.embed(image, 31337)
    reference = WatermarkDecoder("bytes", watermark.PAYLOAD_BITS)
    assert reference.decode(np.ascontiguousarray(ours.rgb[:, :, ::-1]), "dwtDctSvd") == payload

    encoder = WatermarkEncoder()
    encoder.set_watermark("bytes", payload)
    theirs_bgr = encoder.encode(np.ascontiguousarray(image[:, :, ::-1]), "dwtDctSvd")
    assert watermark.decode(np.ascontiguousarray(theirs_bgr[:, :, ::-1])) == 31337


def test_saturated_colours_do_not_wrap_around() -> None:
    image = np.zeros((256, 256, 3), dtype=np.uint8)
    image[:, :128] = (255, 0, 0)
    image[:, 128:] = (0, 0, 255)
    marked = watermark.embed(image, 5)
    # The library's unclipped write wraps saturated pixels round by 200 levels and more; ours
    # clips, and blocks that clipping holds back aim the other way, so the mark still verifies.
    assert np.abs(marked.rgb.astype(int) - image.astype(int)).max() <= 40
    assert marked.verified
    assert watermark.decode(marked.rgb) == 5


def test_pure_white_and_black_carry_the_mark() -> None:
    image = np.full((256, 256, 3), 255, dtype=np.uint8)
    image[64:192, 64:192] = 0
    marked = watermark.embed(image, 6)
    assert marked.verified
    assert np.abs(marked.rgb.astype(int) - image.astype(int)).max() <= 40


# What the bot marks: 64 px model outputs upscaled 4x (flat, saturated colours, simple shapes),
# the 2x2 grid of them, and larger photographs.


def model_outputs() -> list[np.ndarray]:
    """Four 64 px pictures from the embedded model (dpmpp, 20 steps, guidance 3): "a red circle on
    a blue background" seed 1, "two green squares on a white background" seed 4, "a white cross
    on a red background" seed 3 and "a white star on black" seed 11, kept as one 2x2 PNG sheet."""
    with Image.open(DATA / "model_outputs.png") as sheet_file:
        sheet = np.asarray(sheet_file.convert("RGB"))
    return [sheet[row : row + 64, col : col + 64] for row in (0, 64) for col in (0, 64)]


def photo_like(size: int = 512) -> np.ndarray:
    """Smooth colour fields at several scales plus sensor-like noise."""
    rng = np.random.default_rng(20240)
    picture = np.full((size, size, 3), 128.0)
    for cells, amplitude in ((4, 60), (16, 30), (64, 15)):
        field = rng.normal(0, 1, (cells, cells, 3)).astype(np.float32)
        picture += amplitude * cv2.resize(field, (size, size), interpolation=cv2.INTER_CUBIC)
    picture += rng.normal(0, 4, picture.shape)
    return np.clip(picture, 0, 255).astype(np.uint8)


def bot_pictures() -> dict[str, np.ndarray]:
    variants = [upscale_to_min_side(output, 256) for output in model_outputs()]
    return {
        **{f"variant-{index}": variant for index, variant in enumerate(variants, start=1)},
        "grid": make_grid(variants),
        "scene": scene(),
        "photo-like": photo_like(),
    }


PICTURES = list(bot_pictures())


@pytest.fixture(scope="module")
def marked_pictures() -> dict[str, tuple[np.ndarray, watermark.MarkedImage]]:
    return {
        name: (image, watermark.embed(image, 0xC0FFEE + index))
        for index, (name, image) in enumerate(bot_pictures().items())
    }


def png_round_trip(rgb: np.ndarray) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"))


def jpeg_q75(rgb: np.ndarray) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=75)
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"))


def pil_half_and_back(down: Resampling, up: Resampling) -> Callable[[np.ndarray], np.ndarray]:
    def attack(rgb: np.ndarray) -> np.ndarray:
        height, width = rgb.shape[:2]
        image = Image.fromarray(rgb).resize((width // 2, height // 2), down)
        return np.asarray(image.resize((width, height), up))

    return attack


def cv2_half_and_back(down: int, up: int) -> Callable[[np.ndarray], np.ndarray]:
    def attack(rgb: np.ndarray) -> np.ndarray:
        height, width = rgb.shape[:2]
        small = cv2.resize(rgb, (width // 2, height // 2), interpolation=down)
        return np.asarray(cv2.resize(small, (width, height), interpolation=up))

    return attack


ATTACKS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "png": png_round_trip,
    "jpeg-q75": jpeg_q75,
    "pil-box-then-bicubic": pil_half_and_back(Resampling.BOX, Resampling.BICUBIC),
    "pil-bilinear-then-lanczos": pil_half_and_back(Resampling.BILINEAR, Resampling.LANCZOS),
    "cv2-area-then-cubic": cv2_half_and_back(cv2.INTER_AREA, cv2.INTER_CUBIC),
    "cv2-linear-then-lanczos4": cv2_half_and_back(cv2.INTER_LINEAR, cv2.INTER_LANCZOS4),
}


@pytest.mark.parametrize("attack", ATTACKS)
@pytest.mark.parametrize("picture", PICTURES)
def test_the_mark_survives_png_jpeg_q75_and_half_size_and_back(
    picture: str, attack: str, marked_pictures: dict[str, tuple[np.ndarray, watermark.MarkedImage]]
) -> None:
    _, marked = marked_pictures[picture]
    assert marked.verified
    assert watermark.decode(ATTACKS[attack](marked.rgb)) == marked.watermark_id


@pytest.mark.parametrize("picture", PICTURES)
def test_the_mark_stays_invisible(
    picture: str, marked_pictures: dict[str, tuple[np.ndarray, watermark.MarkedImage]]
) -> None:
    original, marked = marked_pictures[picture]
    error = marked.rgb.astype(np.float64) - original.astype(np.float64)
    psnr = 10 * np.log10(255**2 / np.mean(error**2))
    assert psnr >= 38.0
    assert np.abs(error).max() <= 12


@pytest.mark.parametrize("picture", PICTURES)
def test_unmarked_pictures_read_as_none(picture: str) -> None:
    image = bot_pictures()[picture]
    assert watermark.decode(image) is None
    assert watermark.decode(jpeg_q75(image)) is None


def test_invisible_watermark_reads_our_marks_on_model_outputs(
    marked_pictures: dict[str, tuple[np.ndarray, watermark.MarkedImage]],
) -> None:
    from imwatermark import WatermarkDecoder

    reference = WatermarkDecoder("bytes", watermark.PAYLOAD_BITS)
    for name in ("variant-1", "variant-2", "variant-3", "variant-4", "grid"):
        _, marked = marked_pictures[name]
        bgr = np.ascontiguousarray(marked.rgb[:, :, ::-1])
        assert reference.decode(bgr, "dwtDctSvd") == watermark.encode_payload(
            marked.watermark_id
        ), name


def test_the_library_layer_alone_is_read_back() -> None:
    marked = watermark.embed(scene(), 2024, layers=(watermark.LIBRARY_LAYER,))
    assert marked.verified
    assert watermark.decode(marked.rgb, layers=(watermark.LIBRARY_LAYER,)) == 2024
    assert watermark.decode(marked.rgb, layers=(watermark.ROBUST_LAYER,)) is None


def test_layers_are_checked() -> None:
    with pytest.raises(ValueError, match="scale must be positive, got 0"):
        watermark.Layer(watermark.Chroma.U, scale=0, block=4)
    with pytest.raises(ValueError, match="distinct chroma channels"):
        watermark.embed(
            scene(), 1, layers=(watermark.LIBRARY_LAYER, watermark.Layer(watermark.Chroma.U, 50, 8))
        )


def test_narrow_images_are_refused_and_read_as_none() -> None:
    narrow = np.zeros((8, 9000, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"9000x8 is too narrow.*16 pixels"):
        watermark.embed(narrow, 1)
    assert watermark.decode(narrow) is None
