from __future__ import annotations

import numpy as np

from generation.embedded.adherence import analyser_accuracy
from generation.embedded.analyser import analyse
from generation.embedded.prompts import benchmark_cases
from generation.embedded.scenes import (
    PALETTE,
    Position,
    Scene,
    SceneObject,
    Shape,
    Size,
    render_scene,
    sample_scene,
)


def test_analyser_reads_ground_truth_renders() -> None:
    rng = np.random.default_rng(11)
    right = {"background": 0, "count": 0, "colour": 0, "shape": 0, "position": 0}
    objects = 0
    scenes = [sample_scene(rng) for _ in range(300)]
    for scene in scenes:
        found = analyse(render_scene(scene, rng))
        right["background"] += found.background == scene.background
        right["count"] += len(found.objects) == len(scene.objects)
        for obj in scene.objects:
            objects += 1
            same_cell = [d for d in found.objects if d.position == obj.position]
            right["position"] += bool(same_cell)
            right["colour"] += bool(same_cell) and same_cell[0].colour == obj.colour
            right["shape"] += bool(same_cell) and same_cell[0].shape == obj.shape
    assert right["background"] / len(scenes) >= 0.98
    assert right["count"] / len(scenes) >= 0.98
    for key in ("colour", "shape", "position"):
        assert right[key] / objects >= 0.97, (key, right[key] / objects)


def test_analyser_accuracy_on_benchmark_scenes_is_high() -> None:
    shares = analyser_accuracy(benchmark_cases(), seed=0)
    assert min(shares.values()) >= 0.97, shares


def test_analyser_tells_shapes_apart() -> None:
    rng = np.random.default_rng(0)
    for shape in Shape:
        scene = Scene("yellow", (SceneObject(shape, "purple", Size.LARGE, Position(1, 1)),))
        (found,) = analyse(render_scene(scene, rng)).objects
        assert (found.shape, found.colour, found.position) == (shape, "purple", Position(1, 1))


def test_flat_picture_has_no_objects() -> None:
    image = np.full((64, 64, 3), PALETTE["green"], dtype=np.uint8)
    result = analyse(image)
    assert result.background == "green"
    assert result.objects == ()


def test_larger_pictures_are_read_at_64px() -> None:
    rng = np.random.default_rng(4)
    scene = Scene("black", (SceneObject(Shape.SQUARE, "white", Size.LARGE, Position(0, 2)),))
    big = np.kron(render_scene(scene, rng), np.ones((4, 4, 1), dtype=np.uint8))
    (found,) = analyse(big).objects
    assert (found.shape, found.position) == (Shape.SQUARE, Position(0, 2))
