"""The adherence benchmark's fixed prompts, each with the scene it asks for.

Training never uses one of these prompts verbatim (`held_out_prompts`), so the benchmark
measures whether the model composes what it learned, not whether it remembers a caption.
"""

from __future__ import annotations

from dataclasses import dataclass

from generation.embedded.scenes import Position, Scene, SceneObject, Shape, Size


@dataclass(frozen=True)
class BenchmarkCase:
    prompt: str
    scene: Scene
    position_stated: bool


def _obj(colour: str, shape: str, where: str, size: str = "large") -> SceneObject:
    return SceneObject(Shape(shape), colour, Size(size), Position.from_name(where))


# A grid cell's first phrasing (``scenes``' canonical captions); /describe says it the same way.
WHERE = {
    "top left": "at the top left",
    "top": "at the top",
    "top right": "at the top right",
    "left": "on the left",
    "centre": "in the centre",
    "right": "on the right",
    "bottom left": "at the bottom left",
    "bottom": "at the bottom",
    "bottom right": "at the bottom right",
}


def _single(colour: str, shape: str, where: str, background: str, size: str) -> BenchmarkCase:
    prompt = f"a {size} {colour} {shape} {WHERE[where]} on a {background} background"
    return BenchmarkCase(prompt, Scene(background, (_obj(colour, shape, where, size),)), True)


def _pair(
    first: tuple[str, str, str], second: tuple[str, str, str], background: str
) -> BenchmarkCase:
    objects = tuple(_obj(c, s, w, "small") for c, s, w in (first, second))
    said = " and ".join(f"a small {c} {s} {WHERE[w]}" for c, s, w in (first, second))
    return BenchmarkCase(f"{said} on a {background} background", Scene(background, objects), True)


def _twin(colour: str, shape: str, wheres: tuple[str, str], background: str) -> BenchmarkCase:
    objects = tuple(_obj(colour, shape, w, "small") for w in wheres)
    prompt = f"two small {colour} {shape}s on a {background} background"
    return BenchmarkCase(prompt, Scene(background, objects), False)


def benchmark_cases() -> tuple[BenchmarkCase, ...]:
    """48 prompts: 30 single objects, 10 pairs of different objects, 8 twins."""
    singles = [
        _single("red", "circle", "centre", "blue", "large"),
        _single("blue", "square", "top left", "white", "large"),
        _single("green", "triangle", "bottom right", "yellow", "large"),
        _single("yellow", "circle", "top right", "purple", "small"),
        _single("orange", "square", "bottom left", "black", "large"),
        _single("purple", "triangle", "top", "white", "large"),
        _single("white", "circle", "bottom", "green", "small"),
        _single("black", "square", "left", "orange", "large"),
        _single("red", "triangle", "right", "white", "small"),
        _single("blue", "circle", "bottom left", "yellow", "large"),
        _single("green", "square", "centre", "red", "small"),
        _single("yellow", "triangle", "top left", "blue", "large"),
        _single("orange", "circle", "left", "purple", "large"),
        _single("purple", "square", "bottom right", "green", "small"),
        _single("white", "triangle", "centre", "black", "large"),
        _single("black", "circle", "top right", "white", "large"),
        _single("red", "square", "bottom", "yellow", "large"),
        _single("blue", "triangle", "top", "orange", "small"),
        _single("green", "circle", "right", "black", "large"),
        _single("yellow", "square", "bottom left", "red", "small"),
        _single("orange", "triangle", "top right", "blue", "large"),
        _single("purple", "circle", "left", "yellow", "small"),
        _single("white", "square", "top left", "purple", "large"),
        _single("black", "triangle", "bottom right", "red", "large"),
        _single("red", "circle", "top left", "green", "small"),
        _single("blue", "square", "right", "black", "large"),
        _single("green", "triangle", "left", "white", "large"),
        _single("yellow", "circle", "bottom", "black", "large"),
        _single("orange", "square", "top", "white", "small"),
        _single("purple", "triangle", "centre", "orange", "large"),
    ]
    pairs = [
        _pair(("red", "circle", "left"), ("blue", "square", "right"), "white"),
        _pair(("yellow", "triangle", "top"), ("green", "circle", "bottom"), "black"),
        _pair(("blue", "circle", "top left"), ("orange", "triangle", "bottom right"), "white"),
        _pair(("white", "square", "left"), ("red", "triangle", "right"), "blue"),
        _pair(("green", "square", "top right"), ("purple", "circle", "bottom left"), "yellow"),
        _pair(("black", "triangle", "top"), ("yellow", "square", "bottom"), "purple"),
        _pair(("orange", "circle", "left"), ("white", "circle", "right"), "green"),
        _pair(("purple", "square", "top left"), ("green", "triangle", "bottom right"), "orange"),
        _pair(("red", "square", "bottom left"), ("blue", "triangle", "top right"), "yellow"),
        _pair(("yellow", "circle", "top"), ("black", "square", "bottom"), "white"),
    ]
    twins = [
        _twin("green", "square", ("left", "right"), "white"),
        _twin("red", "circle", ("top", "bottom"), "yellow"),
        _twin("blue", "triangle", ("top left", "bottom right"), "white"),
        _twin("yellow", "square", ("left", "right"), "black"),
        _twin("white", "circle", ("top right", "bottom left"), "purple"),
        _twin("orange", "triangle", ("left", "right"), "blue"),
        _twin("purple", "circle", ("top", "bottom"), "green"),
        _twin("black", "square", ("top left", "bottom right"), "orange"),
    ]
    return (*singles, *pairs, *twins)


def normalise_prompt(prompt: str) -> str:
    return " ".join(prompt.lower().split())


def held_out_prompts() -> frozenset[str]:
    """The benchmark prompts, normalised: training must never use them verbatim."""
    return frozenset(normalise_prompt(case.prompt) for case in benchmark_cases())
