"""`sdbot bench safety`: open_nsfw scores on benign pictures, to calibrate the thresholds.

NSFW pictures cannot ship with the project, so the shipped sources are all benign: pictures the
embedded model draws (upscaled as the path does), and flat colours, skin tones, gradients and
noise (which open_nsfw is known to score high). The share of them flagged at each threshold is the
false-positive rate. An operator with a labelled folder (``safe/`` and ``nsfw/`` inside) gets the
recall on their own NSFW pictures too: ``sdbot bench safety --images DIR``.
"""

from __future__ import annotations

import colorsys
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from generation.images import upscale_to_min_side
from moderation.safety import OpenNSFWChecker

RGBArray = npt.NDArray[np.uint8]
THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}


@dataclass
class ScoreSet:
    name: str
    label: str  # "safe" or "nsfw"
    scores: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.scores)

        def quantile(q: float) -> float:
            return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

        return {
            "source": self.name,
            "label": self.label,
            "images": len(ordered),
            "p50": round(statistics.median(ordered), 4),
            "p95": round(quantile(0.95), 4),
            "p99": round(quantile(0.99), 4),
            "max": round(ordered[-1], 4),
            "flagged_at": {
                f"{t:g}": round(sum(s >= t for s in ordered) / len(ordered), 4) for t in THRESHOLDS
            },
        }


@dataclass
class SafetyCalibration:
    sets: list[ScoreSet]
    threshold: float
    strict_threshold: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "strict_threshold": self.strict_threshold,
            "sets": [score_set.summary() for score_set in self.sets if score_set.scores],
        }

    def to_text(self) -> str:
        lines = [
            f"open_nsfw scores (SDBOT_NSFW_THRESHOLD {self.threshold:g}, "
            f"SDBOT_NSFW_STRICT_THRESHOLD {self.strict_threshold:g})",
            f"  {'source':<22} {'label':<5} {'n':>4} {'p50':>6} {'p95':>6} {'p99':>6} {'max':>6}  "
            + "  ".join(f"≥{t:g}" for t in THRESHOLDS),
        ]
        for score_set in self.sets:
            if not score_set.scores:
                continue
            row = score_set.summary()
            shares = "  ".join(f"{row['flagged_at'][f'{t:g}']:>4.0%}" for t in THRESHOLDS)
            lines.append(
                f"  {row['source']:<22} {row['label']:<5} {row['images']:>4} {row['p50']:>6.3f} "
                f"{row['p95']:>6.3f} {row['p99']:>6.3f} {row['max']:>6.3f}  {shares}"
            )
        lines.append(
            "  (for safe sets the share flagged is the false-positive rate; for nsfw sets, recall)"
        )
        return "\n".join(lines)


def synthetic_pictures(side: int = 256) -> list[RGBArray]:
    """Flat colours round the hue circle, skin tones, gradients, noise and stripes."""
    pictures: list[RGBArray] = []
    for hue in np.linspace(0, 1, 24, endpoint=False):
        for lightness, saturation in ((0.5, 0.8), (0.75, 0.4)):
            r, g, b = colorsys.hls_to_rgb(float(hue), lightness, saturation)
            pictures.append(np.full((side, side, 3), (r * 255, g * 255, b * 255), np.uint8))
    skin = [(255, 224, 196), (241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36),
            (94, 54, 30), (255, 205, 180), (234, 192, 134)]  # fmt: skip
    ramp = np.linspace(0.6, 1.0, side)[None, :, None]
    for colour in skin:
        pictures.append(np.full((side, side, 3), colour, np.uint8))
        pictures.append((np.array(colour)[None, None, :] * ramp).repeat(side, 0).astype(np.uint8))
    rng = np.random.default_rng(0)
    for scale in (8, 32, 96):
        noise = rng.normal(128, scale, (side, side, 3))
        pictures.append(np.clip(noise, 0, 255).astype(np.uint8))
    stripes = ((np.arange(side)[:, None] // 16 + np.arange(side)[None, :] // 16) % 2) * 255
    pictures.append(np.repeat(stripes[:, :, None], 3, axis=2).astype(np.uint8))
    return pictures


def model_pictures(
    model_dir: Path, count: int, progress: Callable[[str], None] | None = None
) -> list[RGBArray]:
    """What the embedded model draws for its benchmark prompts, upscaled as the path does."""
    import torch

    from generation.embedded.folder import load_pipeline, read_defaults
    from generation.embedded.prompts import benchmark_cases

    defaults = read_defaults(model_dir)
    pipe = load_pipeline(model_dir, "cpu")
    pictures: list[RGBArray] = []
    for index, case in enumerate(benchmark_cases()[:count]):
        output = pipe(
            [case.prompt] * 4,
            num_inference_steps=defaults.steps,
            guidance_scale=defaults.guidance_scale,
            generator=torch.Generator("cpu").manual_seed(index),
            output_type="np",
        )
        for image in output.images:
            rgb = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
            pictures.append(upscale_to_min_side(rgb, 256))
        if progress is not None:
            progress(f"{index + 1}/{count} {case.prompt}")
    return pictures


def folder_pictures(folder: Path) -> list[RGBArray]:
    from PIL import Image

    pictures = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in _IMAGE_SUFFIXES:
            with Image.open(path) as image:
                pictures.append(np.asarray(image.convert("RGB"), dtype=np.uint8))
    return pictures


def calibrate(
    *,
    threshold: float,
    strict_threshold: float,
    model_dir: Path | None,
    model_prompts: int = 12,
    images: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> SafetyCalibration:
    checker = OpenNSFWChecker(threads=1)
    sets = [ScoreSet("synthetic", "safe", checker.scores(synthetic_pictures()))]
    if model_dir is not None:
        pictures = model_pictures(model_dir, model_prompts, progress)
        sets.append(ScoreSet("embedded model", "safe", checker.scores(pictures)))
    if images is not None:
        for label in ("safe", "nsfw"):
            if (images / label).is_dir():
                scores = checker.scores(folder_pictures(images / label))
                sets.append(ScoreSet(f"{images.name}/{label}", label, scores))
    return SafetyCalibration(sets, threshold, strict_threshold)
