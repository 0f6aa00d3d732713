"""Image plumbing with Pillow: upscale to the watermark's minimum, numbered grids, PNG bytes
with the A1111 ``parameters`` text other tools read."""

from __future__ import annotations

import io
import json
import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from PIL.PngImagePlugin import PngInfo

from generation.options import UPSCALE_STRENGTH, GenerationOptions
from moderation.safety import SafetyResult

RGBArray = npt.NDArray[np.uint8]

# Our scheduler names as AUTOMATIC1111's web UI writes its samplers (diffusers' PNDM is its PLMS).
A1111_SAMPLERS = {
    "dpmpp": "DPM++ 2M",
    "euler": "Euler",
    "euler_a": "Euler a",
    "ddim": "DDIM",
    "unipc": "UniPC",
    "pndm": "PLMS",
    "heun": "Heun",
}
PARAMETERS_KEY = "parameters"  # A1111's text chunk: prompt, negative, then "Key: value, …"
JOB_KEY = "sdbot-job"  # the job's id, as `sdbot trace` reads it from the watermark


@dataclass(frozen=True)
class Marked:
    """One variant, checked, marked and encoded: what the policy decides on. Its pixels stay
    in this process (the grid is drawn from them); only :class:`ReadyImage` leaves."""

    variant: int
    seed: int
    png: bytes
    rgb: RGBArray
    sha256: str
    watermark_id: int
    watermark_verified: bool
    safety: SafetyResult
    parameters: str | None = None  # the A1111 text its PNG carries

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])


def upscale_to_min_side(rgb: RGBArray, min_side: int) -> RGBArray:
    """Lanczos + a light unsharp mask by the smallest whole factor that reaches ``min_side``."""
    height, width = rgb.shape[:2]
    factor = math.ceil(min_side / min(height, width))
    if factor <= 1:
        return rgb
    image = Image.fromarray(rgb).resize((width * factor, height * factor), Image.Resampling.LANCZOS)
    image = image.filter(ImageFilter.UnsharpMask(radius=1.5, percent=60, threshold=2))
    return np.asarray(image, dtype=np.uint8)


