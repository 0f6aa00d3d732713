"""How a job starts (issue 18, pictures in): from noise, from a picture, from a picture with a
mask, or from a picture zoomed out; and the ControlNet kinds. Plain values, light to import."""

from __future__ import annotations

from dataclasses import dataclass

# From noise (text), from a picture (image: img2img
# from an attachment, or a vary's tile), a picture with a mask whose white is redrawn
# (inpaint: /edit), or a picture shrunk into the centre with its border drawn (outpaint: zoom).
STARTS = ("text", "image", "inpaint", "outpaint")
IMAGE_STRENGTH = 0.6  # img2img from an attachment when no strength is given
STRENGTH_MIN, STRENGTH_MAX = 0.05, 1.0  # below 0.05 nothing is redrawn at the steps we allow
VARY_STRENGTHS = {"subtle": 0.35, "strong": 0.7}  # a vary's img2img strength, by guild setting
ZOOM_FACTOR = 2  # a zoom out shows the picture at half its side, the border drawn around it
CONTROL_TYPES = ("canny",)  # ControlNet inputs the bot can make from a member's picture
CONTROL_SCALE = 1.0  # ControlNet conditioning scale when none is given
CONTROL_SCALE_MIN, CONTROL_SCALE_MAX = 0.0, 2.0


@dataclass(frozen=True)
class Source:
    """The picture a vary or a zoom starts from: the job's own prompt and settings drawn at
    ``seed`` (its parent's variant) and enlarged ``upscale`` times, as the parent drew it.
    Drawn again in the worker rather than stored: a seed reproduces it."""

    seed: int
    upscale: int = 1
