"""Measuring the embedded canny ControlNet: does the object go where the edges say?

A `PlacementCase` is a prompt that names no position ("a large red circle on a blue background")
and a scene that puts that object in one corner of the 3x3 grid, so in one quadrant of the
picture; its control picture is the scene's canny edges, made by the bot's own
`generation.inputs.canny`. `placement` draws a few variants of each prompt, with or without the
control, and says for each variant whether the analyser's biggest object has its centre in the
control's quadrant. Without a control the base model puts an unplaced object anywhere: about a
quarter of the variants land in any one quadrant by chance.

The cases are held out of the ControlNet's training: `HELD_OUT` names twelve (colour, shape,
background) triples, and the trainer never renders a scene with one of them, so every measured
control picture shows an object/background combination the ControlNet has never seen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image

from generation.embedded.analyser import analyse
from generation.embedded.components import torch_threads
from generation.embedded.scenes import IMAGE_SIZE, Position, Scene, SceneObject, Shape, Size
from generation.embedded.scenes import render_scene as _render

# (colour, shape, background): never in the ControlNet's training scenes.
HELD_OUT: tuple[tuple[str, str, str], ...] = (
    ("red", "circle", "blue"),
    ("blue", "square", "white"),
    ("green", "triangle", "yellow"),
    ("yellow", "circle", "purple"),
    ("orange", "square", "black"),
    ("purple", "triangle", "white"),
    ("white", "circle", "green"),
    ("black", "square", "orange"),
    ("red", "triangle", "white"),
    ("blue", "circle", "yellow"),
    ("green", "square", "red"),
    ("yellow", "triangle", "blue"),
)
CORNERS = ("top left", "top right", "bottom left", "bottom right")
EVAL_SEED = 1_000_003  # the held-out scenes' jitter; the trainer's own streams start at its seed
CONTROL_SCALE = 1.0  # generation.starts.CONTROL_SCALE: what the bot uses when none is given


@dataclass(frozen=True)
class PlacementCase:
    prompt: str
    scene: Scene
    control: NDArray[np.uint8]  # (64, 64, 3) white edges on black
    quadrant: int  # 0 top left, 1 top right, 2 bottom left, 3 bottom right


def control_image(rgb: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """The canny control picture exactly as the bot makes it from a member's picture."""
    from generation.inputs import canny

    return canny(rgb)


def is_held_out(scene: Scene) -> bool:
    held = set(HELD_OUT)
    return any((o.colour, o.shape.value, scene.background) in held for o in scene.objects)


def quadrant_of(x: float, y: float, side: int = IMAGE_SIZE) -> int | None:
    """The quadrant holding the point (x, y), None on a dividing line."""
    half = side / 2
    if x == half or y == half:
        return None
    return (2 if y > half else 0) + (1 if x > half else 0)


