from __future__ import annotations

import numpy as np
import pytest

from generation.embedded.dataset import build_dataset
from generation.embedded.prompts import benchmark_cases, held_out_prompts, normalise_prompt
from generation.embedded.scenes import (
    ALL_POSITIONS,
    COLOURS,
    PALETTE,
    Position,
    Scene,
    SceneObject,
    Shape,
    Size,
    canonical_caption,
    caption_scene,
    render_scene,
    sample_scene,
)


def _sample(seed: int, n: int) -> tuple[list[Scene], list[str], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    scenes = [sample_scene(rng) for _ in range(n)]
    captions = [caption_scene(s, rng) for s in scenes]
    images = [render_scene(s, rng) for s in scenes]
    return scenes, captions, images


def test_same_seed_gives_same_scenes_captions_and_pictures() -> None:
    a, b = _sample(7, 50), _sample(7, 50)
    assert a[0] == b[0]
    assert a[1] == b[1]
    assert all(np.array_equal(x, y) for x, y in zip(a[2], b[2], strict=True))
    assert _sample(8, 50)[1] != a[1]


def test_pictures_are_64px_rgb_with_the_background_colour_at_the_border() -> None:
    scenes, _, images = _sample(1, 30)
    for scene, image in zip(scenes, images, strict=True):
        assert image.shape == (64, 64, 3)
        assert image.dtype == np.uint8
        assert tuple(image[0, 0]) == PALETTE[scene.background]


def test_captions_use_several_phrasings_and_name_what_is_drawn() -> None:
    scenes, captions, _ = _sample(2, 400)
    assert any(c.startswith("two ") for c in captions)
    assert any(" background with " in c for c in captions)
    assert any(c.endswith(" background") for c in captions)
    assert any(" and a " in c for c in captions)
    assert any("corner" in c for c in captions)
    assert sum(len(s.objects) == 2 for s in scenes) > 100  # two-object scenes are well sampled
    for scene, caption in zip(scenes, captions, strict=True):
        for obj in scene.objects:
            assert obj.colour in caption.split()
            assert obj.shape.value in caption


@pytest.mark.parametrize("position", ALL_POSITIONS, ids=lambda p: p.name)
def test_object_lands_in_its_grid_cell(position: Position) -> None:
    rng = np.random.default_rng(3)
    for size in Size:
        for shape in Shape:
            scene = Scene("white", (SceneObject(shape, "black", size, position),))
            image = render_scene(scene, rng)
            rows, cols = np.nonzero(image.sum(axis=2) < 300)
            assert (int(rows.mean() * 3 // 64), int(cols.mean() * 3 // 64)) == (
                position.row,
                position.col,
            )


def test_positions_are_named_and_parsed_including_corners() -> None:
    names = {p.name for p in ALL_POSITIONS}
    assert {"left", "right", "top", "bottom", "centre", "top left", "bottom right"} <= names
    assert Position.from_name("top left") == Position(0, 0)
    with pytest.raises(ValueError, match="'middle left'"):
        Position.from_name("middle left")


def test_canonical_caption_is_explicit() -> None:
    scene = Scene("blue", (SceneObject(Shape.CIRCLE, "red", Size.SMALL, Position(0, 0)),))
    assert canonical_caption(scene) == "a small red circle at the top left on a blue background"


def test_invalid_scenes_name_the_bad_value() -> None:
    with pytest.raises(ValueError, match="'pink'"):
        SceneObject(Shape.CIRCLE, "pink", Size.SMALL, Position(0, 0))
    with pytest.raises(ValueError, match="equals the background"):
        Scene("red", (SceneObject(Shape.CIRCLE, "red", Size.SMALL, Position(0, 0)),))


def test_benchmark_prompts_are_held_out_of_training_data() -> None:
    cases = benchmark_cases()
    assert len(cases) >= 40
    assert sum(len(c.scene.objects) == 2 for c in cases) >= 10
    assert len({c.prompt for c in cases}) == len(cases)
    held_out = held_out_prompts()
    data = build_dataset(3000, 2, seed=0)
    assert all(normalise_prompt(c) not in held_out for caps in data.captions for c in caps)
    for case in cases:
        assert case.scene.background in COLOURS
