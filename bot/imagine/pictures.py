"""A finished job's pictures as the worker made them ready to post, taken as the bot's
:class:`ShownImage` values, and their files, written under a staging name.

The worker decided each picture under the image policy the request carried (fixed at
admission), swapped withheld ones for their placeholder tiles and drew and marked the grid;
here nothing is decided or drawn again, and a withheld picture is neither written nor posted.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from bot.imagine.errors import SaveFailed
from bot.imagine.outcomes import ShownImage
from generation.protocol import PostReady, ReadyImage
from storage import pictures
from storage.pictures import StagedPictures


def shown_image(image: ReadyImage) -> ShownImage:
    """A post-ready picture as the bot shows and records it: a withheld one keeps its findings
    (hash, size, watermark, scores), not even its placeholder tile."""
    return ShownImage(
        variant=image.variant,
        seed=image.seed,
        png=None if image.withheld else image.png,
        sha256=image.sha256,
        watermark_id=image.watermark_id,
        watermark_verified=image.watermark_verified,
        safety_score=image.safety.nsfw_score,
        safety_verdict="flagged" if image.decision.flagged else "safe",
        width=image.width,
        height=image.height,
        disposition=image.disposition,
        reason=image.decision.reason,
        safety_threshold=image.decision.threshold,
        model_flagged=image.safety.model_flagged,
    )


@dataclasses.dataclass(frozen=True)
class Drawn:
    """A job's pictures, written under a staging name (``staged`` None: no output folder)."""

    staged: StagedPictures | None
    images: list[ShownImage]
    grid: ShownImage | None  # None for an upscale: its one picture is what is posted


class Pictures:
    """Writes a finished job's pictures into ``output_dir`` (None: no files)."""

    def __init__(self, output_dir: Path | None) -> None:
        self.output_dir = output_dir

    async def draw(self, job_id: int, uid: str, post: PostReady) -> Drawn:
        """Takes the worker's post-ready pictures and writes their files under a staging name;
        they take their names only once the row with their paths committed
        (``Drawn.staged.publish``), so no fault leaves a picture without its record. Raises
        SaveFailed when the files cannot be written."""
        shown = [shown_image(image) for image in post.images]
        grid = None if post.grid is None else shown_image(post.grid)
        try:
            return await asyncio.to_thread(self.write, job_id, uid, shown, grid)
        except OSError as error:
            raise SaveFailed(f"cannot save: {error}") from error

    def write(
        self, job_id: int, uid: str, shown: list[ShownImage], grid: ShownImage | None
    ) -> Drawn:
        """Writes the files under a staging name; the images carry their final paths."""
        if self.output_dir is None:
            return Drawn(None, shown, grid)
        staged = pictures.stage(self.output_dir, job_id, uid)
        written = []
        try:
            for image in shown + ([grid] if grid else []):
                if image.png is None:  # withheld
                    written.append(image)
                    continue
                name = "grid.png" if image.variant == 0 else f"variant-{image.variant}.png"
                staged.write(name, image.png)
                written.append(dataclasses.replace(image, path=staged.path_of(name)))
        except BaseException:
            staged.discard()
            raise
        if grid is None:
            return Drawn(staged, written, None)
        return Drawn(staged, written[:-1], written[-1])
