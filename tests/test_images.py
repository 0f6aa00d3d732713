"""Grids, upscaling and image safety on ordinary pictures."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from bot.imagine.service import ImagineService
from bot.imagine.types import Requester
from generation.images import (
    A1111_SAMPLERS,
    from_image_file,
    make_grid,
    parameters_text,
    placeholder,
    to_png,
    upscale_to_min_side,
    withheld_tile,
)
from generation.options import GenerationOptions, LoraChoice, RequestedOptions
from moderation.safety import OpenNSFWChecker


def tile(value: int, size: int = 32) -> np.ndarray:
    return np.full((size, size, 3), value, dtype=np.uint8)


def test_grid_layouts() -> None:
    assert make_grid([tile(1)]).shape == (32, 32, 3)
    assert (make_grid([tile(1)]) == 1).all()  # one picture: nothing to number
    assert make_grid([tile(1), tile(2)]).shape == (32, 64, 3)
    grid = make_grid([tile(1), tile(2), tile(3), tile(4)], numbered=False)
    assert grid.shape == (64, 64, 3)
    assert (grid[0, 0, 0], grid[0, 40, 0], grid[40, 0, 0], grid[40, 40, 0]) == (1, 2, 3, 4)
    with pytest.raises(ValueError, match="tile 1 is"):
        make_grid([tile(1), tile(2, 16)])


def test_a_withheld_tile_names_its_variant_and_the_reason() -> None:
    tile = withheld_tile(256, 128, 3, "NSFW score 0.90")
    assert tile.shape == (128, 256, 3)
    assert (tile == placeholder(256, 128, "#3 withheld\nNSFW score 0.90")).all()
    assert (tile != placeholder(256, 128, "#2 withheld\nNSFW score 0.90")).any()


def read_number(corner: np.ndarray) -> int:
    """The digit written white on a dark badge in a tile's corner, read by matching its shape
    against each digit drawn large in Pillow's own font."""
    ys, xs = np.nonzero(corner.max(axis=2) < 60)  # the badge, its rounded corners cut off
    inside = corner[ys.min() + 3 : ys.max() - 2, xs.min() + 3 : xs.max() - 2]
    strokes = inside.min(axis=2) > 200
    ys, xs = np.nonzero(strokes)
    glyph = strokes[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    font = ImageFont.load_default(size=96)
    scores = {}
    for digit in range(1, 10):
        drawn = Image.new("L", (96, 128))
        ImageDraw.Draw(drawn).text((8, 8), str(digit), font=font, fill=255)
        reference = drawn.crop(drawn.getbbox()).resize(glyph.shape[::-1], Image.Resampling.BOX)
        mask = np.asarray(reference) > 127
        scores[digit] = (mask & glyph).sum() / (mask | glyph).sum()
    return max(scores, key=lambda digit: scores[digit])


def test_grid_tiles_carry_small_legible_numbers_and_the_tiles_stay_unmarked() -> None:
    colours = [(0, 0, 0), (128, 128, 128), (255, 255, 255), (200, 30, 30)]
    tiles = [np.full((256, 256, 3), colour, dtype=np.uint8) for colour in colours]
    grid = make_grid(tiles).astype(int)
    assert all((t == np.array(colour)).all() for t, colour in zip(tiles, colours, strict=True))
    for index, colour in enumerate(colours):
        row, column = divmod(index, 2)
        cell = grid[row * 256 : (row + 1) * 256, column * 256 : (column + 1) * 256]
        changed = np.abs(cell - np.array(colour)).max(axis=2) > 0
        ys, xs = np.nonzero(changed)
        # Small, in the top-left corner: the rest of the picture is untouched.
        assert ys.max() < 48, (index, ys.max())
        assert xs.max() < 48, (index, xs.max())
        assert changed.mean() < 0.02
        corner = cell[: ys.max() + 1, : xs.max() + 1]
        # Legible on any picture: white strokes at least 14 px high on a dark badge.
        badge = corner.max(axis=2) < 60
        assert badge.mean() > 0.5
        strokes = (corner.min(axis=2) > 200) & ~badge
        assert np.ptp(np.nonzero(strokes[2:-2, 2:-2])[0]) >= 14
        assert read_number(corner) == index + 1


def test_upscale_reaches_the_minimum_by_whole_factors() -> None:
    assert upscale_to_min_side(tile(9, 64), 256).shape == (256, 256, 3)
    assert upscale_to_min_side(tile(9, 100), 256).shape == (300, 300, 3)
    assert upscale_to_min_side(tile(9, 512), 256).shape == (512, 512, 3)


def test_png_round_trip() -> None:
    image = placeholder(64, 48, "withheld")
    assert (from_image_file(to_png(image)) == image).all()
    with Image.open(io.BytesIO(to_png(image))) as bare:
        assert bare.text == {}  # type: ignore[attr-defined]


def test_a_png_carries_the_a1111_parameters_and_its_job_beside_the_same_pixels() -> None:
    image = placeholder(64, 48, "a picture")
    text = "un chat « noir » ☕\nSteps: 4, Sampler: Euler a, CFG scale: 7, Seed: 0, Size: 64x48"
    png = to_png(image, text, 12)
    assert (from_image_file(png) == image).all()
    with Image.open(io.BytesIO(png)) as read:
        assert read.text == {"parameters": text, "sdbot-job": "12"}  # type: ignore[attr-defined]


def test_parameters_are_written_as_a1111_writes_them() -> None:
    options = GenerationOptions("a red circle", "", (0,), 20, 7.5, 64, 64, "euler_a", model="m")
    assert parameters_text(options, 0, 64, 64, {}) == (
        "a red circle\n"  # no negative prompt: no line for it
        "Steps: 20, Sampler: Euler a, CFG scale: 7.5, Seed: 0, Size: 64x64, Model: m"
    )
    styled = dataclasses.replace(
        options,
        negative_prompt="blurry, dark",
        loras=(LoraChoice("ink", 0.8), LoraChoice("outline", -1)),
        upscale=2,
        steps=2,
        scheduler="default",
    )
    hashes = {"ink": "0123456789ab", "outline": "ba9876543210"}
    assert parameters_text(styled, 7, 64, 64, hashes, model="sd15", sampler="pndm") == (
        "a red circle <lora:ink:0.8> <lora:outline:-1>\n"
        "Negative prompt: blurry, dark\n"
        "Steps: 2, Sampler: PLMS, CFG scale: 7.5, Seed: 7, Size: 64x64, Model: sd15, "
        "Denoising strength: 0.35, Hires upscale: 2, Hires steps: 3, Hires upscaler: Lanczos, "
        'Lora hashes: "ink: 0123456789ab, outline: ba9876543210"'
    )
    assert {A1111_SAMPLERS[name] for name in ("dpmpp", "euler", "ddim", "unipc", "heun")} == {
        "DPM++ 2M",
        "Euler",
        "DDIM",
        "UniPC",
        "Heun",
    }


def test_ordinary_images_score_low() -> None:
    scores = OpenNSFWChecker().scores([tile(128, 256), placeholder(256, 256, "x")])
    assert len(scores) == 2
    assert all(0.0 <= score < 0.3 for score in scores), scores
    assert OpenNSFWChecker().scores([]) == []


async def test_the_posted_grid_is_numbered_under_its_watermark_and_the_variants_are_not(
    service: ImagineService,
) -> None:
    request = RequestedOptions(prompt="a red circle on a white background", seed=7, variants=4)
    outcome = await service.imagine(request, Requester(source="test"))
    assert outcome.grid is not None
    assert outcome.grid.path is not None
    assert outcome.grid.watermark_verified  # marked after the numbers were drawn
    grid = from_image_file(str(outcome.grid.path)).astype(int)
    side = grid.shape[0] // 2
    corner = side // 6
    for image in outcome.images:
        assert image.path is not None
        variant = from_image_file(str(image.path)).astype(int)
        row, column = divmod(image.variant - 1, 2)
        cell = grid[row * side : (row + 1) * side, column * side : (column + 1) * side]
        # Beyond what the grid's own watermark changes, the tile differs from its variant only
        # where the number is: the variant's PNG carries none.
        differs = np.abs(cell - variant).max(axis=2) > 16
        assert not differs[corner:, :].any()
        assert not differs[:, corner:].any()
        assert differs[:corner, :corner].mean() > 0.1
        assert read_number(cell[:corner, :corner]) == image.variant
