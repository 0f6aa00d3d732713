"""An upscale's redraw on the embedded model: every step count a job may have can be upscaled."""

from __future__ import annotations

from pathlib import Path

import pytest

from generation.models import resolve_model
from generation.options import GenerationOptions
from generation.protocol import WorkRequest
from moderation.policy import ImagePolicy


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # diffusers' schedulers and numpy 2
@pytest.mark.parametrize("scheduler", ["default", "ddim", "unipc", "heun"])
@pytest.mark.parametrize("steps", [1, 2])
def test_a_job_of_one_or_two_steps_can_be_upscaled(
    model_dir: Path, steps: int, scheduler: str
) -> None:
    """diffusers runs ``steps × 0.35`` redraw steps and refuses none: a 1- or 2-step job failed
    in the worker when a member pressed 1️⃣–4️⃣."""
    import torch

    from generation.loading import load_pipeline
    from generation.pipeline import PipelineRunner

    runner = PipelineRunner(load_pipeline(resolve_model(str(model_dir)), "cpu", torch.float32))
    options = GenerationOptions("a red circle", "", (7,), steps, 3.0, 64, 64, scheduler, upscale=2)
    seen: list[tuple[int, int]] = []
    (drawn,) = runner.generate(
        [WorkRequest(1, options, ImagePolicy(threshold=0.5, strict_threshold=0.3))],
        lambda step, total: seen.append((step, total)),
    )
    assert drawn.images[0].shape == (128, 128, 3)
    assert options.refine_steps == 1
    assert seen[-1][0] == seen[-1][1]  # the progress reaches its total, redraw included