def placeholder(width: int, height: int, text: str) -> RGBArray:
    """A grey tile that stands in for a withheld image, with a short reason, wrapped."""
    image = Image.new("RGB", (width, height), (64, 64, 64))
    columns = max(8, (width - 16) // 6)  # Pillow's default bitmap font is ~6 px a character
    lines = [line for part in text.splitlines() for line in textwrap.wrap(part, columns)]
    top = max(4, height // 2 - 6 * len(lines))
    ImageDraw.Draw(image).multiline_text((8, top), "\n".join(lines), fill=(220, 220, 220))
    return np.asarray(image, dtype=np.uint8)


def withheld_tile(width: int, height: int, variant: int, reason: str) -> RGBArray:
    """The placeholder for withheld variant ``variant``: in its grid cell and in its stead."""
    return placeholder(width, height, f"#{variant} withheld\n{reason}")


def make_grid(tiles: Sequence[RGBArray], *, numbered: bool = True) -> RGBArray:
    """Tiles side by side: 1 → 1×1, 2 → 2×1, 3–4 → 2×2 (an empty cell stays black).

    With more than one tile, each is ``numbered`` 1, 2, … in its top-left corner, the numbers
    of the 1️⃣–4️⃣ controls under a posted grid; the tiles themselves are left unmarked.
    """
    if not tiles:
        raise ValueError("a grid needs at least one tile")
    height, width = tiles[0].shape[:2]
    columns = 1 if len(tiles) == 1 else 2
    rows = math.ceil(len(tiles) / columns)
    grid = np.zeros((rows * height, columns * width, 3), dtype=np.uint8)
    for index, tile in enumerate(tiles):
        if tile.shape[:2] != (height, width):
            raise ValueError(f"tile {index} is {tile.shape[:2]}, expected {(height, width)}")
        row, column = divmod(index, columns)
        grid[row * height : (row + 1) * height, column * width : (column + 1) * width] = tile
    if not numbered or len(tiles) == 1:
        return grid
    image = Image.fromarray(grid)
    draw = ImageDraw.Draw(image)
    for index in range(len(tiles)):
        row, column = divmod(index, columns)
        _draw_number(draw, index + 1, column * width, row * height, min(width, height))
    return np.asarray(image, dtype=np.uint8)


def _draw_number(draw: ImageDraw.ImageDraw, number: int, left: int, top: int, side: int) -> None:
    """A white number on a dark rounded badge, about a tenth of the tile high: legible on any
    picture, small enough to hide little of it."""
    size = max(10, round(side * 0.09))
    font = ImageFont.load_default(size=size)
    margin, pad = max(2, side // 64), max(2, size // 4)
    x0, y0, x1, y1 = draw.textbbox((0, 0), str(number), font=font)
    badge_left, badge_top = left + margin, top + margin
    badge = (badge_left, badge_top, badge_left + x1 - x0 + 2 * pad, badge_top + y1 - y0 + 2 * pad)
    draw.rounded_rectangle(badge, radius=pad, fill=(24, 24, 24))
    origin = (badge_left + pad - x0, badge_top + pad - y0)
    draw.text(origin, str(number), font=font, fill=(255, 255, 255))


def to_png(rgb: RGBArray, parameters: str | None = None, job_id: int | None = None) -> bytes:
    """PNG bytes of ``rgb``, with the ``parameters`` and ``sdbot-job`` text chunks when given
    (text beside the pixels: the watermark in them is untouched)."""
    info = PngInfo()
    if parameters is not None:
        info.add_text(PARAMETERS_KEY, parameters)  # iTXt (UTF-8) when Latin-1 cannot hold it
    if job_id is not None:
        info.add_text(JOB_KEY, str(job_id))
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", compress_level=1, pnginfo=info)
    return buffer.getvalue()


def parameters_text(
    options: GenerationOptions,
    seed: int,
    width: int,
    height: int,
    lora_hashes: Mapping[str, str],
    *,
    model: str | None = None,
    sampler: str | None = None,
) -> str:
    """What A1111 writes in its ``parameters`` chunk, so that its PNG Info, ComfyUI and image
    sites read our pictures: the prompt (with each LoRA as the ``<lora:NAME:WEIGHT>`` tag A1111
    restores it from), the negative prompt, then the settings.

    ``width``×``height`` is the size drawn; an upscale's redraw is A1111's "hires fix" and is
    written as its fields. ``sampler`` is our scheduler's name when ``options.scheduler`` is
    ``default`` (the model's own); ``lora_hashes`` maps a LoRA's name to its file's short hash.
    """
    tags = "".join(f" <lora:{lora.name}:{lora.weight:g}>" for lora in options.loras)
    lines = [options.prompt + tags]
    if options.negative_prompt:
        lines.append(f"Negative prompt: {options.negative_prompt}")
    scheduler = sampler or options.scheduler
    fields: dict[str, object] = {
        "Steps": options.steps,
        "Sampler": A1111_SAMPLERS.get(scheduler, scheduler),
        "CFG scale": f"{options.guidance_scale:g}",
        "Seed": seed,
        "Size": f"{width}x{height}",
        "Model": model if model is not None else options.model,
    }
    if options.start != "text":  # A1111's img2img and inpaint write the strength here
        fields["Denoising strength"] = f"{options.strength:g}"
    if options.control is not None:  # a field per ControlNet, as sd-webui-controlnet's
        fields["ControlNet 0"] = f"Module: {options.control}, Weight: {options.control_scale:g}"
    if options.upscale > 1:
        fields["Hires denoising strength" if options.start != "text" else "Denoising strength"] = (
            f"{UPSCALE_STRENGTH:g}"
        )
        fields["Hires upscale"] = options.upscale
        fields["Hires steps"] = options.redraw_steps
        fields["Hires upscaler"] = "Lanczos"
    if options.loras:
        fields["Lora hashes"] = ", ".join(
            f"{lora.name}: {lora_hashes.get(lora.name, '')}" for lora in options.loras
        )
    lines.append(
        ", ".join(f"{key}: {_quoted(value)}" for key, value in fields.items() if value != "")
    )
    return "\n".join(lines)


def _quoted(value: object) -> str:
    """A field's value as A1111 writes it: quoted when a comma, colon or newline is in it."""
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if any(c in text for c in ",:\n") else text


def from_image_file(data: bytes | str) -> RGBArray:
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    with Image.open(source) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
