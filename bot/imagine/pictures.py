"""A finished job's pictures as they may leave the system: each variant decided under the image
policy fixed at admission (shown, spoilered or withheld), the numbered grid with withheld tiles
greyed and its own watermark, and the files, written under a staging name.

(The worker is learning to return this post-ready output itself; this module's drawing is what
it replaces.)
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from pathlib import Path

from bot.imagine.errors import SaveFailed
from bot.imagine.outcomes import ShownImage
from generation import images
from generation.protocol import VariantImage, WorkResult, watermark_id
from moderation import watermark
from moderation.policy import Disposition, ImageDecision, ImagePolicy, decide
from storage import pictures
from storage.pictures import StagedPictures


def shown_image(image: VariantImage, decision: ImageDecision) -> ShownImage:
    """A variant under its decision: a withheld one keeps its findings, not its pixels."""
    return ShownImage(
        variant=image.variant,
        seed=image.seed,
        png=None if decision.withheld else image.png,
        sha256=image.sha256,
        watermark_id=image.watermark_id,
        watermark_verified=image.watermark_verified,
        safety_score=image.safety.nsfw_score,
        safety_verdict="flagged" if decision.flagged else "safe",
        width=image.width,
        height=image.height,
        disposition=decision.disposition,
        reason=decision.reason,
        safety_threshold=decision.threshold,
        model_flagged=image.safety.model_flagged,
    )


def grid_image(job_id: int, shown: list[ShownImage], raw: tuple[VariantImage, ...]) -> ShownImage:
    """The 2×2 grid of what may be shown, withheld tiles greyed, with its own watermark.

    It is spoilered when any of its tiles is; it is never withheld as a whole.
    """
    tiles = [
        images.placeholder(image.width, image.height, f"#{image.variant} withheld\n{image.reason}")
        if image.withheld
        else variant.rgb
        for image, variant in zip(shown, raw, strict=True)
    ]
    marked = watermark.embed(images.make_grid(tiles), watermark_id(job_id, 0))
    png = images.to_png(marked.rgb)
    visible = [image for image in shown if not image.withheld]
    spoilered = [image for image in visible if image.spoiler]
    return ShownImage(
        variant=0,
        seed=shown[0].seed,
        png=png,
        sha256=hashlib.sha256(png).hexdigest(),
        watermark_id=marked.watermark_id,
        watermark_verified=marked.verified,
        safety_score=max((image.safety_score for image in visible), default=0.0),
        safety_verdict=(
            "flagged" if any(i.safety_verdict == "flagged" for i in visible) else "safe"
        ),
        width=marked.rgb.shape[1],
        height=marked.rgb.shape[0],
        disposition=Disposition.SPOILER if spoilered else Disposition.SHOWN,
        reason=spoilered[0].reason if spoilered else "",
        safety_threshold=shown[0].safety_threshold,
        model_flagged=(
            None
            if all(i.model_flagged is None for i in visible)
            else any(bool(i.model_flagged) for i in visible)
        ),
    )


@dataclasses.dataclass(frozen=True)
class Drawn:
    """A job's pictures, written under a staging name (``staged`` None: no output folder)."""

    staged: StagedPictures | None
    images: list[ShownImage]
    grid: ShownImage | None  # None for an upscale: its one picture is what is posted


class Pictures:
    """Draws and writes a finished job's pictures into ``output_dir`` (None: no files)."""

    def __init__(self, output_dir: Path | None) -> None:
        self.output_dir = output_dir

    async def draw(
        self, job_id: int, uid: str, result: WorkResult, policy: ImagePolicy, *, grid: bool
    ) -> Drawn:
        """Decides, draws the grid (``grid``: not for an upscale) and writes the files under a
        staging name; they take their names only once the row with their paths committed
        (``Drawn.staged.publish``), so no fault leaves a picture without its record. Raises
        SaveFailed when the files cannot be written."""
        shown = [shown_image(image, decide(image.safety, policy)) for image in result.images]
        drawn = await asyncio.to_thread(grid_image, job_id, shown, result.images) if grid else None
        try:
            return await asyncio.to_thread(self.write, job_id, uid, shown, drawn)
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
