"""A scene analyser: reads background, objects, colours, shapes and grid positions off a picture.

It judges the embedded model's pictures. Background = median of the border pixels snapped to
the palette; objects = 4-connected regions of pixels unlike the background; colour = the most
common nearest-palette colour inside a region; position = the 3x3 cell of its centroid; shape =
the best intersection-over-union against circle, square and upright-triangle templates drawn in
the region's bounding box. Purely geometric: no weights, nothing to train.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from generation.embedded.scenes import COLOURS, IMAGE_SIZE, PALETTE, Position, Shape

_BORDER = 2
_FOREGROUND_DISTANCE = 45.0  # RGB distance from the background colour that counts as "object"
_MIN_AREA = 12  # pixels; smaller regions are noise
_TEMPLATE = 24  # side of the grid the shape templates are drawn on


@dataclass(frozen=True)
class DetectedObject:
    colour: str
    shape: Shape
    position: Position
    area: int
    centroid: tuple[float, float]  # (x, y) in pixels of the 64 px picture


@dataclass(frozen=True)
class SceneAnalysis:
    background: str
    objects: tuple[DetectedObject, ...]


def _palette_array() -> NDArray[np.float32]:
    return np.asarray([PALETTE[c] for c in COLOURS], dtype=np.float32)


def nearest_colour(rgb: NDArray[np.float32]) -> NDArray[np.int64]:
    """Index into COLOURS of the nearest palette colour, for an (..., 3) array."""
    distances = np.linalg.norm(rgb[..., None, :] - _palette_array(), axis=-1)
    indices: NDArray[np.int64] = np.argmin(distances, axis=-1)
    return indices


def _components(mask: NDArray[np.bool_]) -> list[list[tuple[int, int]]]:
    """4-connected regions of True pixels, as lists of (row, col)."""
    seen = np.zeros_like(mask)
    height, width = mask.shape
    regions: list[list[tuple[int, int]]] = []
    for start in zip(*np.nonzero(mask), strict=True):
        if seen[start]:
            continue
        seen[start] = True
        queue = deque([(int(start[0]), int(start[1]))])
        region = []
        while queue:
            r, c = queue.popleft()
            region.append((r, c))
            for nr, nc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
                if 0 <= nr < height and 0 <= nc < width and mask[nr, nc] and not seen[nr, nc]:
                    seen[nr, nc] = True
                    queue.append((nr, nc))
        regions.append(region)
    return regions


def _templates() -> dict[Shape, NDArray[np.bool_]]:
    n = _TEMPLATE
    ys, xs = np.mgrid[0:n, 0:n].astype(np.float32) + 0.5
    centre = n / 2
    circle = (xs - centre) ** 2 + (ys - centre) ** 2 <= centre**2
    square = np.ones((n, n), dtype=bool)
    # Upright triangle: apex at the top centre, base along the bottom edge.
    triangle = np.abs(xs - centre) <= ys / 2
    return {Shape.CIRCLE: circle, Shape.SQUARE: square, Shape.TRIANGLE: triangle}


def classify_shape(mask: NDArray[np.bool_], templates: dict[Shape, NDArray[np.bool_]]) -> Shape:
    """The template shape with the highest IoU against the region's cropped mask."""
    rows, cols = np.nonzero(mask)
    crop = mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    image = Image.fromarray(crop.astype(np.uint8) * 255)
    scaled = np.asarray(image.resize((_TEMPLATE, _TEMPLATE), Image.Resampling.BILINEAR)) >= 128
    best, best_iou = Shape.SQUARE, -1.0
    for shape, template in templates.items():
        iou = np.logical_and(scaled, template).sum() / max(np.logical_or(scaled, template).sum(), 1)
        if iou > best_iou:
            best, best_iou = shape, float(iou)
    return best


def background_of(pixels: NDArray[np.float32]) -> int:
    """The palette index nearest the median of the picture's border ring (2 px wide)."""
    border = np.concatenate(
        [
            pixels[:_BORDER].reshape(-1, 3),
            pixels[-_BORDER:].reshape(-1, 3),
            pixels[:, :_BORDER].reshape(-1, 3),
            pixels[:, -_BORDER:].reshape(-1, 3),
        ]
    )
    return int(nearest_colour(np.median(border, axis=0)))


def analyse(image: NDArray[np.uint8]) -> SceneAnalysis:
    """Analyse one RGB picture (any size; read at 64 px)."""
    # 1. Bring the picture to the analyser's size.
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB array, got shape {image.shape}")
    if image.shape[:2] != (IMAGE_SIZE, IMAGE_SIZE):
        resized = Image.fromarray(image).resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX)
        image = np.asarray(resized, dtype=np.uint8)
    pixels = image.astype(np.float32)

    # 2. Background: median of the border ring, snapped to the palette.
    background_index = background_of(pixels)
    background_rgb = _palette_array()[background_index]

    # 3. Objects: connected regions unlike the background.
    labels = nearest_colour(pixels)
    far = np.linalg.norm(pixels - background_rgb, axis=-1) > _FOREGROUND_DISTANCE
    mask = far & (labels != background_index)
    templates = _templates()
    objects = []
    for region in _components(mask):
        if len(region) < _MIN_AREA:
            continue
        rows = np.fromiter((p[0] for p in region), dtype=np.int64, count=len(region))
        cols = np.fromiter((p[1] for p in region), dtype=np.int64, count=len(region))
        region_mask = np.zeros(mask.shape, dtype=bool)
        region_mask[rows, cols] = True
        colour_index = Counter(labels[rows, cols].tolist()).most_common(1)[0][0]
        cx, cy = float(cols.mean()) + 0.5, float(rows.mean()) + 0.5
        cell = Position(min(int(cy * 3 // IMAGE_SIZE), 2), min(int(cx * 3 // IMAGE_SIZE), 2))
        objects.append(
            DetectedObject(
                colour=COLOURS[colour_index],
                shape=classify_shape(region_mask, templates),
                position=cell,
                area=len(region),
                centroid=(cx, cy),
            )
        )
    objects.sort(key=lambda o: -o.area)
    return SceneAnalysis(background=COLOURS[background_index], objects=tuple(objects))
