"""Grids, upscaling and image safety on ordinary pictures."""

from __future__ import annotations

import numpy as np
import pytest

from generation.images import from_image_file, make_grid, placeholder, to_png, upscale_to_min_side
from moderation.safety import OpenNSFWChecker


def tile(value: int, size: int = 32) -> np.ndarray:
    return np.full((size, size, 3), value, dtype=np.uint8)


def test_grid_layouts() -> None:
    assert make_grid([tile(1)]).shape == (32, 32, 3)
    assert make_grid([tile(1), tile(2)]).shape == (32, 64, 3)
    grid = make_grid([tile(1), tile(2), tile(3), tile(4)])
    assert grid.shape == (64, 64, 3)
    assert (grid[0, 0, 0], grid[0, 40, 0], grid[40, 0, 0], grid[40, 40, 0]) == (1, 2, 3, 4)
    with pytest.raises(ValueError, match="tile 1 is"):
        make_grid([tile(1), tile(2, 16)])


def test_upscale_reaches_the_minimum_by_whole_factors() -> None:
    assert upscale_to_min_side(tile(9, 64), 256).shape == (256, 256, 3)
    assert upscale_to_min_side(tile(9, 100), 256).shape == (300, 300, 3)
    assert upscale_to_min_side(tile(9, 512), 256).shape == (512, 512, 3)


def test_png_round_trip() -> None:
    image = placeholder(64, 48, "withheld")
    assert (from_image_file(to_png(image)) == image).all()


def test_ordinary_images_score_low() -> None:
    scores = OpenNSFWChecker().scores([tile(128, 256), placeholder(256, 256, "x")])
    assert len(scores) == 2
    assert all(0.0 <= score < 0.3 for score in scores), scores
    assert OpenNSFWChecker().scores([]) == []
