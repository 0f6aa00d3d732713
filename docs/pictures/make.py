"""The README's before/after pictures of pictures in, made with the `sdbot` command line on the
embedded model (a scratch database and folder; CPU, one thread, fixed seeds):

    .venv/bin/python docs/pictures/make.py [--out docs/pictures]

Each strip is the picture given, then what came of it, 128 px a tile. The commands it runs are
printed as it runs them.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from generation.embedded.scenes import PALETTE
from generation.inputs import canny, fit
from generation.models import EMBEDDED_MODEL_DIR

TILE = 128
CONTROLNET = EMBEDDED_MODEL_DIR.parent / "controlnet" / "canny"


class Sdbot:
    """`sdbot` in a scratch data folder, printing each command as a user would type it."""

    def __init__(self, folder: Path) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SDBOT_")} | {
            "SDBOT_DATA_DIR": str(folder / "data"),
            "SDBOT_DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'sdbot.db'}",
            "SDBOT_DEVICE": "cpu",
            "SDBOT_TORCH_THREADS": "1",
            "HF_HUB_OFFLINE": "1",
        }

    def __call__(self, *args: str) -> dict[str, Any]:
        print("sdbot " + shlex.join(args), flush=True)
        done = subprocess.run(
            [sys.executable, "-m", "bot", *args, "--json"],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(f"sdbot {' '.join(args)} failed: {done.stderr.strip()}")
        parsed: dict[str, Any] = json.loads(done.stdout)
        return parsed

    def setup(self, *args: str) -> None:
        print("sdbot " + shlex.join(args), flush=True)
        subprocess.run([sys.executable, "-m", "bot", *args], env=self.env, check=True)


def tile(picture: Image.Image | str | Path) -> Image.Image:
    if not isinstance(picture, Image.Image):
        picture = Image.open(picture)
    return picture.convert("RGB").resize((TILE, TILE), Image.Resampling.LANCZOS)


def strip(path: Path, pictures: list[Image.Image | str | Path]) -> None:
    tiles = [tile(p) for p in pictures]
    out = Image.new("RGB", (TILE * len(tiles), TILE))
    for i, picture in enumerate(tiles):
        out.paste(picture, (i * TILE, 0))
    out.save(path, optimize=True)
    print(f"  → {path} ({path.stat().st_size // 1024} KB)", flush=True)


def first_image(outcome: dict[str, Any], variant: int = 1) -> str:
    path: str = outcome["images"][variant - 1]["path"]
    return path


def make(out: Path, work: Path) -> None:
    sdbot = Sdbot(work)
    sdbot.setup("db", "upgrade")
    base = sdbot("imagine", "a large red circle in the centre on a blue background",
                 "--seed", "3")  # fmt: skip
    source = first_image(base)

    # img2img: a picture of two shapes redrawn towards another prompt, 0.35 (where things are
    # stays) and 0.7 (they move too) of it, two seeds each.
    pair = sdbot("imagine", "a small yellow triangle and a small green square on a white "
                 "background", "--seed", "11")  # fmt: skip
    redrawn = [
        sdbot("imagine", "a small red circle and a small blue square on a white background",
              "--image", first_image(pair), "--strength", strength, "--seed", "5",
              "--variants", "2")
        for strength in ("0.35", "0.7")
    ]  # fmt: skip
    strip(
        out / "img2img.png",
        [first_image(pair), *(first_image(done, k) for done in redrawn for k in (1, 2))],
    )

    # An edit: the mask's white half redrawn, the rest kept.
    mask = np.zeros((256, 256), dtype=np.uint8)
    mask[:, 128:] = 255
    Image.fromarray(mask).save(work / "mask.png")
    edited = sdbot("edit", source, "--mask", str(work / "mask.png"),
                   "a large yellow square in the centre on a blue background",
                   "--seed", "2", "--variants", "1")  # fmt: skip
    strip(out / "edit.png", [source, work / "mask.png", first_image(edited)])

    # Vary: variant 1 varied subtly (the default), variant 2 strongly (a guild's setting).
    subtle = sdbot("vary", str(pair["job_id"]), "1")
    sdbot.setup("guild", "set", "1", "--vary", "strong")
    strong = sdbot("vary", str(pair["job_id"]), "2", "--guild", "1")
    strip(
        out / "vary.png",
        [first_image(pair, 1), first_image(subtle, 1), first_image(subtle, 2),
         first_image(pair, 2), first_image(strong, 1), first_image(strong, 2)],
    )  # fmt: skip

    # Zoom out: an upscale of variant 1, then its picture in the centre with the border drawn.
    upscaled = sdbot("upscale", str(base["job_id"]), "1")
    zoomed = sdbot("zoom", str(upscaled["job_id"]))
    strip(out / "zoom.png", [first_image(upscaled), first_image(zoomed, 1), first_image(zoomed, 2)])

    # ControlNet: a member's drawing, its canny edges, and what the shipped ControlNet drew.
    if not (CONTROLNET / "config.json").is_file():
        print(f"no ControlNet at {CONTROLNET}: control.png not made", flush=True)
        return
    drawing = Image.new("RGB", (256, 256), PALETTE["white"])
    ImageDraw.Draw(drawing).polygon([(60, 20), (110, 110), (10, 110)], fill=PALETTE["black"])
    drawing.save(work / "drawing.png")
    controlled = sdbot("imagine", "a green triangle on a yellow background",
                       "--control", f"canny:{work / 'drawing.png'}", "--seed", "4",
                       "--variants", "2")  # fmt: skip
    edges = Image.fromarray(canny(fit(np.asarray(drawing), 64, 64)))  # as admission makes it
    strip(
        out / "control.png",
        [drawing, edges, first_image(controlled, 1), first_image(controlled, 2)],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sdbot-pictures-") as work:
        make(args.out, Path(work))


if __name__ == "__main__":
    main()
