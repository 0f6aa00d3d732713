"""An upscale's redraw on the embedded model: every step count a job may have can be upscaled."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from generation.models import resolve_model
from generation.options import GenerationOptions
from generation.protocol import WorkRequest
from moderation.policy import ImagePolicy

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # diffusers, numpy 2
POLICY = ImagePolicy(threshold=0.5, strict_threshold=0.3)


@pytest.fixture(scope="module")
def runner(model_dir: Path) -> Any:
    import torch

    from generation.loading import load_pipeline
    from generation.pipeline import PipelineRunner

    return PipelineRunner(load_pipeline(resolve_model(str(model_dir)), "cpu", torch.float32))


@pytest.mark.parametrize("scheduler", ["default", "ddim", "unipc", "heun"])
@pytest.mark.parametrize("steps", [1, 2])
def test_a_job_of_one_or_two_steps_can_be_upscaled(runner: Any, steps: int, scheduler: str) -> None:
    """diffusers runs ``steps × 0.35`` redraw steps and refuses none: a 1- or 2-step job failed
    in the worker when a member pressed 1️⃣–4️⃣."""
    options = GenerationOptions("a red circle", "", (7,), steps, 3.0, 64, 64, scheduler, upscale=2)
    seen: list[tuple[int, int]] = []
    (drawn,) = runner.generate(
        [WorkRequest(1, options, POLICY)],
        lambda step, total: seen.append((step, total)),
    )
    assert drawn.images[0].shape == (128, 128, 3)
    assert options.refine_steps == 1
    assert seen[-1][0] == seen[-1][1]  # the progress reaches its total, redraw included


def test_a_long_weighted_prompt_can_be_upscaled(runner: Any) -> None:
    """The redraw takes the first pass's prompt embeddings (several text encoder windows, one
    weighted), which diffusers' image-to-image pipeline accepts as they are."""
    prompt = "a (red:1.3) circle " + "on a blue field " * 10
    options = GenerationOptions(prompt, "", (7,), 4, 3.0, 64, 64, "dpmpp", upscale=2)
    plain = dataclasses.replace(options, prompt="a red circle")
    [long] = runner.generate([WorkRequest(1, options, POLICY)])
    [short] = runner.generate([WorkRequest(2, plain, POLICY)])
    assert long.images[0].shape == short.images[0].shape == (128, 128, 3)
    assert not np.array_equal(long.images[0], short.images[0])
    assert runner.window_count(WorkRequest(1, options, POLICY)) > 1