def placement_cases(count: int = 16, seed: int = EVAL_SEED) -> tuple[PlacementCase, ...]:
    """`count` held-out cases: the HELD_OUT triples in turn, each corner equally often, large
    and small objects alternating, rendered with their own generator (seed + index)."""
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    cases = []
    for i in range(count):
        colour, shape, background = HELD_OUT[i % len(HELD_OUT)]
        corner = CORNERS[(i + i // len(HELD_OUT)) % len(CORNERS)]
        size = Size.LARGE if i % 2 == 0 else Size.SMALL
        obj = SceneObject(Shape(shape), colour, size, Position.from_name(corner))
        scene = Scene(background, (obj,))
        picture = _render(scene, np.random.default_rng(seed + i))
        prompt = f"a {size.value} {colour} {shape} on a {background} background"
        cases.append(PlacementCase(prompt, scene, control_image(picture), CORNERS.index(corner)))
    return tuple(cases)


def _to_uint8(images: Any) -> list[NDArray[np.uint8]]:
    return [(np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8) for image in images]


def draw_cases(
    pipe: Any,
    cases: Sequence[PlacementCase],
    *,
    use_control: bool,
    variants: int = 4,
    seed: int = 0,
    steps: int = 20,
    guidance: float = 3.0,
    control_scale: float = CONTROL_SCALE,
) -> list[NDArray[np.uint8]]:
    """`variants` pictures per case, case after case, in one seeded batch. `pipe` is a
    StableDiffusionControlNetPipeline; without the control its base pipeline draws."""
    from diffusers import StableDiffusionPipeline

    prompts = [case.prompt for case in cases]
    generator = torch.Generator().manual_seed(seed)
    common: dict[str, Any] = {
        "num_inference_steps": steps,
        "guidance_scale": guidance,
        "num_images_per_prompt": variants,
        "generator": generator,
        "output_type": "np",
    }
    if use_control:
        controls = [Image.fromarray(case.control) for case in cases]
        output = pipe(
            prompts, image=controls, controlnet_conditioning_scale=control_scale, **common
        )
    else:
        base = StableDiffusionPipeline.from_pipe(pipe)
        base.set_progress_bar_config(disable=True)
        output = base(prompts, **common)
    return _to_uint8(output.images)


def controlnet_pipeline(model_dir: Path, controlnet_dir: Path) -> Any:
    """The embedded pipeline's components with the ControlNet, float32 on the CPU, offline."""
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline

    from generation.embedded.folder import load_pipeline

    controlnet = ControlNetModel.from_pretrained(
        str(controlnet_dir), local_files_only=True, torch_dtype=torch.float32
    )
    pipe = StableDiffusionControlNetPipeline.from_pipe(
        load_pipeline(model_dir), controlnet=controlnet
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@dataclass(frozen=True)
class Verdict:
    placed: bool  # the biggest object's centre in the edges' quadrant
    colours: bool  # that object's colour and the background are the prompt's


def judge(
    pipe: Any,
    cases: Sequence[PlacementCase],
    use_control: bool,
    *,
    variants: int = 4,
    seed: int = 0,
    steps: int = 20,
    control_scale: float = CONTROL_SCALE,
    threads: int | None = 1,
) -> list[Verdict]:
    """A verdict for each variant of each case (case after case). `pipe` as
    `controlnet_pipeline` makes it; `threads` as the trainer's (one by default: two thrash on
    a shared 2-core box)."""
    with torch_threads(threads):
        images = draw_cases(
            pipe,
            cases,
            use_control=use_control,
            variants=variants,
            seed=seed,
            steps=steps,
            control_scale=control_scale,
        )
    verdicts = []
    for index, image in enumerate(images):
        case = cases[index // variants]
        seen = analyse(image)
        wanted = case.scene.objects[0].colour, case.scene.background
        biggest = seen.objects[0] if seen.objects else None
        verdicts.append(
            Verdict(
                placed=biggest is not None and quadrant_of(*biggest.centroid) == case.quadrant,
                colours=biggest is not None and (biggest.colour, seen.background) == wanted,
            )
        )
    return verdicts


def hits(
    pipe: Any,
    cases: Sequence[PlacementCase],
    use_control: bool,
    *,
    variants: int = 4,
    seed: int = 0,
    steps: int = 20,
) -> list[bool]:
    """For each variant of each case (case after case): is the object's centre in the
    quadrant of the case's edges?"""
    verdicts = judge(pipe, cases, use_control, variants=variants, seed=seed, steps=steps)
    return [verdict.placed for verdict in verdicts]


def before_after(pipe: Any, cases: Sequence[PlacementCase], out: Path, seed: int = 0) -> None:
    """A picture, one column per case: its edges, the base model's drawing without them, the
    drawing with them (one variant, the same seed), enlarged 2x."""
    rows = [np.concatenate([case.control for case in cases], axis=1)]
    for use_control in (False, True):
        images = draw_cases(pipe, cases, use_control=use_control, variants=1, seed=seed)
        rows.append(np.concatenate(images, axis=1))
    picture = Image.fromarray(np.concatenate(rows, axis=0))
    picture.resize((picture.width * 2, picture.height * 2), Image.Resampling.NEAREST).save(out)


def placement(
    model_dir: Path,
    controlnet_dir: Path,
    cases: Sequence[PlacementCase],
    use_control: bool,
    *,
    variants: int = 4,
    seed: int = 0,
    steps: int = 20,
) -> list[bool]:
    """`hits` for the model folder with the ControlNet folder."""
    pipe = controlnet_pipeline(model_dir, controlnet_dir)
    return hits(pipe, cases, use_control, variants=variants, seed=seed, steps=steps)
