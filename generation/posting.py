"""A job's checked, marked pictures made ready to post under its image policy: dispositions,
placeholder tiles for withheld ones, and the grid with its own watermark."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from generation.images import Marked, make_grid, to_png, withheld_tile
from generation.protocol import PostReady, ReadyImage, watermark_id
from moderation import watermark
from moderation.policy import ImagePolicy, decide, decide_grid

RGBArray = npt.NDArray[np.uint8]


def post_ready(
    job_id: int, variants: Sequence[Marked], policy: ImagePolicy, *, with_grid: bool
) -> PostReady:
    """A job's checked, marked variants as they may be posted under ``policy``.

    A withheld variant comes back as its placeholder tile, never as its pixels; it keeps its
    record's facts (hash, size, watermark, scores). The grid (``with_grid``) numbers the tiles,
    withheld ones as their placeholders, and carries its own watermark, the job's id with
    variant 0, which ``sdbot trace`` reads back to the job as it does a variant's.

    A placeholder's PNG carries no text: it is not the picture the parameters drew. The grid
    carries the ``parameters`` of its first shown tile (A1111 writes its first image's), none
    when every tile is withheld, and the job's id.
    """
    ready: list[ReadyImage] = []
    tiles: list[RGBArray] = []
    grid_parameters: str | None = None
    for variant in variants:
        decision = decide(variant.safety, policy)
        if decision.withheld:
            tile = withheld_tile(variant.width, variant.height, variant.variant, decision.reason)
            tiles.append(tile)
            png = to_png(tile)
        else:
            tiles.append(variant.rgb)
            png = variant.png
            grid_parameters = grid_parameters or variant.parameters
        ready.append(
            ReadyImage(
                variant=variant.variant,
                seed=variant.seed,
                png=png,
                sha256=variant.sha256,
                width=variant.width,
                height=variant.height,
                watermark_id=variant.watermark_id,
                watermark_verified=variant.watermark_verified,
                safety=variant.safety,
                decision=decision,
            )
        )
    if not with_grid or not ready:
        return PostReady(tuple(ready), None)
    marked = watermark.embed(make_grid(tiles), watermark_id(job_id, 0))
    grid_png = to_png(marked.rgb, grid_parameters, job_id)
    safety, decision = decide_grid([(image.safety, image.decision) for image in ready], policy)
    grid = ReadyImage(
        variant=0,
        seed=ready[0].seed,
        png=grid_png,
        sha256=hashlib.sha256(grid_png).hexdigest(),
        width=marked.rgb.shape[1],
        height=marked.rgb.shape[0],
        watermark_id=marked.watermark_id,
        watermark_verified=marked.verified,
        safety=safety,
        decision=decision,
    )
    return PostReady(tuple(ready), grid)
