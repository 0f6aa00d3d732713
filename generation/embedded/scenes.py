"""Captioned scenes of simple coloured shapes: the embedded model's whole world.

A `Scene` is the meaning (background, objects with shape, colour, size and a 3x3 grid position);
`render_scene` draws it at 64 px with a little jitter, and `caption_scene` says it in one of
several phrasings. Everything is driven by an explicit `numpy.random.Generator`, so the same seed
gives the same pictures and captions.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw

IMAGE_SIZE = 64
_SUPERSAMPLE = 4
_PAIR_GAP = 3.0  # pixels kept free between the two objects of a scene, so they stay separate


class Shape(enum.StrEnum):
    CIRCLE = "circle"
    SQUARE = "square"
    TRIANGLE = "triangle"


class Size(enum.StrEnum):
    SMALL = "small"
    LARGE = "large"


# Colour names and their RGB values; objects and backgrounds share the palette.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 225),
    "yellow": (245, 220, 40),
    "orange": (245, 140, 30),
    "purple": (140, 60, 190),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
COLOURS: tuple[str, ...] = tuple(PALETTE)

# Half the side (square, triangle) or the radius (circle), in pixels at 64 px.
_HALF_EXTENT: dict[Size, float] = {Size.SMALL: 6.0, Size.LARGE: 12.0}
_SIZE_JITTER = 1.0
_POSITION_JITTER = 2.0


@dataclass(frozen=True)
class Position:
    """One cell of the 3x3 grid: row 0 is the top, column 0 the left."""

    row: int
    col: int

    def __post_init__(self) -> None:
        if not (0 <= self.row <= 2 and 0 <= self.col <= 2):
            raise ValueError(f"grid cell must have row and col in 0..2, got {self.row}, {self.col}")

    @property
    def name(self) -> str:
        return POSITION_NAMES[(self.row, self.col)]

    @staticmethod
    def from_name(name: str) -> Position:
        for (row, col), known in POSITION_NAMES.items():
            if known == name:
                return Position(row, col)
        raise ValueError(f"unknown position {name!r}; known: {sorted(POSITION_NAMES.values())}")


POSITION_NAMES: dict[tuple[int, int], str] = {
    (0, 0): "top left",
    (0, 1): "top",
    (0, 2): "top right",
    (1, 0): "left",
    (1, 1): "centre",
    (1, 2): "right",
    (2, 0): "bottom left",
    (2, 1): "bottom",
    (2, 2): "bottom right",
}
ALL_POSITIONS: tuple[Position, ...] = tuple(Position(r, c) for r, c in POSITION_NAMES)


@dataclass(frozen=True)
class SceneObject:
    shape: Shape
    colour: str
    size: Size
    position: Position

    def __post_init__(self) -> None:
        if self.colour not in PALETTE:
            raise ValueError(f"unknown colour {self.colour!r}; palette: {COLOURS}")


@dataclass(frozen=True)
class Scene:
    background: str
    objects: tuple[SceneObject, ...]

    def __post_init__(self) -> None:
        if self.background not in PALETTE:
            raise ValueError(f"unknown background {self.background!r}; palette: {COLOURS}")
        if not 1 <= len(self.objects) <= 2:
            raise ValueError(f"a scene holds 1 or 2 objects, got {len(self.objects)}")
        for obj in self.objects:
            if obj.colour == self.background:
                raise ValueError(f"object colour {obj.colour!r} equals the background")
        if len(self.objects) == 2 and not _pair_fits(*self.objects):
            raise ValueError(f"the two objects overlap: {self.objects}")

    @property
    def is_twin(self) -> bool:
        """Two objects of the same shape, colour and size ("two small red squares")."""
        if len(self.objects) != 2:
            return False
        a, b = self.objects
        return (a.shape, a.colour, a.size) == (b.shape, b.colour, b.size)


@dataclass(frozen=True)
class CaptionOptions:
    """How often a caption states each attribute (the scene always has all of them)."""

    say_background: float = 0.9
    say_position: float = 0.85
    # Twins are asked for without positions more often ("two small red squares"): the model
    # must learn to draw exactly two objects when it also has to choose where.
    say_twin_position: float = 0.5
    say_size: float = 0.5


@dataclass(frozen=True)
class SceneMix:
    """Share of single-object, two-different-object and twin scenes in a sample."""

    single: float = 0.4
    pair: float = 0.3
    twin: float = 0.3


# 1. Geometry -------------------------------------------------------------------------------


def _cell_centre(index: int) -> float:
    return (index + 0.5) * IMAGE_SIZE / 3.0


def _nominal_box(obj: SceneObject, jitter: float) -> tuple[float, float, float]:
    half = _HALF_EXTENT[obj.size] + jitter
    lo, hi = half + 1.0, IMAGE_SIZE - half - 1.0
    cx = min(max(_cell_centre(obj.position.col), lo), hi)
    cy = min(max(_cell_centre(obj.position.row), lo), hi)
    return cx, cy, half


def _pair_fits(a: SceneObject, b: SceneObject) -> bool:
    """True when the two objects cannot touch for any jitter (worst case)."""
    if a.position == b.position:
        return False
    worst = _SIZE_JITTER + _POSITION_JITTER
    ax, ay, ah = _nominal_box(a, 0.0)
    bx, by, bh = _nominal_box(b, 0.0)
    reach = ah + bh + 2 * worst + _PAIR_GAP
    return abs(ax - bx) >= reach or abs(ay - by) >= reach


def _place(obj: SceneObject, rng: np.random.Generator) -> tuple[float, float, float]:
    half = _HALF_EXTENT[obj.size] + rng.uniform(-_SIZE_JITTER, _SIZE_JITTER)
    cx, cy, _ = _nominal_box(obj, 0.0)
    cx += rng.uniform(-_POSITION_JITTER, _POSITION_JITTER)
    cy += rng.uniform(-_POSITION_JITTER, _POSITION_JITTER)
    lo, hi = half + 1.0, IMAGE_SIZE - half - 1.0
    return min(max(cx, lo), hi), min(max(cy, lo), hi), half


# 2. Rendering ------------------------------------------------------------------------------


def render_scene(scene: Scene, rng: np.random.Generator) -> NDArray[np.uint8]:
    """Draw the scene as a (64, 64, 3) uint8 RGB array, anti-aliased by supersampling."""
    big = IMAGE_SIZE * _SUPERSAMPLE
    image = Image.new("RGB", (big, big), PALETTE[scene.background])
    draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        cx, cy, half = (v * _SUPERSAMPLE for v in _place(obj, rng))
        fill = PALETTE[obj.colour]
        if obj.shape is Shape.CIRCLE:
            draw.ellipse((cx - half, cy - half, cx + half, cy + half), fill=fill)
        elif obj.shape is Shape.SQUARE:
            draw.rectangle((cx - half, cy - half, cx + half, cy + half), fill=fill)
        else:
            draw.polygon(
                [(cx, cy - half), (cx + half, cy + half), (cx - half, cy + half)], fill=fill
            )
    small = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.uint8).copy()


# 3. Captions -------------------------------------------------------------------------------

_POSITION_PHRASES: dict[str, tuple[str, ...]] = {
    "top left": ("at the top left", "in the top left corner", "in the top left"),
    "top": ("at the top", "at the top centre"),
    "top right": ("at the top right", "in the top right corner", "in the top right"),
    "left": ("on the left", "at the left"),
    "centre": ("in the centre", "in the middle"),
    "right": ("on the right", "at the right"),
    "bottom left": ("at the bottom left", "in the bottom left corner", "in the bottom left"),
    "bottom": ("at the bottom", "at the bottom centre"),
    "bottom right": ("at the bottom right", "in the bottom right corner", "in the bottom right"),
}


def _pick(options: tuple[str, ...], rng: np.random.Generator) -> str:
    return options[int(rng.integers(len(options)))]


def _noun_phrase(obj: SceneObject, say_size: bool, plural: bool = False) -> str:
    words = [obj.size.value] if say_size else []
    words += [obj.colour, obj.shape.value + ("s" if plural else "")]
    return " ".join(words)


def _with_background(body: str, background: str | None, rng: np.random.Generator) -> str:
    if background is None:
        return body
    if rng.random() < 0.75:
        return f"{body} on a {background} background"
    return f"a {background} background with {body}"


def caption_scene(
    scene: Scene, rng: np.random.Generator, options: CaptionOptions | None = None
) -> str:
    """One caption for the scene, in a randomly chosen phrasing."""
    opts = options or CaptionOptions()
    say_size = bool(rng.random() < opts.say_size)
    say_position = bool(
        rng.random() < (opts.say_twin_position if scene.is_twin else opts.say_position)
    )
    background = scene.background if rng.random() < opts.say_background else None
    if scene.is_twin:
        obj = scene.objects[0]
        body = "two " + _noun_phrase(obj, say_size, plural=True)
        if say_position:
            first, second = sorted(o.position.name for o in scene.objects)
            body += f", one {_pick(_POSITION_PHRASES[first], rng)}"
            body += f" and one {_pick(_POSITION_PHRASES[second], rng)}"
            if background is not None:
                body += ","
        return _with_background(body, background, rng)
    parts = []
    for obj in scene.objects:
        part = "a " + _noun_phrase(obj, say_size)
        if say_position:
            part += " " + _pick(_POSITION_PHRASES[obj.position.name], rng)
        parts.append(part)
    return _with_background(" and ".join(parts), background, rng)


def canonical_caption(scene: Scene) -> str:
    """The fully explicit caption (size, colour, shape, position, background)."""
    if scene.is_twin:
        obj = scene.objects[0]
        first, second = sorted(o.position.name for o in scene.objects)
        body = (
            f"two {_noun_phrase(obj, True, plural=True)}, one {_POSITION_PHRASES[first][0]}"
            f" and one {_POSITION_PHRASES[second][0]},"
        )
    else:
        body = " and ".join(
            f"a {_noun_phrase(o, True)} {_POSITION_PHRASES[o.position.name][0]}"
            for o in scene.objects
        )
    return f"{body} on a {scene.background} background"


def caption_vocabulary() -> list[str]:
    """Every word any caption can use (the tokenizer's training text)."""
    words = {"a", "two", "one", "and", "on", "background", "with", ","}
    words |= set(COLOURS) | {s.value for s in Shape} | {s.value + "s" for s in Shape}
    words |= {s.value for s in Size}
    for phrases in _POSITION_PHRASES.values():
        for phrase in phrases:
            words |= set(phrase.split())
    return sorted(words)


# 4. Sampling -------------------------------------------------------------------------------


def _random_object(rng: np.random.Generator, background: str) -> SceneObject:
    colours = [c for c in COLOURS if c != background]
    return SceneObject(
        shape=list(Shape)[int(rng.integers(len(Shape)))],
        colour=colours[int(rng.integers(len(colours)))],
        size=list(Size)[int(rng.integers(len(Size)))],
        position=ALL_POSITIONS[int(rng.integers(len(ALL_POSITIONS)))],
    )


def sample_scene(rng: np.random.Generator, mix: SceneMix | None = None) -> Scene:
    """A random scene: one object, two different objects, or two identical ones."""
    weights = mix or SceneMix()
    background = COLOURS[int(rng.integers(len(COLOURS)))]
    roll = rng.random() * (weights.single + weights.pair + weights.twin)
    first = _random_object(rng, background)
    if roll < weights.single:
        return Scene(background, (first,))
    for _ in range(100):
        second = _random_object(rng, background)
        if roll >= weights.single + weights.pair:  # twin
            second = SceneObject(first.shape, first.colour, first.size, second.position)
        if _pair_fits(first, second):
            return Scene(background, (first, second))
        if rng.random() < 0.5:  # large pairs rarely fit in adjacent cells: shrink and retry
            first = SceneObject(first.shape, first.colour, Size.SMALL, first.position)
    return Scene(background, (first,))
