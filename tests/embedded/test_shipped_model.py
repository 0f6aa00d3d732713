"""The committed weights: they load offline and follow the prompt (fails if they break)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline

from generation.embedded.analyser import analyse
from generation.embedded.folder import read_defaults, write_defaults
from generation.embedded.scenes import Shape
from generation.models import EMBEDDED_MODEL_DIR

from .conftest import DPM_NUMPY_WARNING

pytestmark = pytest.mark.filterwarnings(DPM_NUMPY_WARNING)


@pytest.fixture(scope="module")
def pipe() -> StableDiffusionPipeline:
    folder = EMBEDDED_MODEL_DIR
    pipeline = StableDiffusionPipeline.from_pretrained(
        str(folder), dtype=torch.float32, local_files_only=True
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def test_folder_is_small_safetensors_with_defaults() -> None:
    folder = EMBEDDED_MODEL_DIR
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 30_000_000
    assert not [p for p in files if p.suffix in {".bin", ".pt", ".ckpt"}]
    assert len([p for p in files if p.suffix == ".safetensors"]) == 3
    raw = json.loads((folder / "sdbot.json").read_text(encoding="utf-8"))
    assert set(raw) == {"name", "steps", "guidance_scale", "scheduler", "width", "height", "sizes"}
    assert (raw["name"], raw["sizes"]) == ("embedded", {"1:1": [64, 64]})  # what it draws well
    defaults = read_defaults(folder)
    assert (defaults.steps, defaults.scheduler, defaults.width, defaults.height) == (
        20,
        "dpmpp",
        64,
        64,
    )
    assert 1.0 <= defaults.guidance_scale <= 10.0


def test_a_retrained_model_gets_the_same_sdbot_json(tmp_path: Path) -> None:
    """The trainer writes its name and its one size as shipped (they were once dropped)."""
    write_defaults(tmp_path, read_defaults(EMBEDDED_MODEL_DIR))
    written = json.loads((tmp_path / "sdbot.json").read_text(encoding="utf-8"))
    assert written == json.loads((EMBEDDED_MODEL_DIR / "sdbot.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("prompt", "background", "colour", "shape"),
    [
        ("a red circle on a blue background", "blue", "red", Shape.CIRCLE),
        (
            "a large yellow square at the top left on a black background",
            "black",
            "yellow",
            Shape.SQUARE,
        ),
        ("a white triangle in the centre on a green background", "green", "white", Shape.TRIANGLE),
    ],
)
def test_shipped_model_follows_the_prompt(
    pipe: StableDiffusionPipeline,
    monkeypatch: pytest.MonkeyPatch,
    prompt: str,
    background: str,
    colour: str,
    shape: Shape,
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    defaults = read_defaults(EMBEDDED_MODEL_DIR)
    images = pipe(
        [prompt] * 4,
        num_inference_steps=defaults.steps,
        guidance_scale=defaults.guidance_scale,
        generator=torch.Generator().manual_seed(1),
        output_type="np",
    ).images
    right = 0
    for image in images:
        found = analyse(np.clip(np.round(image * 255), 0, 255).astype(np.uint8))
        right += found.background == background and any(
            o.colour == colour and o.shape == shape for o in found.objects
        )
    assert right >= 3, f"{prompt!r}: {right}/4 pictures right"
