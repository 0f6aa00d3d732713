"""Invisible watermark: the payload round trip, verification, and what it survives."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from generation.images import upscale_to_min_side
from moderation import watermark


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
    # On flat, synthetic pictures like these the mark holds to JPEG q90 (q85 loses it); on
    # photographs it holds to q75 (measured in shared/COMPONENTS.md).
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
    # The quantisation step moves saturated pixels by up to a few tens of levels; the
    # library's unclipped write wraps them round by 200 and more.
    assert np.abs(marked.rgb.astype(int) - image.astype(int)).max() <= 40
